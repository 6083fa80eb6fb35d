"""End to end: whole img2img graphs POSTed to a headless server, what a user waits for, side by side.

Four graphs on the same picture, seed and strength: the pack's with ``accelerate`` on (sampler, encode and
decode), the pack's plain, core's KSamplerAdvanced chain (the identical work: the last ⌊N·s⌋ steps) and
core's KSampler(denoise) chain (what users run: N steps of a stretched schedule). Prompt time comes from the
server's own execution messages; peak memory is the server process's RSS, sampled while each prompt runs.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import img2img_host as host_harness

from .device import log
from .specs import SAMPLE_IMAGE

GRAPHS = ("pack accelerate", "pack", "core KSamplerAdvanced", "core KSampler(denoise)")


@dataclass(frozen=True)
class Case:
    model: str
    checkpoint: str
    size: int
    steps: int
    denoise: float


def server_graphs(case: Case, image: str, seed: int) -> dict[str, dict]:
    pack = host_harness.demo_graph(image, seed)
    pack["1"]["inputs"]["ckpt_name"] = case.checkpoint
    pack["4"]["inputs"].update(width=case.size, height=case.size)
    for node in ("6", "7"):
        pack[node]["inputs"].update(steps=case.steps, denoise=case.denoise)
    accelerated = json.loads(json.dumps(pack))
    for node in ("5", "7", "8"):
        accelerated[node]["inputs"]["accelerate"] = True
    head = {
        "1": pack["1"],
        "2": pack["2"],
        "3": pack["3"],
        "4": api_node("LoadImage", image=image),
        "5": api_node(
            "ImageScale", image=["4", 0], upscale_method="lanczos", width=case.size, height=case.size, crop="center"
        ),
        "6": api_node("VAEEncode", pixels=["5", 0], vae=["1", 2]),
        "8": api_node("VAEDecode", samples=["7", 0], vae=["1", 2]),
        "9": api_node("SaveImage", images=["8", 0], filename_prefix="core"),
    }
    sampling = {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["6", 0], "cfg": 7.0}
    sampling.update(sampler_name="euler", scheduler="normal", steps=case.steps)
    advanced = api_node(
        "KSamplerAdvanced",
        **sampling,
        add_noise="enable",
        noise_seed=seed,
        start_at_step=case.steps - int(case.steps * case.denoise),
        end_at_step=10000,
        return_with_leftover_noise="disable",
    )
    ksampler = api_node("KSampler", **sampling, seed=seed, denoise=case.denoise)
    return {
        "pack accelerate": accelerated,
        "pack": pack,
        "core KSamplerAdvanced": {**head, "7": advanced},
        "core KSampler(denoise)": {**head, "7": ksampler},
    }


def api_node(class_type: str, **inputs: object) -> dict:
    """One node of an API-format graph; a link to another node's output is [node id, output index]."""
    return {"class_type": class_type, "inputs": inputs}


def prompt_seconds(history: dict) -> float:
    """Execution start to success, from the server's own status messages."""
    stamps = {name: data["timestamp"] for name, data in history["status"]["messages"]}
    if "execution_success" not in stamps:
        raise RuntimeError(f"the prompt failed: {json.dumps(history['status'], indent=1)}")
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000


def peak_rss_bytes(pid: int) -> int:
    """The process's high-water mark of resident memory (the kernel's VmHWM)."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def bench_server(host: host_harness.Host, workdir: Path, models_dir: Path) -> host_harness.Server:
    workdir.mkdir(parents=True)
    paths = workdir / "extra_model_paths.yaml"
    paths.write_text(f"img2img_bench:\n  checkpoints: {models_dir}\n", encoding="utf-8")
    return host_harness.Server(
        host, workdir, extra_args=("--extra-model-paths-config", str(paths)), cpu=not torch.cuda.is_available()
    )


def run_graph(server: host_harness.Server, case: Case, name: str, run: int) -> float:
    """One prompt of graph ``name`` on a new image name (the server's cache re-runs every node from the image
    on; the checkpoint stays loaded, as on a user's server); its prompt time."""
    image = f"bench_{run}.png"
    shutil.copyfile(SAMPLE_IMAGE, server.input_dir / image)
    started = time.monotonic()
    seconds = prompt_seconds(server.wait(server.queue(server_graphs(case, image, seed=run)[name]), timeout=3600))
    log(f"{case.model} {case.size}², s = {case.denoise}: {name}, run {run}: {time.monotonic() - started:.1f} s")
    return seconds


def end_to_end(host: host_harness.Host, models_dir: Path, cases: list[Case], repeats: int, workdir: Path) -> dict:
    """Median prompt time of each graph in each case, the four graphs taking turns in one server so that they
    share the machine's moods (a warm-up run of each graph on the first case loads the checkpoint and makes the
    kept copy, and is not counted)."""
    shutil.rmtree(workdir, ignore_errors=True)
    times = {(case, name): [] for case in cases for name in GRAPHS}
    runs = 0
    with bench_server(host, workdir, models_dir) as server:
        for name in GRAPHS:  # the warm-up: loads the checkpoint and makes the kept copy
            runs += 1
            run_graph(server, cases[0], name, runs)
        for case in cases:
            for _ in range(repeats):
                for name in GRAPHS:
                    runs += 1
                    times[case, name].append(run_graph(server, case, name, runs))
    return {
        "rows": [
            {"case": case.__dict__, "seconds": {name: statistics.median(times[case, name]) for name in GRAPHS}}
            for case in cases
        ]
    }


def peak_memory(host: host_harness.Host, models_dir: Path, cases: list[Case], workdir: Path) -> list[dict]:
    """Each graph's peak resident memory (VmHWM) in each case, in a server of its own that loads the checkpoint
    and runs that graph once: the load, and the accelerated graph's conversion and packing, are part of it."""
    shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for case in cases:
        peaks = {}
        for index, name in enumerate(GRAPHS):
            with bench_server(host, workdir / f"{case.size}_{index}", models_dir) as server:
                run_graph(server, case, name, 1)
                peaks[name] = peak_rss_bytes(server.process.pid)
        rows.append({"case": case.__dict__, "peak_rss": peaks})
    return rows
