"""The pack beside ComfyUI core, in one process on one machine: what img2img costs and where it goes.

Run it through the host harness, which builds the pinned ComfyUI first:

    python3 scripts/host.py bench --quick     # test checkpoint only, under 3 minutes on 2 CPU cores
    python3 scripts/host.py bench             # plus a full-shape SD1.5 UNet and KL-VAE (random weights)

Every figure is a median of ``--repeats`` runs after a warm-up, with pack and core alternating so that
drift in the machine's speed hits both. The device is whatever ``comfy.model_management`` picks, so the
same command measures a GPU where there is one. Results go to ``.host/bench/`` as JSON and Markdown;
README.md beside this file explains the tables and holds the last full run.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACK_ROOT / "scripts"))
import host as host_harness  # noqa: E402  (scripts/host.py: standard library only)

# NVIDIA's dense FP16 tensor-core rate for an H100 as the issue states it; a projection, not a measurement.
H100_FLOPS = 790e12
SAMPLE_IMAGE = PACK_ROOT / "example_workflows" / "input" / "sample.png"
SD15_CHECKPOINT = "img2img-bench-sd15-full.safetensors"
PARTS = ("rows", "accelerate", "curve", "server")
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
TINY_QUICK = ModelSpec(
    TINY_NAME,
    host_harness.TEST_CHECKPOINT,
    10,
    TINY_SIZE,
    (*grid((1,), ("euler",), (0.25, 0.5, 1.0)), (1, "dpmpp_2m", 0.5), (4, "euler", 0.5)),
    (0.2, 0.5, 0.8, 1.0),
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


# ---------------------------------------------------------------------------------------------
# ComfyUI and the pack in this process


def import_comfyui(comfyui: Path):
    sys.path.insert(0, str(comfyui))
    import comfy.cli_args

    # ComfyUI's device probe fails on a CUDA build of torch without a GPU; with a GPU it picks the GPU.
    comfy.cli_args.args.cpu = not torch.cuda.is_available()
    import comfy.utils
    import nodes as comfy_nodes

    comfy.utils.PROGRESS_BAR_ENABLED = False
    return comfy_nodes


def load_pack() -> dict:
    spec = importlib.util.spec_from_file_location(
        "comfyui_img2img", PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)]
    )
    pack = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = pack
    spec.loader.exec_module(pack)
    return pack.NODE_CLASS_MAPPINGS


# ---------------------------------------------------------------------------------------------
# Measuring one run: wall time, time in the denoiser, time in the sampler, peak memory


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


# ---------------------------------------------------------------------------------------------
# The benchmark of one model


@dataclass
class Bench:
    comfy_nodes: object
    pack: dict
    spec: ModelSpec
    checkpoint: Path
    repeats: int

    def __post_init__(self) -> None:
        import comfy.sd

        model, clip, self.vae = comfy.sd.load_checkpoint_guess_config(
            str(self.checkpoint), output_vae=True, output_clip=True, embedding_directory=None
        )[:3]
        self.probe = Probe.on(model)
        self.model = self.probe.model
        encode = self.comfy_nodes.CLIPTextEncode().encode
        self.positive, self.negative = encode(clip, POSITIVE)[0], encode(clip, NEGATIVE)[0]
        self.latents: dict[int, dict] = {}

    def image_batch(self, batch: int) -> torch.Tensor:
        from comfyui_img2img.nodes.core.fit import fit_image_and_mask
        from comfyui_img2img.nodes.core.images import load_image_file

        image, mask = load_image_file(SAMPLE_IMAGE)
        return fit_image_and_mask(image, mask, self.spec.size, self.spec.size)[0].repeat(batch, 1, 1, 1)

    def latent(self, batch: int) -> dict:
        if batch not in self.latents:
            self.latents[batch] = self.pack["Img2ImgVAEEncode"]().encode(
                self.image_batch(batch), self.vae, "never", 512, 64
            )[0]
        return self.latents[batch]

    def pack_run(self, latent, sampler, denoise, mode="steps_x_denoise", accelerate=False, seed=1):
        def run():
            out = self.pack["Img2ImgKSampler"]().sample(
                self.model, self.positive, self.negative, latent, seed, self.spec.steps, 7.0, sampler, "normal",
                denoise, mode, "comfy", accelerate,
            )  # fmt: skip
            return out["result"][0]["samples"]

        return run

    def core_advanced_run(self, latent, sampler, denoise, seed=1):
        steps = self.spec.steps
        start_at = steps - int(steps * denoise)

        def run():
            return self.comfy_nodes.KSamplerAdvanced().sample(
                self.model, "enable", seed, steps, 7.0, sampler, "normal", self.positive, self.negative, latent,
                start_at, 10000, "disable",
            )[0]["samples"]  # fmt: skip

        return run

    def core_denoise_run(self, latent, sampler, denoise, seed=1):
        def run():
            return self.comfy_nodes.KSampler().sample(
                self.model, seed, self.spec.steps, 7.0, sampler, "normal", self.positive, self.negative, latent,
                denoise,
            )[0]["samples"]  # fmt: skip

        return run

    def pair(self, pack_run, core_run) -> dict[str, object]:
        runs = side_by_side({"pack": pack_run, "core": core_run}, self.probe, self.repeats)
        pack, core = runs["pack"].summary(), runs["core"].summary()
        return {
            "pack": pack,
            "core": core,
            "ratio": pack["total_s"] / core["total_s"],
            "difference": difference(runs["pack"].output, runs["core"].output),
            "pack_output": runs["pack"].output,
        }

    def flops_per_step(self, batch: int) -> float:
        """FLOPs of one model step (CFG: cond and uncond), counted on one single-step pack run."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        run = self.pack_run(self.latent(batch), "euler", 1 / self.spec.steps)
        with counter:
            run()
        return counter.get_total_flops()

    def attention_times(self) -> dict[str, dict[str, float]]:
        """One UNet forward at CFG batch 2 with ComfyUI's attention for this device, and with PyTorch's fused
        scaled_dot_product_attention, in float32: what the choice of attention costs a step."""
        import comfy.model_management

        from comfyui_img2img.nodes.accelerate import ATTENTION_OVERRIDE, fused_attention

        comfy.model_management.load_models_gpu([self.model])
        unet = self.model.model.diffusion_model
        device = self.model.load_device
        size = self.spec.size // 8
        x = torch.randn(2, 4, size, size, device=device)
        timesteps = torch.full((2,), 500.0, device=device)
        context = torch.randn(2, 77, 768, device=device)  # both models are SD1.5-shaped: CLIP-L context
        fused = {ATTENTION_OVERRIDE: fused_attention}
        with torch.inference_mode():
            return {
                "comfyui": median_time(lambda: unet(x, timesteps, context=context), self.repeats),
                "fused": median_time(
                    lambda: unet(x, timesteps, context=context, transformer_options=fused), self.repeats
                ),
            }

    def vae_times(self, batch: int) -> dict[str, dict[str, float]]:
        pixels = self.image_batch(batch)
        latent = self.latent(batch)
        encode, decode = self.pack["Img2ImgVAEEncode"](), self.pack["Img2ImgVAEDecode"]()
        return {
            "encode": median_time(lambda: encode.encode(pixels, self.vae, "never", 512, 64), self.repeats),
            "decode": median_time(lambda: decode.decode(latent, self.vae, "never", 512, 64), self.repeats),
        }

    def run(self, rates: dict[str, float], parts: tuple[str, ...]) -> dict[str, object]:
        spec = self.spec
        result = {"model": spec.name, "steps": spec.steps, "size": spec.size, "rows": [], "curve": []}
        # The dtype ComfyUI loaded the UNet in for this device: float32 on a CPU, usually half precision on a GPU.
        result["unet_dtype"] = str(self.model.model.get_dtype()).removeprefix("torch.")
        latent = self.latent(1)
        if "rows" in parts:
            self.rows(result, rates)
        if "accelerate" in parts:
            result["accelerate"] = self.accelerate_rows(latent)
        if "curve" in parts:
            result["curve"] = self.curve(latent)
        return result

    def rows(self, result: dict[str, object], rates: dict[str, float]) -> None:
        spec = self.spec
        result["attention"] = self.attention_times()
        for batch in dict.fromkeys(batch for batch, _, _ in spec.rows):
            result.setdefault("flops_per_step", {})[batch] = self.flops_per_step(batch)
            result.setdefault("vae", {})[batch] = self.vae_times(batch)
        for batch, sampler, denoise in spec.rows:
            log(f"{spec.name}: batch {batch}, {sampler}, s={denoise}: steps_x_denoise vs KSamplerAdvanced")
            latent = self.latent(batch)
            row = self.pair(self.pack_run(latent, sampler, denoise), self.core_advanced_run(latent, sampler, denoise))
            del row["pack_output"]
            steps = row["pack"]["model_calls"]
            row.update(kind="steps_x_denoise vs KSamplerAdvanced", batch=batch, sampler=sampler, s=denoise)
            row["floor_s"] = steps * result["flops_per_step"][batch] / rates["float32"]
            row["h100_floor_s"] = steps * result["flops_per_step"][batch] / H100_FLOPS
            result["rows"].append(row)
        log(f"{spec.name}: comfy mode vs KSampler(denoise)")
        latent = self.latent(1)
        row = self.pair(self.pack_run(latent, "euler", 0.5, "comfy"), self.core_denoise_run(latent, "euler", 0.5))
        del row["pack_output"]
        row.update(kind="comfy vs KSampler(denoise)", batch=1, sampler="euler", s=0.5)
        result["rows"].append(row)

    def accelerate_rows(self, latent) -> dict[str, object]:
        from comfyui_img2img.nodes.accelerate import accelerated_dtype

        dtype, reason = accelerated_dtype(self.model)
        if dtype is None:
            return {"skipped": reason}
        core_beside_copy = self.core_beside_copy(latent)  # first: its "before" precedes any accelerated run
        rows = []
        for denoise in (0.5, 1.0):
            log(f"{self.spec.name}: accelerate, s={denoise}")
            plain = self.pack_run(latent, "euler", denoise)()
            row = self.pair(
                self.pack_run(latent, "euler", denoise, accelerate=True),
                self.core_advanced_run(latent, "euler", denoise),
            )
            row.update(s=denoise, vs_plain=difference(row.pop("pack_output"), plain))
            rows.append(row)
        return {
            "dtype": str(dtype).removeprefix("torch."),
            "rows": rows,
            "core_beside_copy": core_beside_copy,
        }

    def core_beside_copy(self, latent) -> dict[str, dict[str, float]]:
        """Core's time before the model's first accelerated run, then with the kept bfloat16 copy in memory and
        after releasing it, alternating: whether an accelerated run or its copy slows the rest of the process."""
        from comfyui_img2img.nodes.accelerate import release_kept_copy

        log(f"{self.spec.name}: core before and beside the kept copy")
        accelerated = self.pack_run(latent, "euler", 0.5, accelerate=True)
        core = self.core_advanced_run(latent, "euler", 0.5)
        wall_time(core)  # warm-up
        times: dict[str, list[float]] = {"before": [wall_time(core) for _ in range(self.repeats)]}
        times.update(kept=[], released=[])
        for _ in range(self.repeats):
            accelerated()  # converts (again) and keeps the copy
            times["kept"].append(wall_time(core))
            release_kept_copy()
            times["released"].append(wall_time(core))
        return {
            name: {"total_s": statistics.median(values), "total_min_s": min(values), "total_max_s": max(values)}
            for name, values in times.items()
        }

    def curve(self, latent) -> list[dict[str, object]]:
        """Time at s over the pack's time at s = 1, as ratios within each repeat: the machine's drift over the
        minutes a curve takes would otherwise be as large as the effect."""
        full = self.pack_run(latent, "euler", 1.0)
        points = []
        for denoise in self.spec.curve:
            log(f"{self.spec.name}: strength curve, s={denoise}")
            runs = {
                "pack": self.pack_run(latent, "euler", denoise),
                "core": self.core_denoise_run(latent, "euler", denoise),
            }
            if denoise < 1:
                runs["pack_full"] = full
            results = side_by_side(runs, self.probe, self.repeats)
            pack, core, reference = results["pack"], results["core"], results.get("pack_full", results["pack"])
            points.append({
                "s": denoise,
                "model_steps": pack.model_calls,
                "pack_total": median_ratio(pack.total_s, reference.total_s),
                "pack_sampler": median_ratio(pack.loop_s, reference.loop_s),
                "core_total": median_ratio(core.total_s, reference.total_s),
            })  # fmt: skip
        return points


# ---------------------------------------------------------------------------------------------
# End to end: the same img2img graph POSTed to a headless server, pack nodes against core nodes


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
        "4": {"class_type": "LoadImage", "inputs": {"image": image}},
        "5": {"class_type": "ImageScale", "inputs": {
            "image": ["4", 0], "upscale_method": "lanczos", "width": spec.size, "height": spec.size, "crop": "center"}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["6", 0],
            "add_noise": "enable", "noise_seed": seed, "steps": spec.steps, "cfg": 7.0, "sampler_name": "euler",
            "scheduler": "normal", "start_at_step": spec.steps - int(spec.steps * denoise), "end_at_step": 10000,
            "return_with_leftover_noise": "disable"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "core"}},
    }  # fmt: skip
    return {"pack": pack, "core": core}


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
    paths.write_text(f"img2img_bench:\n  checkpoints: {models_dir}\n")
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


# ---------------------------------------------------------------------------------------------
# The report


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def spread(summary: dict) -> str:
    return f"{seconds(summary['total_s'])} ({seconds(summary['total_min_s'])}–{seconds(summary['total_max_s'])})"


def report(results: dict) -> str:
    lines = [f"Machine: {results['machine']}", "", f"Command: `{results['command']}`", ""]
    lines += ["Matmul rate (2048², median of 10): " + ", ".join(
        f"{dtype} {rate / 1e12:.3f} TFLOP/s" for dtype, rate in results["matmul_rate"].items()), ""]  # fmt: skip
    for model in results["models"]:
        lines += [
            f"### {model['model']}, {model['size']}², N = {model['steps']}, cfg 7, normal schedule, "
            f"UNet in {model['unet_dtype']}",
            "",
        ]
        if model["rows"]:
            lines += rows_report(model)
        accelerate = model.get("accelerate")
        if accelerate and "skipped" in accelerate:
            lines += [f"accelerate: not measured, because {accelerate['skipped']}.", ""]
        elif accelerate:
            lines += accelerate_report(accelerate)
        if model["curve"]:
            lines += curve_report(model)
    if results.get("server"):
        lines += ["### End to end through the server (prompt time from its execution messages; s = 0.5, euler)", ""]
        lines += ["| model | pack graph | core graph | pack / core |", "|---|---|---|---|"]
        for name, row in results["server"].items():
            lines.append(f"| {name} | {seconds(row['pack'])} | {seconds(row['core'])} | **{row['ratio']:.3f}** |")
        lines.append("")
    return "\n".join(lines)


def rows_report(model: dict) -> list[str]:
    lines = [
        "| work | batch | sampler | s | model steps | pack | core | pack / core | max abs Δ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in model["rows"]:
        lines.append(
            f"| {row['kind']} | {row['batch']} | {row['sampler']} | {row['s']} | {row['pack']['model_calls']} | "
            f"{spread(row['pack'])} | {spread(row['core'])} | **{row['ratio']:.3f}** | "
            f"{row['difference']['max_abs']:.1e} |"
        )
    lines += ["", "Per step, memory and the floor (medians; loop = inside the sampler, outside the denoiser; "
              "fixed = outside the sampler):", ""]  # fmt: skip
    lines += [
        "| work | batch | sampler | s | model/step (UNet alone) pack · core | loop/step pack · core "
        "| fixed pack · core | peak extra memory pack · core | FLOP floor here | pack / floor "
        "| H100 floor (projected) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in model["rows"]:
        pack, core = row["pack"], row["core"]
        floor = row.get("floor_s")
        lines.append(
            f"| {row['kind'].split()[0]} | {row['batch']} | {row['sampler']} | {row['s']} | "
            f"{seconds(pack['model_per_step_s'])} ({seconds(pack['unet_per_step_s'])}) · "
            f"{seconds(core['model_per_step_s'])} ({seconds(core['unet_per_step_s'])}) | "
            f"{pack['loop_per_step_s'] * 1000:.2f} · {core['loop_per_step_s'] * 1000:.2f} ms | "
            f"{seconds(pack['fixed_s'])} · {seconds(core['fixed_s'])} | "
            f"{pack['peak_extra_mib']:.0f} · {core['peak_extra_mib']:.0f} MiB | "
            + (f"{seconds(floor)} | {pack['total_s'] / floor:.2f}× | {row['h100_floor_s'] * 1e3:.2f} ms |"
               if floor else "– | – | – |")
        )  # fmt: skip
    lines += ["", "VAE (pack nodes, tiling off): " + "; ".join(
        f"batch {batch}: encode {seconds(t['encode']['median_s'])}, decode {seconds(t['decode']['median_s'])}"
        for batch, t in model["vae"].items()) + ".", ""]  # fmt: skip
    attention = model["attention"]
    lines += [
        "One UNet forward, CFG batch 2, float32: ComfyUI's attention for this device "
        f"{seconds(attention['comfyui']['median_s'])}, PyTorch's fused attention "
        f"{seconds(attention['fused']['median_s'])}.",
        "",
    ]
    flops = "; ".join(f"batch {b}: {f / 1e12:.3f} TFLOP" for b, f in model["flops_per_step"].items())
    lines += [f"FLOPs per model step (cond + uncond, torch.utils.flop_counter): {flops}.", ""]
    return lines


def accelerate_report(accelerate: dict) -> list[str]:
    lines = [
        f"accelerate ({accelerate['dtype']} weights + fused attention; the first run converts the weights, "
        "later runs reuse them):",
        "",
        "| s | model steps | pack accelerate | first run | core KSamplerAdvanced | speed-up | model/step | "
        "vs plain pack: rel. RMS · max abs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in accelerate["rows"]:
        lines.append(
            f"| {row['s']} | {row['pack']['model_calls']} | {spread(row['pack'])} | "
            f"{seconds(row['pack']['first_s'])} | {spread(row['core'])} | "
            f"**{1 / row['ratio']:.2f}×** | {seconds(row['pack']['model_per_step_s'])} | "
            f"{row['vs_plain']['rel_rms']:.2%} · {row['vs_plain']['max_abs']:.2g} |"
        )
    beside = accelerate["core_beside_copy"]
    lines += [
        "",
        f"Core KSamplerAdvanced (s = 0.5, euler) before any accelerated run of this model: {spread(beside['before'])}; "
        "then alternating with the kept copy in memory and after releasing it: "
        f"{spread(beside['kept'])} kept, {spread(beside['released'])} released "
        f"(kept / before {beside['kept']['total_s'] / beside['before']['total_s']:.3f}, "
        f"released / before {beside['released']['total_s'] / beside['before']['total_s']:.3f}).",
    ]
    return [*lines, ""]


def curve_report(model: dict) -> list[str]:
    lines = [
        "Strength curve (euler, batch 1): each time over the pack's time at s = 1 in the same repeat (median of "
        "the repeats' ratios); core KSampler(denoise) runs N steps at every s",
        "",
        "| s | k/N | pack total | pack sampler only | sampler only vs k/N | core KSampler(denoise) total |",
        "|---|---|---|---|---|---|",
    ]
    for point in model["curve"]:
        share = point["model_steps"] / model["steps"]
        deviation = f"{point['pack_sampler'] / share - 1:+.1%}" if share else "–"
        lines.append(
            f"| {point['s']} | {share:.2f} | {point['pack_total']:.3f} | {point['pack_sampler']:.3f} | "
            f"{deviation} | {point['core_total']:.3f} |"
        )
    return [*lines, ""]


def machine() -> str:
    import comfyui_version

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
    if device().type == "cuda":
        cpu += f", GPU {torch.cuda.get_device_name(device())}"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"ComfyUI {comfyui_version.__version__}, device {device()}"
    )


def ensure_sd15(host: host_harness.Host, models_dir: Path) -> Path:
    """The full-shape checkpoint, generated once (about 30 s, 2.1 GB) and never committed."""
    path = models_dir / SD15_CHECKPOINT
    if not path.exists():
        log("generating the full-shape SD1.5 checkpoint")
        subprocess.run(
            [str(host.python), str(PACK_ROOT / "scripts" / "make_test_checkpoint.py"), "--comfyui",
             str(host.comfyui), "--out", str(path), "--shape", "sd15"], check=True,
        )  # fmt: skip
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the test checkpoint only (under 3 minutes)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per configuration, after a warm-up")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"what to measure, comma-separated from {','.join(PARTS)} (default: all)",
    )
    options = parser.parse_args(argv)
    if options.repeats < 1:
        parser.error("--repeats must be at least 1")
    parts = tuple(part.strip() for part in options.parts.split(","))
    if unknown := set(parts) - set(PARTS):
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    host = host_harness.default_host()
    out = host.root / "bench"
    models_dir = host.root / "bench-models"
    models_dir.mkdir(parents=True, exist_ok=True)
    comfy_nodes = import_comfyui(host.comfyui)
    pack = load_pack()
    import comfy.model_management

    specs = [TINY_QUICK] if options.quick else [TINY, SD15]
    checkpoints = {TINY_NAME: host.checkpoint}
    if not options.quick:
        checkpoints[SD15.name] = ensure_sd15(host, models_dir)
    started = time.monotonic()
    command = "python3 scripts/host.py bench" + " ".join(["", *(argv if argv is not None else sys.argv[1:])])
    results = {
        "command": command.strip(),
        "machine": machine(),
        "matmul_rate": {str(d).removeprefix("torch."): matmul_rate(d) for d in (torch.float32, torch.bfloat16)},
        "models": [],
    }  # fmt: skip
    for spec in specs:
        bench = Bench(comfy_nodes, pack, spec, checkpoints[spec.name], options.repeats)
        results["models"].append(bench.run(results["matmul_rate"], parts))
        del bench
        comfy.model_management.unload_all_models()
        comfy.model_management.soft_empty_cache()
    if "server" in parts:
        results["server"] = end_to_end(host, models_dir, specs, options.repeats, out / "server")
    results["seconds"] = time.monotonic() - started
    name = ("quick" if options.quick else "full") + ("" if parts == PARTS else "-" + "-".join(parts))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=1))
    text = report(results) + f"\nBench time: {results['seconds'] / 60:.1f} min.\n"
    (out / f"{name}.md").write_text(text)
    print(text)
    log(f"wrote {out / (name + '.json')} and {out / (name + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
