"""Measuring one run: wall time, time in the denoiser, time in the sampler, peak memory."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .device import device, sync


@dataclass
class Probe:
    """Times every denoiser call and sampler loop of the runs on ``model``, a clone it instruments."""

    model: object
    model_s: float = 0.0
    model_calls: int = 0
    unet_s: float = 0.0
    loop_s: float = 0.0

    @classmethod
    def on(cls, model) -> Probe:
        import comfy.patcher_extension as extension

        probe = cls(model.clone())

        # Plain functions, not bound methods: ComfyUI deep-copies model options, and a bound method's
        # copy would carry a copy of the probe.
        def timed(field: str):
            def wrapper(executor, *args, **kwargs):
                sync()
                start = time.perf_counter()
                out = executor(*args, **kwargs)
                sync()
                setattr(probe, field, getattr(probe, field) + time.perf_counter() - start)
                if field == "model_s":
                    probe.model_calls += 1
                return out

            return wrapper

        wrappers = extension.WrappersMP
        probe.model.add_wrapper_with_key(wrappers.PREDICT_NOISE, "img2img-bench", timed("model_s"))
        probe.model.add_wrapper_with_key(wrappers.SAMPLER_SAMPLE, "img2img-bench", timed("loop_s"))
        probe.model.add_wrapper_with_key(wrappers.DIFFUSION_MODEL, "img2img-bench", timed("unet_s"))
        return probe

    def reset(self) -> None:
        self.model_s, self.model_calls, self.unet_s, self.loop_s = 0.0, 0, 0.0, 0.0


class PeakMemory:
    """Peak memory above the level at entry: allocated device memory on CUDA, the process's RSS elsewhere."""

    def __init__(self) -> None:
        import psutil

        self.device = device()
        self.process = psutil.Process()
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return self
        self.base = self.peak = self.process.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample_rss, daemon=True)
        self.thread.start()
        return self

    def sample_rss(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
            return
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.base) / 2**20


@dataclass
class Runs:
    """Repeated runs of one configuration."""

    total_s: list[float] = field(default_factory=list)
    model_s: list[float] = field(default_factory=list)
    unet_s: list[float] = field(default_factory=list)
    loop_s: list[float] = field(default_factory=list)
    model_calls: int = 0
    peak_mib: float = 0.0
    first_s: float = 0.0  # the warm-up run: loading, conversions, caches
    output: torch.Tensor | None = None

    def add(self, run: Callable[[], torch.Tensor], probe: Probe) -> None:
        probe.reset()
        with PeakMemory() as memory:
            sync()
            start = time.perf_counter()
            self.output = run()
            sync()
            total = time.perf_counter() - start
        self.total_s.append(total)
        self.model_s.append(probe.model_s)
        self.unet_s.append(probe.unet_s)
        self.loop_s.append(probe.loop_s)
        self.model_calls = probe.model_calls
        self.peak_mib = max(self.peak_mib, memory.extra_mib)

    def summary(self) -> dict[str, object]:
        calls = max(self.model_calls, 1)
        total, model, unet, loop = (
            statistics.median(values) for values in (self.total_s, self.model_s, self.unet_s, self.loop_s)
        )
        return {
            "total_s": total,
            "total_min_s": min(self.total_s),
            "total_max_s": max(self.total_s),
            "model_calls": self.model_calls,
            "model_per_step_s": model / calls,
            # The UNet's forward alone; the rest of model_per_step is ComfyUI's denoiser: CFG, batching, casts.
            "unet_per_step_s": unet / calls,
            # Inside the sampler's loop but outside the denoiser: the loop's own cost.
            "loop_per_step_s": (loop - model) / calls,
            # Outside the sampler's loop: sigmas, noise, conditioning set-up, loading checks.
            "fixed_s": total - loop,
            "sampler_s": loop,
            "peak_extra_mib": self.peak_mib,
            "first_s": self.first_s,
        }


def side_by_side(runs: dict[str, Callable[[], torch.Tensor]], probe: Probe, repeats: int) -> dict[str, Runs]:
    """Warm each up once, then alternate them ``repeats`` times."""
    results = {name: Runs() for name in runs}
    for name, run in runs.items():
        results[name].first_s = wall_time(run)
    for _ in range(repeats):
        for name, run in runs.items():
            results[name].add(run, probe)
    return results


def wall_time(run: Callable[[], object]) -> float:
    sync()
    start = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - start


def median_time(run: Callable[[], object], repeats: int) -> dict[str, float]:
    """The first run's time, then the median, min and max of ``repeats`` more."""
    first = wall_time(run)
    times = [wall_time(run) for _ in range(repeats)]
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "first_s": first}


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the repeats' ratios: each repeat's pair ran back to back, under the same machine speed."""
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


def matmul_rate(dtype: torch.dtype, size: int = 2048) -> float:
    """Dense matmul FLOP/s on the device: the machine's floor for the UNet's convolutions and projections."""
    a = torch.randn(size, size, device=device(), dtype=dtype)
    b = torch.randn(size, size, device=device(), dtype=dtype)
    timing = median_time(lambda: a @ b, 10)
    return 2 * size**3 / timing["median_s"]


def difference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    a, b = a.float(), b.float()
    return {
        "max_abs": float((a - b).abs().max()),
        "rel_rms": float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt()),
    }
