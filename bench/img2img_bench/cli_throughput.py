"""`img2img run` over one local server: images per minute on a folder, with --accelerate and without.

The real command starts its local host server (the headless ComfyUI of this checkout) on the full-shape SD1.5
checkpoint (quick: the test checkpoint) and runs the folder; the rate counts each image's own time from the
manifest (upload, queue, model run, download: ``timings.total_s``), so the server's start-up is left out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .device import log
from .ray_throughput import cli_environment, make_inputs


def cli_throughput(checkpoint: str, models_dir: Path, size: int, steps: int, denoise: float, images: int) -> dict:
    results = {"checkpoint": checkpoint, "size": size, "steps": steps, "denoise": denoise, "images": images}
    with tempfile.TemporaryDirectory(prefix="img2img-cli-bench-") as folder:
        workdir = Path(folder)
        inputs = workdir / "inputs"
        make_inputs(inputs, images, size)
        env = cli_environment(workdir)
        for accelerate in (False, True):
            out = workdir / f"out-{accelerate}"
            command = [sys.executable, "-m", "img2img_cli", "run", str(inputs), "--prompt", "a lighthouse"]
            command += ["--denoise", str(denoise), "--steps", str(steps), "--checkpoint", checkpoint]
            command += ["--models-dir", str(models_dir), "--out", str(out)]
            command += ["--accelerate"] if accelerate else []
            log(f"img2img run over one local server, {images} pictures, accelerate {'on' if accelerate else 'off'}")
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
            lines = (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
            seconds = sum(json.loads(line)["timings"]["total_s"] for line in lines)
            results["accelerate" if accelerate else "plain"] = {
                "images": len(lines),
                "seconds": seconds,
                "images_per_min": 60 * len(lines) / seconds,
            }
    return results
