"""What is measured: the models, their rows and strength curves, and the full-shape checkpoint."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import img2img_host as host_harness

from .device import log

PACK_ROOT = Path(__file__).resolve().parents[2]
# NVIDIA's dense FP16 tensor-core rate for an H100 as the issue states it; a projection, not a measurement.
H100_FLOPS = 790e12
SAMPLE_IMAGE = PACK_ROOT / "example_workflows" / "input" / "sample.png"
SD15_CHECKPOINT = "img2img-bench-sd15-full.safetensors"
PARTS = ("rows", "accelerate", "curve", "server", "memory", "whole", "cli")
POSITIVE, NEGATIVE = "a watercolor painting of hills at sunset", "blurry, low quality"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    checkpoint: str
    steps: int  # N, the full schedule
    size: int  # image side in pixels
    rows: tuple[tuple[int, str, float], ...]  # (batch, sampler, s) of the pack-vs-KSamplerAdvanced rows
    curve: tuple[float, ...]  # strengths of the strength curve, with core KSampler(denoise) beside it


def grid(batches, samplers, strengths) -> tuple[tuple[int, str, float], ...]:
    return tuple((batch, sampler, s) for batch in batches for sampler in samplers for s in strengths)


TINY_NAME = "test checkpoint (25.8M UNet, TAESD)"
# The size the test checkpoint is made for: its one-level UNet attends over every latent pixel.
TINY_SIZE = 128
TINY = ModelSpec(
    TINY_NAME,
    host_harness.TEST_CHECKPOINT,
    20,
    TINY_SIZE,
    grid((1, 4), ("euler", "dpmpp_2m"), (0.25, 0.5, 1.0)),
    tuple(round(0.1 * i, 1) for i in range(1, 11)),
)
# Quick: batch 1 only (the batch-4 row took 24 s of 3.2 minutes on 2026-12-02; the full run has batch 4).
TINY_QUICK = ModelSpec(
    TINY_NAME,
    host_harness.TEST_CHECKPOINT,
    10,
    TINY_SIZE,
    (*grid((1,), ("euler",), (0.25, 0.5, 1.0)), (1, "dpmpp_2m", 0.5)),
    (0.2, 0.5, 1.0),
)
# Batch 1 only: a batch-4 row costs about 9 s a step here, 7 minutes a row with its repeats.
SD15 = ModelSpec(
    "full-shape SD1.5 (859.5M UNet, KL-VAE)",
    SD15_CHECKPOINT,
    8,
    256,
    grid((1,), ("euler", "dpmpp_2m"), (0.25, 0.5, 1.0)),
    (),
)


def ensure_sd15(host: host_harness.Host, models_dir: Path) -> Path:
    """The full-shape checkpoint, generated once (about 30 s, 2.1 GB) and never committed."""
    path = models_dir / SD15_CHECKPOINT
    if not path.exists():
        log("generating the full-shape SD1.5 checkpoint")
        subprocess.run(
            [
                str(host.python),
                str(PACK_ROOT / "scripts" / "make_test_checkpoint.py"),
                "--comfyui",
                str(host.comfyui),
                "--out",
                str(path),
                "--shape",
                "sd15",
            ],
            check=True,
        )
    return path
