"""End to end: the same img2img graph POSTed to a headless server, pack nodes against core nodes."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import torch

import img2img_host as host_harness

from .device import log
from .specs import SAMPLE_IMAGE, ModelSpec


def server_graphs(spec: ModelSpec, image: str, seed: int, denoise: float = 0.5) -> dict[str, dict]:
    pack = host_harness.demo_graph(image, seed)
    pack["1"]["inputs"]["ckpt_name"] = spec.checkpoint
    pack["4"]["inputs"].update(width=spec.size, height=spec.size)
    for node in ("6", "7"):
        pack[node]["inputs"].update(steps=spec.steps, denoise=denoise)
    core = {
        "1": pack["1"],
        "2": pack["2"],
        "3": pack["3"],
        "4": api_node("LoadImage", image=image),
        "5": api_node(
            "ImageScale",
            image=["4", 0],
            upscale_method="lanczos",
            width=spec.size,
            height=spec.size,
            crop="center",
        ),
        "6": api_node("VAEEncode", pixels=["5", 0], vae=["1", 2]),
        "7": api_node(
            "KSamplerAdvanced",
            model=["1", 0],
            positive=["2", 0],
            negative=["3", 0],
            latent_image=["6", 0],
            add_noise="enable",
            noise_seed=seed,
            steps=spec.steps,
            cfg=7.0,
            sampler_name="euler",
            scheduler="normal",
            start_at_step=spec.steps - int(spec.steps * denoise),
            end_at_step=10000,
            return_with_leftover_noise="disable",
        ),
        "8": api_node("VAEDecode", samples=["7", 0], vae=["1", 2]),
        "9": api_node("SaveImage", images=["8", 0], filename_prefix="core"),
    }
    return {"pack": pack, "core": core}


def api_node(class_type: str, **inputs: object) -> dict:
    """One node of an API-format graph; a link to another node's output is [node id, output index]."""
    return {"class_type": class_type, "inputs": inputs}


def prompt_seconds(history: dict) -> float:
    """Execution start to success, from the server's own status messages."""
    stamps = {name: data["timestamp"] for name, data in history["status"]["messages"]}
    if "execution_success" not in stamps:
        raise RuntimeError(f"the prompt failed: {json.dumps(history['status'], indent=1)}")
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000


def end_to_end(host: host_harness.Host, models_dir: Path, specs: list[ModelSpec], repeats: int, workdir: Path):
    """Median prompt time of each graph; a new image name each run, so the server's cache re-runs every node
    from the image on (the checkpoint stays loaded, as on a user's server)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    paths = workdir / "extra_model_paths.yaml"
    paths.write_text(f"img2img_bench:\n  checkpoints: {models_dir}\n", encoding="utf-8")
    server = host_harness.Server(
        host, workdir, extra_args=("--extra-model-paths-config", str(paths)), cpu=not torch.cuda.is_available()
    )
    results = {}
    with server:
        for spec in specs:
            times: dict[str, list[float]] = {"pack": [], "core": []}
            for run in range(repeats + 1):
                image = f"bench_{run}.png"
                shutil.copyfile(SAMPLE_IMAGE, server.input_dir / image)
                for name, graph in server_graphs(spec, image, seed=run).items():
                    log(f"{spec.name}: server, {name} graph, run {run}")
                    seconds = prompt_seconds(server.wait(server.queue(graph), timeout=1800))
                    if run:  # run 0 loads the checkpoint
                        times[name].append(seconds)
            results[spec.name] = {name: statistics.median(values) for name, values in times.items()}
            results[spec.name]["ratio"] = results[spec.name]["pack"] / results[spec.name]["core"]
    return results
