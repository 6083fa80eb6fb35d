"""The two ends of the graph in a real server: uploads, loading, folder batches, saving with metadata, guards."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from a1111_infotext import read_infotext
from host_servers import load_and_save


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def upload(server, name: str, data: bytes, subfolder: str = "") -> dict:
    answer = requests.post(
        f"{server.url}/upload/image",
        files={"image": (name, data, "application/octet-stream")},
        data={"subfolder": subfolder, "type": "input"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_an_uploaded_picture_loads_and_saves_pixel_exact(server):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    upload(server, "noise picture.png", png_bytes(Image.fromarray(pixels)))
    [path] = server.saved_paths(server.wait(server.queue(load_and_save("noise picture.png", "exact/copy"))))
    assert path.name == "copy_noise_picture_00001_.png"
    with Image.open(path) as png:
        assert np.array_equal(np.asarray(png.convert("RGB")), pixels)


def test_the_img2img_png_carries_workflow_and_a1111_parameters(server, api_graph):
    workflow = {"nodes": [{"id": 4, "type": "Img2ImgLoadImage"}], "links": [], "version": 0.4}
    entry = server.wait(server.queue(api_graph(seed=4242), {"extra_pnginfo": {"workflow": workflow}}))
    [path] = server.saved_paths(entry)
    with Image.open(path) as png:
        assert json.loads(png.text["workflow"]) == workflow
        prompt, negative, values = read_infotext(png.text["parameters"])
    assert (prompt, negative) == ("a watercolor painting of hills at sunset", "blurry, low quality")
    assert values["Steps"] == "20" and values["Seed"] == "4242" and values["Denoising strength"] == "0.6"
    assert values["Sampler"] == "Euler" and values["Size"] == "128x128" and values["CFG scale"] == "7"
    assert values["Model"] == "img2img-test-sd15"


@pytest.mark.parametrize(("image_format", "suffix"), [("webp", ".webp"), ("jpeg", ".jpg"), ("png16", ".png")])
def test_other_formats_are_written(server, image_format, suffix):
    upload(server, "gradient.png", png_bytes(Image.linear_gradient("L").resize((64, 48)).convert("RGB")))
    graph = load_and_save("gradient.png", f"formats/{image_format}")
    graph["2"]["inputs"]["format"] = image_format
    [path] = server.saved_paths(server.wait(server.queue(graph)))
    assert path.suffix == suffix
    with Image.open(path) as picture:
        assert picture.size == (64, 48)
    if image_format == "png16":
        assert path.read_bytes()[24] == 16  # IHDR bit depth


def test_folder_mode_walks_the_folder_in_sorted_order_and_names_outputs_after_sources(server):
    for name, value in [("b.png", 40), ("a.png", 20), ("c.png", 60)]:
        upload(server, name, png_bytes(Image.new("RGB", (16, 16), (value, value, value))), subfolder="walk")
    [second] = server.saved_paths(
        server.wait(server.queue(load_and_save("sample.png", "walked/one", folder="walk", index=1)))
    )
    assert "_b_" in second.name
    with Image.open(second) as png:
        assert png.getpixel((0, 0)) == (40, 40, 40)
    everything = server.saved_paths(
        server.wait(server.queue(load_and_save("sample.png", "walked/all", folder="walk", limit=0)))
    )
    assert [path.name.split("_")[1] for path in everything] == ["a", "b", "c"]


def test_fitting_makes_both_sides_a_multiple(server):
    upload(server, "odd.png", png_bytes(Image.new("RGB", (130, 67), (10, 200, 30))))
    [path] = server.saved_paths(server.wait(server.queue(load_and_save("odd.png", "fit/odd", fit="pad", multiple=64))))
    with Image.open(path) as png:
        assert png.size == (192, 128)


def test_disable_metadata_is_honoured(start_server):
    bare = start_server("--disable-metadata")
    [path] = bare.saved_paths(bare.wait(bare.queue(load_and_save("sample.png", "bare"), {"extra_pnginfo": {"a": 1}})))
    with Image.open(path) as png:
        assert png.text == {}


def test_a_changed_file_under_the_same_name_runs_again(server):
    def put(colour):
        answer = requests.post(
            f"{server.url}/upload/image",
            files={"image": ("changing.png", png_bytes(Image.new("RGB", (8, 8), colour)), "image/png")},
            data={"type": "input", "overwrite": "true"},
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json()["name"] == "changing.png"

    put((255, 0, 0))
    [red] = server.saved_paths(server.wait(server.queue(load_and_save("changing.png", "changing/run"))))
    put((0, 0, 255))
    [blue] = server.saved_paths(server.wait(server.queue(load_and_save("changing.png", "changing/run"))))
    with Image.open(red) as first, Image.open(blue) as second:
        assert first.getpixel((0, 0)) == (255, 0, 0) and second.getpixel((0, 0)) == (0, 0, 255)


def test_an_index_past_the_folder_is_a_validation_error(server):
    upload(server, "only.png", png_bytes(Image.new("RGB", (8, 8))), subfolder="short")
    status, answer = server.post_json("/prompt", {"prompt": load_and_save("sample.png", "x", folder="short", index=3)})
    assert status == 400 and "index" in json.dumps(answer["node_errors"]["1"])
