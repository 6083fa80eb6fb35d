"""The device the benchmark measures on, and its log lines."""

from __future__ import annotations

import functools
import time

import torch


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


@functools.cache
def device() -> torch.device:
    import comfy.model_management

    return comfy.model_management.get_torch_device()


def sync() -> None:
    """Wait for the device's queued work, so that a timer stops when the work is done (a no-op on a CPU)."""
    if device().type == "cuda":
        torch.cuda.synchronize(device())
