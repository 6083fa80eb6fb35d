"""`run --mask` without a server: the crop-and-stitch graph, which files are inputs and which masks, what the
header says about transparency, the probe, and the resume keys with masks."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from img2img_cli import batch as cli_batch
from img2img_cli import main as cli_main
from img2img_cli.batch import Batch, Job, Upload, Work, graph_for
from img2img_cli.client import Result
from img2img_cli.graph import Parameters, build_graph, found_region, load_template, probe_graph
from img2img_cli.masks import InputMask, may_have_transparency, plan_mask
from img2img_cli.options import RunOptions, build_parser, options_from_arguments
from img2img_cli.results import Manifest, resume_key
from PIL import Image

from cli_progress import manifest_lines

PARAMETERS = Parameters(
    prompt="a red barn",
    negative="fog",
    denoise=0.35,
    steps=9,
    cfg=5.5,
    sampler="dpmpp_2m",
    scheduler="karras",
    mode="a1111",
    checkpoint="model.safetensors",
    width=0,
    height=0,
    fit="crop",
)
MASKED = replace(PARAMETERS, crop_width=64, crop_height=96, blend=8, color_correction=True)


def node_of(graph: dict, class_type: str) -> tuple[str, dict]:
    [(node_id, node)] = [(i, n) for i, n in graph.items() if n["class_type"] == class_type]
    return node_id, node


def options_for(*argv: str) -> RunOptions:
    return options_from_arguments(build_parser().parse_args(argv))


def assert_links_resolve(graph: dict) -> None:
    for node in graph.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in graph, (node["class_type"], value)


def test_a_mask_file_crops_runs_the_crops_and_stitches_them_back():
    template = load_template()
    graph, save = build_graph(template, MASKED, seed=77, image="img2img-cli/a-photo.png", mask_file="img2img-cli/b.png")
    load_id, load = node_of(graph, "Img2ImgLoadImage")
    mask_id, mask = node_of(graph, "LoadImageMask")
    crop_id, crop = node_of(graph, "Img2ImgCrop")
    encode_id, encode = node_of(graph, "Img2ImgVAEEncode")
    sampler_id, sampler = node_of(graph, "Img2ImgKSampler")
    decode_id, decode = node_of(graph, "Img2ImgVAEDecode")
    stitch_id, stitch = node_of(graph, "Img2ImgStitch")
    assert mask["inputs"] == {"image": "img2img-cli/b.png", "channel": "red"}  # white on black: white = change
    assert crop["inputs"] == {
        "image": [load_id, 0], "mask": [mask_id, 0], "target_width": 64, "target_height": 96, "blend": 8,
        "context_factor": 1.2, "context_pixels": 16, "grow": 0, "fill_holes": True, "regions": "separate",
        "method": "lanczos",
    }  # fmt: skip
    assert encode["inputs"]["pixels"] == [crop_id, 0]
    assert (sampler["inputs"]["latent_image"], sampler["inputs"]["strength_map"]) == ([encode_id, 0], [crop_id, 1])
    assert decode["inputs"]["samples"] == [sampler_id, 0]
    assert (decode["inputs"]["source"], decode["inputs"]["strength_map"]) == ([crop_id, 0], [crop_id, 1])
    assert stitch["inputs"] == {"stitch": [crop_id, 2], "crops": [decode_id, 0], "color_correction": True}
    assert graph[save]["inputs"]["images"] == [stitch_id, 0]
    assert graph[save]["inputs"]["source_name"] == [load_id, 2]
    # The crops are multiples of 8; the picture is loaded (and saved) at its own size.
    assert load["inputs"]["multiple"] == 1 and load["inputs"]["image"] == "img2img-cli/a-photo.png"
    assert_links_resolve(graph)
    assert len(graph) == len(template) - 1 + 3  # no noise node; the mask loader, crop and stitch


def test_the_inputs_transparency_is_the_loaders_mask_and_an_upscaled_picture_is_cropped():
    graph, _ = build_graph(load_template(), MASKED, seed=77, image="photo.png", alpha_mask=True)
    load_id, _ = node_of(graph, "Img2ImgLoadImage")
    assert node_of(graph, "Img2ImgCrop")[1]["inputs"]["mask"] == [load_id, 1]  # 1 - alpha
    assert "LoadImageMask" not in {node["class_type"] for node in graph.values()}
    scaled, _ = build_graph(load_template(), replace(MASKED, scale=1.5), seed=77, image="p.png", alpha_mask=True)
    scale_id, _ = node_of(scaled, "ImageScaleBy")
    assert node_of(scaled, "Img2ImgCrop")[1]["inputs"]["image"] == [scale_id, 0]
    assert node_of(scaled, "Img2ImgLoadImage")[1]["inputs"]["multiple"] == 1  # no fitting to 16 for the VAE
    assert_links_resolve(scaled)
    # Without a mask the graph is the plain chain, whatever the crop settings.
    plain, _ = build_graph(load_template(), MASKED, seed=77, image="photo.png")
    assert {"Img2ImgCrop", "Img2ImgStitch"}.isdisjoint(node["class_type"] for node in plain.values())


def test_the_probe_loads_as_the_run_does_and_reads_the_crop_nodes_note():
    graph, crop_id = probe_graph(load_template(), replace(MASKED, width=96, fit="pad"), "img2img-cli/a.png")
    load_id, load = node_of(graph, "Img2ImgLoadImage")
    assert {node["class_type"] for node in graph.values()} == {"Img2ImgLoadImage", "Img2ImgCrop", "PreviewImage"}
    expected = {"image": "img2img-cli/a.png", "width": 96, "fit": "pad", "multiple": 1, "limit": 1}
    assert {name: load["inputs"][name] for name in expected} == expected
    crop = graph[crop_id]["inputs"]
    assert (crop["image"], crop["mask"], crop["target_width"], crop["blend"]) == ([load_id, 0], [load_id, 1], 64, 8)
    assert node_of(graph, "PreviewImage")[1]["inputs"] == {"images": [crop_id, 0]}
    assert_links_resolve(graph)
    empty = {crop_id: {"text": ["1 crop(s) of 64×64\nno mask region in frame 0: it passes through unchanged"]}}
    assert not found_region(empty, crop_id)
    assert found_region({crop_id: {"text": ["1 crop(s) of 64×64\nframe 0: box 80×80 at (3, 4)"]}}, crop_id)


def test_a_folder_leaves_out_its_masks_and_a_named_mask_goes_with_its_picture(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "a.mask.png", "b.jpg", "b.mask.png", "c.MASK.PNG", "lone.mask.png"):
        (folder / name).write_bytes(b"x")
    assert cli_main.collect_inputs([folder]) == [folder / "a.png", folder / "b.jpg"]
    # A shell's `in/*` names the masks too: each goes with its picture; a mask named alone is a picture.
    named = sorted(folder.iterdir())
    alone = [folder / "c.MASK.PNG", folder / "lone.mask.png"]
    assert cli_main.collect_inputs(named) == [folder / "a.png", folder / "b.jpg", *alone]
    assert cli_main.collect_inputs([folder / "a.mask.png", folder / "a.png"]) == [folder / "a.png"]
    masks_only = tmp_path / "masks"
    masks_only.mkdir()
    (masks_only / "a.mask.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="no image files"):
        cli_main.collect_inputs([masks_only])


def write(path: Path, mode: str, file_format: str, **options: object) -> Path:
    picture = Image.new(mode, (8, 8))
    if mode == "P":
        picture.putpalette([0, 0, 0, 255, 255, 255])
    picture.save(path, file_format, **options)
    return path


@pytest.mark.parametrize(
    ("mode", "file_format", "options", "expected"),
    [
        ("RGB", "PNG", {}, False),
        ("L", "PNG", {}, False),
        ("RGBA", "PNG", {}, True),
        ("LA", "PNG", {}, True),
        ("P", "PNG", {"transparency": 0}, True),  # a tRNS chunk
        ("RGB", "PNG", {"transparency": (0, 0, 0)}, True),
        ("RGB", "JPEG", {}, False),
        ("RGB", "WEBP", {}, False),
        ("RGBA", "WEBP", {}, True),  # VP8X with its alpha flag
        ("RGB", "WEBP", {"lossless": True}, False),
        ("RGBA", "WEBP", {"lossless": True}, True),  # VP8L's alpha bit
        ("P", "GIF", {}, True),  # the server's loader decides
        ("RGB", "BMP", {}, True),
    ],
)
def test_the_header_says_whether_an_input_may_have_transparency(tmp_path, mode, file_format, options, expected):
    assert may_have_transparency(write(tmp_path / "picture", mode, file_format, **options)) is expected


def test_each_mask_mode_finds_its_mask(tmp_path):
    rgb, rgba = write(tmp_path / "rgb.png", "RGB", "PNG"), write(tmp_path / "rgba.png", "RGBA", "PNG")
    photo = write(tmp_path / "photo.jpg", "RGB", "JPEG")
    mask = write(tmp_path / "photo.mask.png", "L", "PNG")
    sibling = InputMask("sibling", mask, hashlib.sha256(mask.read_bytes()).hexdigest())
    assert [plan_mask(path, "auto") for path in (photo, rgb, rgba)] == [sibling, None, InputMask("auto-alpha")]
    assert [plan_mask(path, "alpha") for path in (photo, rgb)] == [InputMask("alpha")] * 2
    assert [plan_mask(path, "none") for path in (photo, rgba)] == [None, None]
    assert plan_mask(photo, "sibling") == sibling
    with pytest.raises(ValueError, match=r"no mask rgb\.mask\.png beside it \(--mask sibling\)"):
        plan_mask(rgb, "sibling")
    assert (sibling.key, InputMask("auto-alpha").key, InputMask("alpha").key) == (sibling.sha256, "alpha", "alpha")


def test_the_region_fields_are_left_out_at_their_defaults_and_without_masks():
    assert set(PARAMETERS.as_dict()).isdisjoint({"mask", "crop_width", "crop_height", "blend", "color_correction"})
    region = MASKED.as_dict()
    assert {name: region[name] for name in ("crop_width", "crop_height", "blend", "color_correction")} == {
        "crop_width": 64,
        "crop_height": 96,
        "blend": 8,
        "color_correction": True,
    }
    assert "mask" not in region  # auto, the default
    assert replace(MASKED, mask="alpha").as_dict()["mask"] == "alpha"
    # --mask none (every sweep) runs the plain graph: its crop settings change no picture.
    assert replace(MASKED, mask="none").as_dict() == PARAMETERS.as_dict()


def test_resume_keys_hold_the_mask_files_content_and_old_lines_still_match(tmp_path):
    photo = write(tmp_path / "photo.png", "RGB", "PNG")
    mask = write(tmp_path / "photo.mask.png", "L", "PNG")
    plain = write(tmp_path / "plain.png", "RGB", "PNG")
    rgba = write(tmp_path / "rgba.png", "RGBA", "PNG")
    manifest = Manifest(tmp_path)
    digests = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in (photo, plain, rgba)}
    # Lines written before masks: the plain input still matches; the masked and the transparent ones run again.
    for path in (photo, plain, rgba):
        manifest.append({"sha256": digests[path], "seed": 5, "parameters": PARAMETERS.as_dict()})
    jobs, skipped, _ = cli_main.plan_jobs([photo, plain, rgba], 5, False, PARAMETERS, manifest)
    assert [(job.path, job.mask_key) for job in jobs] == [(photo, jobs[0].mask.sha256), (rgba, "alpha")]
    assert skipped == 1 and jobs[0].mask.file == mask
    line = {"sha256": digests[photo], "seed": 5, "parameters": PARAMETERS.as_dict(), "mask": jobs[0].mask_key}
    manifest.append(line)
    assert len(cli_main.plan_jobs([photo], 5, False, PARAMETERS, manifest)[0]) == 0
    Image.new("L", (8, 8), 255).save(mask)  # another mask: another picture
    [again] = cli_main.plan_jobs([photo], 5, False, PARAMETERS, manifest)[0]
    assert again.mask.sha256 == hashlib.sha256(mask.read_bytes()).hexdigest() != line["mask"]
    assert resume_key("ab", 1, {}, None) == resume_key("ab", 1, {})
    # Without its mask under --mask sibling the input fails, named; the others run.
    jobs, _, failed = cli_main.plan_jobs([plain], 5, False, replace(PARAMETERS, mask="sibling"), Manifest(tmp_path))
    assert jobs == [] and failed == [(plain, "no mask plain.mask.png beside it (--mask sibling)")]


class MaskServer:
    """A ServerClient stand-in: records the uploads and the graphs, answers the probe with ``probe_note``."""

    url = "http://fake:8188"

    def __init__(self, probe_note: str = "frame 0: box 8×8 at (0, 0)") -> None:
        self.probe_note, self.uploads, self.graphs = probe_note, [], []

    def connect(self) -> None:
        pass

    def close(self) -> None:
        pass

    def upload(self, data: bytes, name: str) -> str:
        self.uploads.append((name, data))
        return f"img2img-cli/up-{name}"

    def outputs(self, graph: dict) -> dict:
        self.graphs.append(graph)
        crop = next(node_id for node_id, node in graph.items() if node["class_type"] == "Img2ImgCrop")
        return {crop: {"text": [f"1 crop(s) of 64×64\n{self.probe_note}"]}}

    def run(self, data, name, make_graph, on_progress) -> Result:
        self.uploads.append((name, data))
        graph, _ = make_graph(f"img2img-cli/up-{name}")
        self.graphs.append(graph)
        return Result(b"picture", "img2img_00001_.png", f"prompt-{name}", {"total_s": 1.0})


def classes(graph: dict) -> set[str]:
    return {node["class_type"] for node in graph.values()}


def test_the_mask_file_is_uploaded_and_auto_alpha_asks_the_servers_loader():
    template, job = load_template(), Job(Path("photo.png"), "ab", 3, InputMask("sibling", Path("photo.mask.png"), "cd"))
    server = MaskServer()
    graph, _ = graph_for(server, Upload(b"image", b"mask"), job, template, MASKED, "img2img-cli/up-photo.png")
    assert server.uploads == [("photo.mask.png", b"mask")]
    assert node_of(graph, "LoadImageMask")[1]["inputs"]["image"] == "img2img-cli/up-photo.mask.png"
    # auto: a transparent input is cropped by its alpha; an opaque one (an RGBA file) runs the plain graph.
    for note, expected in (("frame 0: box 8×8 at (0, 0)", True), ("no mask region in frame 0: it passes", False)):
        server = MaskServer(note)
        job = Job(Path("rgba.png"), "ab", 3, InputMask("auto-alpha"))
        graph, _ = graph_for(server, Upload(b"image"), job, template, MASKED, "img2img-cli/up-rgba.png")
        [probe] = server.graphs
        assert node_of(probe, "Img2ImgLoadImage")[1]["inputs"]["image"] == "img2img-cli/up-rgba.png"
        assert ("Img2ImgCrop" in classes(graph)) is expected and "LoadImageMask" not in classes(graph)
    # --mask alpha asks nothing: the crop node passes an opaque picture through unchanged.
    server = MaskServer("no mask region in frame 0")
    job = Job(Path("rgb.png"), "ab", 3, InputMask("alpha"))
    graph, _ = graph_for(server, Upload(b"image"), job, template, MASKED, "img2img-cli/up-rgb.png")
    assert server.graphs == [] and "Img2ImgCrop" in classes(graph)


def test_a_run_sends_each_mask_and_its_manifest_line_resumes_it(tmp_path, monkeypatch):
    images = [write(tmp_path / name, "RGB", "PNG") for name in ("photo.png", "plain.png")]
    mask = tmp_path / "photo.mask.png"
    Image.fromarray(np.tril(np.full((8, 8), 255, np.uint8))).save(mask)
    out = tmp_path / "out"
    out.mkdir()
    jobs = cli_main.plan_jobs(images, 3, False, MASKED, Manifest(out))[0]
    server = MaskServer()
    monkeypatch.setattr(cli_batch, "ServerClient", lambda url, stop, job_timeout: server)
    summary = Batch(jobs, [server.url], MASKED, load_template(), out, 60.0).run()
    assert (summary.done, summary.failed) == (2, 0)
    assert [name for name, _ in server.uploads] == ["photo.png", "photo.mask.png", "plain.png"]
    assert [("Img2ImgStitch" in classes(graph)) for graph in server.graphs] == [True, False]
    lines = {line["input"]: line for line in manifest_lines(out)}
    digest = hashlib.sha256(mask.read_bytes()).hexdigest()
    assert (lines[str(images[0])]["mask"], lines[str(images[0])]["mask_file"]) == (digest, str(mask))
    assert "mask" not in lines[str(images[1])] and "mask_file" not in lines[str(images[1])]
    assert cli_main.plan_jobs(images, 3, False, MASKED, Manifest(out))[:2] == ([], 2)


def test_a_mask_file_that_changed_while_the_batch_ran_fails_its_image(tmp_path):
    photo, mask = write(tmp_path / "photo.png", "RGB", "PNG"), write(tmp_path / "photo.mask.png", "L", "PNG")
    [job] = cli_main.plan_jobs([photo], 3, False, MASKED, Manifest(tmp_path))[0]
    work = Work([job], MASKED, tmp_path)
    assert work.next_job() == job
    assert work.read(job) == Upload(photo.read_bytes(), mask.read_bytes())
    Image.new("L", (8, 8), 255).save(mask)
    assert work.next_job() is None and work.read(job) is None
    assert work.summary.failed == 1
    work.close(stopped=False)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--crop-size", "60", "multiple of 8 from 64 to 8192"),
        ("--crop-size", "100", "multiple of 8 from 64 to 8192"),
        ("--crop-size", "64x65", "multiple of 8 from 64 to 8192"),
        ("--crop-size", "64x64x64", "multiple of 8 from 64 to 8192"),
        ("--crop-size", "big", "W or WxH in pixels"),
        ("--crop-size", "16384", "multiple of 8 from 64 to 8192"),
        ("--blend", "257", "from 0 to 256"),
        ("--blend", "-1", "from 0 to 256"),
        ("--mask", "red", "invalid choice"),
    ],
)
def test_region_usage_errors_name_the_option_and_exit_2(tmp_path, capsys, flag, value, message):
    base = ["run", str(tmp_path / "a.png"), "--prompt", "p", "--denoise", "0.5", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main([*base, f"{flag}={value}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("usage: img2img run")
    assert f"argument {flag}: " in err and message in err and value in err


def test_the_region_options_reach_the_parameters():
    base = ("run", "a.png", "--prompt", "p", "--denoise", "0.3", "--out", "o")
    options = options_for(*base, "--mask", "sibling", "--crop-size", "768x512", "--blend", "0", "--color-correction")
    parameters = options.parameters("model.safetensors")
    assert (parameters.mask, parameters.crop_width, parameters.crop_height) == ("sibling", 768, 512)
    assert (parameters.blend, parameters.color_correction) == (0, True)
    square = options_for(*base, "--crop-size", "1024").parameters("m")
    assert (square.mask, square.crop_width, square.crop_height, square.blend) == ("auto", 1024, 1024, 16)
    sweep = options_for("sweep", "a.png", "--prompt", "p", "--denoise", "0.3,0.5", "--out", "o")
    assert sweep.mask == "none" and "mask" not in sweep.parameters("m").as_dict()
    assert isinstance(parameters, Parameters)
