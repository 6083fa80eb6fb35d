"""The pack inside a real ComfyUI server: registration, a full img2img graph, errors."""

from __future__ import annotations

import concurrent.futures
import json
import re
import time
import urllib.error

import pytest
from PIL import Image

from pack_under_test import GRAPH_NODE_IDS

NODE_IDS = sorted(
    GRAPH_NODE_IDS
    | {
        "Img2ImgDenoiseSweep",
        "Img2ImgLoopback",
        "Img2ImgStrengthSigmas",
        "Img2ImgNoise",
        "Img2ImgBatchSeedSampler",
        "Img2ImgTiledModel",
        "Img2ImgCrop",
        "Img2ImgStitch",
    }
)


def test_object_info_lists_the_six_nodes_with_tooltips(server):
    info = server.get_json("/object_info")
    for node_id in NODE_IDS:
        node = info[node_id]
        assert node["category"].split("/")[0] == "img2img"
        assert node["display_name"] and node["display_name"] != node_id
        assert len(node["description"]) > 20
        inputs = {**node["input"]["required"], **node["input"].get("optional", {})}
        for name, spec in inputs.items():
            assert len(spec) > 1 and spec[1].get("tooltip"), f"{node_id}.{name} has no tooltip"
        assert len(node.get("output_tooltips", [])) == len(node["output"])
    assert info["Img2ImgKSampler"]["input"]["required"]["strength_mode"][0] == [
        "steps_x_denoise",
        "a1111",
        "comfy",
        "snr",
    ]


def test_the_img2img_graph_runs_and_saves_a_png_with_its_graph(server, api_graph):
    graph = api_graph(seed=101)
    workflow = {"nodes": [], "links": [], "version": 0.4, "note": "posted by the test"}
    entry = server.wait(server.queue(graph, {"extra_pnginfo": {"workflow": workflow}}))
    assert entry["status"]["status_str"] == "success", entry["status"]
    [path] = server.saved_paths(entry)
    assert path.is_file() and path.resolve().is_relative_to(server.output_dir.resolve())
    with Image.open(path) as png:
        assert png.size == (128, 128)
        saved_graph = json.loads(png.text["prompt"])
        assert {n: (v["class_type"], v["inputs"]) for n, v in saved_graph.items()} == {
            n: (v["class_type"], v["inputs"]) for n, v in graph.items()
        }
        assert json.loads(png.text["workflow"]) == workflow
    plan = entry["outputs"]["7"]["img2img_plan"][0]
    assert (plan["mode"], plan["steps"], plan["model_steps"], plan["start_index"]) == ("steps_x_denoise", 20, 12, 8)
    assert "steps 9–20 of 20" in entry["outputs"]["7"]["text"][0]


def test_the_simple_graph_without_noise_node_runs(server, api_graph):
    graph = api_graph(seed=102)
    graph["7"]["inputs"]["latent_image"] = ["5", 0]
    del graph["6"]
    entry = server.wait(server.queue(graph))
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert len(server.saved_paths(entry)) == 1


def test_saving_twice_never_overwrites(server, api_graph):
    first = server.wait(server.queue(api_graph(seed=103, **{"9.filename_prefix": "again/same"})))
    second = server.wait(server.queue(api_graph(seed=104, **{"9.filename_prefix": "again/same"})))
    [a], [b] = server.saved_paths(first), server.saved_paths(second)
    assert a != b and a.is_file() and b.is_file() and a.parent.name == "again"


def test_the_log_shows_the_pack_imported(server):
    log = server.log()
    assert re.search(r"seconds: .*custom_nodes/comfyui-img2img\s*$", log, re.MULTILINE), log[-3000:]
    assert not re.search(r"IMPORT FAILED.*img2img|img2img.*IMPORT FAILED", log)


def test_the_plan_route_answers_every_mode_and_a_stop(server):
    query = "steps=20&denoise=0.6&scheduler=normal&sampler_name=euler&strength_mode="
    assert "steps 9–20 of 20" in server.get_json(f"/img2img/plan?{query}steps_x_denoise")["text"]
    snr = server.get_json(f"/img2img/plan?{query}snr")
    assert snr["sigma_start"] == pytest.approx(1.5) and snr["snr_start"] == pytest.approx((0.4 / 0.6) ** 2)
    assert "steps 1–20 of 20" in snr["text"] and "SNR 0.444 at the start" in snr["text"]
    stopped = server.get_json(f"/img2img/plan?{query}steps_x_denoise&end_at_step=14")
    assert "steps 9–14 of 20" in stopped["text"] and "stops with leftover noise" in stopped["text"]
    assert stopped["model_steps"] == 6 and stopped["sigma_end"] > 0


def test_an_absurd_plan_request_is_refused_at_once_and_the_server_keeps_answering(server):
    """steps=1000000000 once grew the server to 23.8 GB on its event loop; the nodes' own maximum bounds it."""
    started = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as refused:
        server.get_json("/img2img/plan?steps=1000000000&denoise=0.01&strength_mode=comfy")
    assert refused.value.code == 400 and time.monotonic() - started < 1.0
    assert "steps must be at most 10000" in json.loads(refused.value.read())["error"]
    # The longest ladder the nodes allow (10000 steps) runs in a worker thread: other requests are answered meanwhile.
    query = "/img2img/plan?steps=1000&denoise=0.1&strength_mode=comfy&scheduler=normal&sampler_name=euler"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        largest = pool.submit(server.get_json, query)
        assert server.get_json("/system_stats")["system"]
        assert "steps 9001–10000 of 10000" in largest.result()["text"]
