"""Throughput of `img2img run --ray`: images per minute with 1 and 2 workers, and a cluster's on paper.

Each configuration runs the real command (a local Ray instance, each worker with its own ComfyUI of the host on
the test checkpoint, --cpu) over the same folder into a fresh output folder. Its rate is counted from the moment
every worker's server answers (the command prints a line per worker) to the last manifest line, so Ray's and
ComfyUI's start-up are reported apart. The manifest's per-image timings (upload, queue, model run, download)
give the per-image costs; the driver's own cost per image (its Ray round trip with the picture's bytes, the
output file and the manifest line, both fsynced) is measured in this process with a one-CPU local Ray.

The paper estimate: N nodes of G GPUs each run N x G workers, each busy for (run + transfer) seconds an image;
the single driver handles one image per driver-cost seconds; the cluster gets the smaller of the two rates.

    .host/venv/bin/python bench/ray_run.py [--images 12] [--size 128] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

import img2img_host as host_harness

WORKER_LINE = re.compile(r"worker \d+: ComfyUI pid \d+")
GPU_IMAGE_S = (0.5, 2.0)  # assumed seconds of model time per image on one GPU, for the paper table
NODES = (1, 4, 16, 64)


def log(message: str) -> None:
    print(f"[ray bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def make_inputs(folder: Path, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for number in range(count):
        path = folder / f"frame{number:04d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def cli_environment(workdir: Path) -> dict[str, str]:
    """The checkout's cli/ importable as img2img_cli (as the tests and the demo do), Ray kept offline."""
    link = workdir / "path" / "img2img_cli"
    link.parent.mkdir()
    link.symlink_to(host_harness.PACK_ROOT / "cli", target_is_directory=True)
    path = os.pathsep.join([str(link.parent), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}


def run_workers(host, inputs: Path, workers: int, steps: int, workdir: Path, env: dict[str, str]) -> dict:
    out = workdir / f"out-{workers}"
    command = [sys.executable, "-m", "img2img_cli", "run", str(inputs), "--prompt", "a lighthouse"]
    command += ["--denoise", "1", "--steps", str(steps), "--checkpoint", host_harness.TEST_CHECKPOINT]
    command += ["--out", str(out), "--ray", "local", "--workers", str(workers), "--cpu", "--comfyui", str(host.comfyui)]
    started = time.monotonic()
    ready: list[float] = []
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def read() -> None:
        for line in process.stdout:
            if WORKER_LINE.search(line):
                ready.append(time.monotonic())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code = process.wait()
    ended = time.monotonic()
    reader.join(10)
    if code != 0 or len(ready) != workers:
        raise RuntimeError(f"{' '.join(command)} exited with {code}")
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    timings = {key: statistics.median(line["timings"][key] for line in lines) for key in lines[0]["timings"]}
    return {
        "workers": workers,
        "images": len(lines),
        "start_s": max(ready) - started,
        "batch_s": ended - max(ready),
        "images_per_min": 60 * len(lines) / (ended - max(ready)),
        "median_timings_s": timings,
    }


def driver_cost(size: int, repeats: int = 40) -> float:
    """Seconds of the driver's own work per image: a Ray actor round trip with the picture's bytes, then the
    output file and its manifest line (what batch.Work.record writes)."""
    import ray
    from img2img_cli.results import Manifest, write_output

    @ray.remote(num_cpus=1)
    class Echo:
        def run(self, data: bytes) -> bytes:
            return data

    buffer = Path(tempfile.mkdtemp(prefix="img2img-ray-bench-"))
    Image.fromarray(np.zeros((size, size, 3), np.uint8)).save(buffer / "picture.png")
    data = (buffer / "picture.png").read_bytes()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        echo = Echo.remote()
        ray.get(echo.run.remote(data))
        manifest = Manifest(buffer)
        started = time.monotonic()
        for number in range(repeats):
            result = ray.get(echo.run.remote(data))
            output = write_output(buffer, "picture", ".png", result)
            manifest.append({"input": str(number), "output": output.name, "sha256": "0" * 64, "seed": number})
        return (time.monotonic() - started) / repeats
    finally:
        ray.shutdown()


def paper(transfer_s: float, driver_s: float) -> list[dict]:
    rows = []
    for model_s in GPU_IMAGE_S:
        for nodes in NODES:
            for gpus in (1, 8):
                workers_rate = nodes * gpus * 60 / (model_s + transfer_s)
                rows.append(
                    {
                        "model_s": model_s,
                        "nodes": nodes,
                        "gpus": gpus,
                        "images_per_min": min(workers_rate, 60 / driver_s),
                        "driver_bound": 60 / driver_s < workers_rate,
                    }
                )
    return rows


def report(results: dict) -> str:
    lines = [
        f"Machine: {results['machine']}",
        "",
        f"Command: `{results['command']}`",
        "",
        f"{results['images']} pictures of {results['size']}², {results['steps']} steps at denoise 1 (test checkpoint)",
        "",
        "| workers | start-up (Ray + servers) | batch | images / min | median per image: run · upload · queued · "
        "download |",
        "|---|---|---|---|---|",
    ]
    for row in results["runs"]:
        t = row["median_timings_s"]
        lines.append(
            f"| {row['workers']} | {row['start_s']:.1f} s | {row['batch_s']:.1f} s | **{row['images_per_min']:.1f}** | "
            f"{t['run_s']:.3f} s · {t['upload_s']:.3f} s · {t['queued_s']:.3f} s · {t['download_s']:.3f} s |"
        )
    lines += [
        "",
        f"Driver cost per image (Ray round trip of the bytes, output file, manifest line): "
        f"{results['driver_s'] * 1000:.1f} ms, a ceiling of {60 / results['driver_s']:.0f} images / min for one "
        "driver.",
        f"Transfer per image (upload + download on loopback): {results['transfer_s'] * 1000:.1f} ms.",
        "",
        "On paper (not measured): N nodes × G GPUs, each GPU one worker busy model + transfer seconds an image,",
        "capped by the one driver:",
        "",
        "| model s / image (assumed) | nodes | GPUs / node | images / min | bound by |",
        "|---|---|---|---|---|",
    ]
    for row in results["paper"]:
        lines.append(
            f"| {row['model_s']} | {row['nodes']} | {row['gpus']} | {row['images_per_min']:,.0f} | "
            f"{'the driver' if row['driver_bound'] else 'the GPUs'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Throughput of img2img run --ray: 1 vs 2 workers, and on paper.")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    options = parser.parse_args(argv)
    host = host_harness.build()
    out = host.root / "bench"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="img2img-ray-bench-") as folder:
        workdir = Path(folder)
        inputs = workdir / "in"
        make_inputs(inputs, options.images, options.size)
        env = cli_environment(workdir)
        runs = []
        for workers in (1, 2):
            log(f"{workers} worker(s), {options.images} images")
            runs.append(run_workers(host, inputs, workers, options.steps, workdir, env))
            log(f"{runs[-1]['images_per_min']:.1f} images / min")
        sys.path.insert(0, env["PYTHONPATH"].split(os.pathsep)[0])  # the checkout's cli/ as img2img_cli
        driver_s = driver_cost(options.size)
    single = runs[0]["median_timings_s"]
    transfer_s = single["upload_s"] + single["download_s"]
    command = "python bench/ray_run.py" + " ".join(["", *(argv if argv is not None else sys.argv[1:])])
    results = {
        "command": command.strip(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "images": options.images,
        "size": options.size,
        "steps": options.steps,
        "runs": runs,
        "driver_s": driver_s,
        "transfer_s": transfer_s,
        "paper": paper(transfer_s, driver_s),
    }
    (out / "ray.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    text = report(results)
    (out / "ray.md").write_text(text, encoding="utf-8")
    print(text)
    return 0
