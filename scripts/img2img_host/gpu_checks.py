"""The checks of ``python3 scripts/host.py gpu``, in a child process that gpu.py starts in the ComfyUI tree it
staged (the one module of img2img_host that imports torch and ComfyUI; the package never imports it).

    exactness  the pack against core on the model as ComfyUI loads it (fp16 on CUDA): the four strength modes
               x euler, euler_ancestral, dpmpp_2m_sde x strengths 0.3, 0.6, 1.0, without and with core's
               SetLatentNoiseMask; anchors KSamplerAdvanced (steps_x_denoise, a1111), KSampler(denoise)
               (comfy) and SamplerCustomAdvanced over the pack's sigmas (snr)
    floor      one model step timed inside the sampler (the bench's Probe) beside its FLOPs over the measured
               bf16 matmul rate, plain and with ``accelerate``
    speed      the bench's four graphs, run by ComfyUI's own executor as its server runs a prompt, N = 20,
               s = 0.3, 0.5, 0.8, each size warmed first, the graphs taking turns
    memory     peak allocated VRAM (torch.cuda.max_memory_allocated) of each graph at one size
    tiled      the upscale-and-refine example (Img2ImgTiledModel, the VAE nodes' tiling) up to 4096²

Each part runs until its cap or the run's deadline (whichever is first) and stops before a unit it would not
finish; figures.json and figures.md are written after every part, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import itertools
import json
import logging
import shutil
import statistics
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, ClassVar

from .build import COMFYUI_VERSION, PACK_DIR_NAME
from .gpu import PARTS
from .gpu_report import report
from .layout import PACK_ROOT

if TYPE_CHECKING:  # torch is imported after ComfyUI's allocator set-up (import_comfyui), never at module level
    import torch

MODES = ("steps_x_denoise", "a1111", "comfy", "snr")
SAMPLERS = ("euler", "euler_ancestral", "dpmpp_2m_sde")  # deterministic, ancestral, SDE
EXACT_STRENGTHS = (0.3, 0.6, 1.0)
GRAPH_STRENGTHS = (0.3, 0.5, 0.8)
SEED, CFG, SCHEDULER = 20261204, 7.0, "normal"
POSITIVE, NEGATIVE = "a watercolor painting of hills at sunset", "blurry, low quality"  # the bench's prompts
# SD1.5's CLIP token ids of POSITIVE from ComfyUI's tokenizer under transformers 4.57 (the host's), start and end
# tokens included: the GPU image's transformers 5.17 must give the same (gpu.py, NOT_CARRIED).
POSITIVE_TOKENS = [49406, 320, 14211, 3086, 539, 5289, 536, 3424, 49407]
SAMPLE = PACK_ROOT / "example_workflows" / "input" / "sample.png"
UPSCALE_GRAPH = PACK_ROOT / "example_workflows" / "api" / "img2img_upscale.json"
TOLERANCE = {"cuda": 1e-3, "cpu": 1e-4}
TOLERANCE_WHY = {
    "cuda": "expected 0: pack and core call the same ComfyUI sampler function with the same model, sigmas and "
    "noise (drawn on the CPU generator), so the same kernels run on the same shapes in the same order, and "
    "cuBLAS, cuDNN and flash-attention forwards repeat bit for bit for a fixed kernel choice. Allowed: 1e-3 on "
    "the final latent (values of order 1; fp16's spacing at 1.0 is 9.8e-4), one rounding step where a kernel "
    "choice differs between calls (GPU kernels are not bit-reproducible across paths). A wrong step or sigma "
    "moves the latent by far more: the sensitivity line is this run's one-step error.",
    "cpu": "float32 on the CPU, as tests/host/test_exact_strength.py: 1e-4 (the pack and core give 0.0 there).",
}


@dataclass(frozen=True)
class Profile:
    """What one run measures: ``gpu`` on the device, ``dry`` on a CPU in CI (the test checkpoint, small sizes)."""

    exact_size: int  # image side of the exactness matrix
    exact_steps: int
    sizes: tuple[int, ...]  # image sides of the speed graphs and the floor
    steps: int  # N of the graphs
    repeats: int
    memory_size: int
    tiled_from: int  # the picture is scaled x4 from this side, then refined in tiles
    tile: int  # the model's tiles, px
    tile_overlap: int
    matmul_size: int  # large enough to run the tensor cores at their rate
    caps: dict[str, float] = field(default_factory=dict)  # seconds a part may take at most


PROFILES = {
    "gpu": Profile(512, 10, (512, 1024), 20, 3, 1024, 1024, 512, 64, 8192,
                   {"exactness": 80, "floor": 40, "speed": 170, "memory": 30, "tiled": 90}),
    "dry": Profile(64, 4, (64, 128), 4, 1, 128, 64, 64, 16, 512,
                   {"exactness": 90, "floor": 30, "speed": 60, "memory": 30, "tiled": 60}),
}  # fmt: skip


def log(message: str) -> None:
    print(f"[gpu {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Clock:
    """A part's time: it ends at its cap or at the run's deadline, whichever comes first."""

    def __init__(self, cap: float, deadline: float) -> None:
        self.start = time.monotonic()
        self.end = min(self.start + cap, deadline)
        self.stopped = ""

    def allows(self, estimate: float, what: str) -> bool:
        """Whether ``what`` (``estimate`` seconds) ends in time; if not, the part is stopped, and says why."""
        if time.monotonic() + estimate <= self.end:
            return True
        self.stopped = f"stopped before {what}: about {estimate:.0f} s left to run, {self.left():.0f} s left"
        log(self.stopped)
        return False

    def left(self) -> float:
        return max(self.end - time.monotonic(), 0.0)


def timed(run: Callable[..., object], *args: object) -> tuple[object, float]:
    """``run(*args)`` and its seconds, the device's queued work included."""
    sync()
    started = time.perf_counter()
    result = run(*args)
    sync()
    return result, time.perf_counter() - started


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def import_comfyui(comfyui: Path) -> ModuleType:
    """ComfyUI as its main.py starts it (its CUDA allocator set before torch loads), the pack loaded by ComfyUI's
    own custom-node loader from custom_nodes/; ComfyUI's ``nodes`` module."""
    sys.path.insert(0, str(comfyui))
    import comfy.cli_args
    import cuda_malloc  # noqa: F401  (sets PYTORCH_CUDA_ALLOC_CONF as main.py does, before torch is imported)
    import torch

    comfy.cli_args.args.cpu = not torch.cuda.is_available()  # a CUDA build of torch without a GPU: the CPU
    import comfy.utils
    import nodes

    comfy.utils.PROGRESS_BAR_ENABLED = False
    if not asyncio.run(nodes.load_custom_node(str(comfyui / "custom_nodes" / PACK_DIR_NAME))):
        raise RuntimeError("ComfyUI could not load the pack from custom_nodes/")
    return nodes


def distributions() -> dict[str, str]:
    """The installed distributions (name: version) of the modules this process has imported."""
    owners = importlib.metadata.packages_distributions()
    found = {}
    for module in list(sys.modules):
        for name in owners.get(module.partition(".")[0], ()):
            found[name] = importlib.metadata.version(name)
    return dict(sorted(found.items()))


def import_everything(comfyui: Path) -> None:
    """All that a run imports (for --imports-only, which gpu.py's payload plan reads)."""
    import_comfyui(comfyui)
    import execution  # noqa: F401
    import make_test_checkpoint  # noqa: F401
    from comfy_extras import nodes_custom_sampler  # noqa: F401

    from img2img_bench import end_to_end, measure  # noqa: F401


class Server:
    """What ComfyUI's executor asks of its server; the messages go nowhere (the caller times the prompt)."""

    client_id = None
    last_node_id = None
    last_prompt_id = None
    sockets_metadata: ClassVar[dict] = {}

    def send_sync(self, event: str, data: object, sid: object = None) -> None:
        pass

    def queue_updated(self) -> None:
        pass


@dataclass
class Runtime:
    """ComfyUI in this process: the checkpoint loaded for the in-process parts, the executor for the graphs."""

    nodes: ModuleType
    comfyui: Path
    checkpoint: str
    loaded: tuple | None = None
    executor: object = None
    warm: set = field(default_factory=set)  # (graph name, size) already run once
    prompts: int = 0

    def node(self, name: str) -> object:
        return self.nodes.NODE_CLASS_MAPPINGS[name]()

    @property
    def device(self) -> torch.device:
        import comfy.model_management

        return comfy.model_management.get_torch_device()

    def parts(self) -> tuple:
        """(model, clip, vae, positive, negative), loaded once by core's CheckpointLoaderSimple."""
        if self.loaded is None:
            model, clip, vae = self.node("CheckpointLoaderSimple").load_checkpoint(self.checkpoint)[:3]
            encode = self.node("CLIPTextEncode").encode
            self.loaded = (model, clip, vae, encode(clip, POSITIVE)[0], encode(clip, NEGATIVE)[0])
        return self.loaded

    def graphs(self) -> object:
        """ComfyUI's executor, made at the first graph; the in-process model goes first, so that the graphs'
        memory is theirs."""
        if self.executor is None:
            import comfy.model_management
            import execution

            self.loaded = None
            comfy.model_management.unload_all_models()
            gc.collect()
            comfy.model_management.soft_empty_cache()
            cache = {"lru": 0, "ram": 0}
            self.executor = execution.PromptExecutor(Server(), cache_type=execution.CacheType.CLASSIC, cache_args=cache)
        return self.executor


def pixels(size: int) -> torch.Tensor:
    """The sample photo, centre-cropped and scaled to size x size, as an IMAGE batch of one."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    with Image.open(SAMPLE) as picture:
        rgb = ImageOps.fit(picture.convert("RGB"), (size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0)[None]


def difference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    a, b = a.float().cpu(), b.float().cpu()
    rms = float(b.pow(2).mean().sqrt())
    return {"max_abs": float((a - b).abs().max()), "rel_rms": float((a - b).pow(2).mean().sqrt()) / max(rms, 1e-12)}


def pack_sample(
    rt: Runtime, model: object, latent: dict, sampler: str, steps: int, denoise: float, mode: str, **more: object
) -> tuple[torch.Tensor, dict]:
    _, _, _, positive, negative = rt.parts()
    output = rt.node("Img2ImgKSampler").sample(
        model, positive, negative, latent, SEED, steps, CFG, sampler, SCHEDULER, denoise, mode, "comfy", **more
    )
    return output["result"][0]["samples"], output["ui"]["img2img_plan"][0]


def core_sample(
    rt: Runtime, latent: dict, sampler: str, steps: int, denoise: float, mode: str, start: int
) -> torch.Tensor:
    """The core node each mode claims to match (test_every_sampler.py's anchors)."""
    from comfy_extras import nodes_custom_sampler as custom

    model, _, _, positive, negative = rt.parts()
    if mode == "comfy":
        return rt.node("KSampler").sample(
            model, SEED, steps, CFG, sampler, SCHEDULER, positive, negative, latent, denoise
        )[0]["samples"]
    if mode == "snr":  # no core node selects this start: core's custom sampling over the pack's sigmas
        sigmas = rt.node("Img2ImgStrengthSigmas").sigmas(model, sampler, SCHEDULER, steps, denoise, mode)["result"][0]
        guider = custom.CFGGuider.execute(model, positive, negative, CFG)[0]
        noise, chosen = custom.RandomNoise.execute(SEED)[0], custom.KSamplerSelect.execute(sampler)[0]
        return custom.SamplerCustomAdvanced.execute(noise, guider, chosen, sigmas, latent)[0]["samples"]
    return rt.node("KSamplerAdvanced").sample(
        model, "enable", SEED, steps, CFG, sampler, SCHEDULER, positive, negative, latent, start, 10000, "disable"
    )[0]["samples"]


def exactness_cell(rt: Runtime, latent: dict, mask: str, mode: str, sampler: str, denoise: float, steps: int) -> dict:
    model = rt.parts()[0]
    ours, plan = pack_sample(rt, model, latent, sampler, steps, denoise, mode)
    core = core_sample(rt, latent, sampler, steps, denoise, mode, plan["start_index"])
    cell = {"mask": mask, "mode": mode, "sampler": sampler, "strength": denoise}
    return {**cell, "model_steps": plan["model_steps"], "start_index": plan["start_index"], **difference(ours, core)}


def exactness(rt: Runtime, profile: Profile, clock: Clock) -> dict:
    import torch

    model, clip, vae, _, _ = rt.parts()
    size, steps = profile.exact_size, profile.exact_steps
    clean = rt.node("VAEEncode").encode(vae, pixels(size))[0]
    mask = torch.zeros(1, size, size)
    mask[..., size // 2 :] = 1.0  # the right half is redrawn, the left half kept
    latents = {"none": clean, "SetLatentNoiseMask": rt.node("SetLatentNoiseMask").set_mask(clean, mask)[0]}
    cells, slowest = [], 0.0
    for name, mode, sampler, denoise in itertools.product(latents, MODES, SAMPLERS, EXACT_STRENGTHS):
        if not clock.allows(slowest, f"{mode} {sampler} {denoise} mask {name}"):
            break
        cell, seconds = timed(exactness_cell, rt, latents[name], name, mode, sampler, denoise, steps)
        cells.append(cell)
        slowest = max(slowest, seconds)
        log(f"{name} {mode} {sampler} {denoise}: max |Δ| {cell['max_abs']:.3g} ({seconds:.1f} s)")
    tolerance = TOLERANCE[rt.device.type]
    tokens = [pair[0] for pair in clip.tokenize(POSITIVE)["l"][0][: len(POSITIVE_TOKENS)]]
    return {
        "size": size, "steps": steps, "scheduler": SCHEDULER, "cfg": CFG, "tolerance": tolerance,
        "tolerance_why": TOLERANCE_WHY[rt.device.type],
        "planned": len(latents) * len(MODES) * len(SAMPLERS) * len(EXACT_STRENGTHS),
        "cells": cells, "max_abs": max((cell["max_abs"] for cell in cells), default=None),
        "exactly_equal": sum(cell["max_abs"] == 0 for cell in cells),
        "within": sum(cell["max_abs"] <= tolerance for cell in cells),
        "sensitivity": one_step_off(rt, clean, steps), "clip_tokens_as_transformers_4": tokens == POSITIVE_TOKENS,
        "model_dtype": str(model.model.get_dtype()), "vae_dtype": str(vae.vae_dtype),
    }  # fmt: skip


def one_step_off(rt: Runtime, latent: dict, steps: int) -> dict:
    """Core from one step later than the pack's plan: how far a one-step error moves the latent on this run."""
    ours, plan = pack_sample(rt, rt.parts()[0], latent, "euler", steps, 0.6, "steps_x_denoise")
    later = core_sample(rt, latent, "euler", steps, 0.6, "steps_x_denoise", plan["start_index"] + 1)
    return {"what": "steps_x_denoise euler 0.6 against core KSamplerAdvanced one step later", **difference(ours, later)}


@contextmanager
def captured_log(word: str) -> Iterator[list[str]]:
    """The log lines containing ``word`` while the block runs (the pack says at INFO why accelerate falls back)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if word in message and message not in lines:
                lines.append(message)

    root, handler = logging.getLogger(), Keep(logging.INFO)
    level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def counted_flops(run: Callable[[], object]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return float(counter.get_total_flops())


def step_times(rt: Runtime, probe: object, latent: dict, profile: Profile, accelerate: bool) -> dict:
    """Median seconds of one model step (the denoiser call) and of the UNet's forward in it, over runs at s = 0.5
    after a warm-up."""
    model_steps, unet_steps = [], []
    for _ in range(profile.repeats + 1):
        probe.reset()
        pack_sample(rt, probe.model, latent, "euler", profile.steps, 0.5, "steps_x_denoise", accelerate=accelerate)
        model_steps.append(probe.model_s / max(probe.model_calls, 1))
        unet_steps.append(probe.unet_s / max(probe.model_calls, 1))
    return {"model_step_s": statistics.median(model_steps[1:]), "unet_step_s": statistics.median(unet_steps[1:])}


def floor_row(rt: Runtime, profile: Profile, size: int, rate: float) -> dict:
    from img2img_bench.measure import Probe

    model, _, vae, _, _ = rt.parts()
    latent = rt.node("VAEEncode").encode(vae, pixels(size))[0]
    probe = Probe.on(model)
    flops = counted_flops(lambda: pack_sample(rt, probe.model, latent, "euler", 1, 1.0, "steps_x_denoise"))
    plain = step_times(rt, probe, latent, profile, accelerate=False)
    with captured_log("accelerate") as lines:
        accelerated = step_times(rt, probe, latent, profile, accelerate=True)
    return {
        "size": size, "flops_per_step": flops, "floor_s": flops / rate, **plain,
        "accelerated_model_step_s": accelerated["model_step_s"], "accelerate_log": lines,
    }  # fmt: skip


def floor(rt: Runtime, profile: Profile, clock: Clock) -> dict:
    import torch

    from img2img_bench.measure import matmul_rate

    rates = {"bfloat16": matmul_rate(torch.bfloat16, profile.matmul_size)}
    if rt.device.type == "cuda":
        rates["float16"] = matmul_rate(torch.float16, profile.matmul_size)
    rows, last, previous = [], 0.0, profile.sizes[0]
    for size in profile.sizes:
        if not clock.allows(last * (size / previous) ** 2, f"the step at {size}²"):
            break
        row, last = timed(floor_row, rt, profile, size, rates["bfloat16"])
        rows.append(row)
        previous = size
    return {"matmul_rate": rates, "matmul_size": profile.matmul_size, "steps": profile.steps, "rows": rows}


@contextmanager
def vram_peak() -> Iterator[dict]:
    """Peak allocated device memory while the block runs, in MiB, and the level at its start; None on a CPU."""
    import torch

    figures: dict = {"peak_mib": None, "base_mib": None}
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        figures["base_mib"] = torch.cuda.memory_allocated() / 2**20
    yield figures
    if cuda:
        torch.cuda.synchronize()
        figures["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20


def run_prompt(rt: Runtime, graph: dict) -> dict:
    """One prompt through ComfyUI's executor, validated as the server validates it: its wall time and VRAM."""
    import execution

    executor = rt.graphs()
    prompt_id = str(uuid.uuid4())
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, graph, None))
    if not valid:
        raise RuntimeError(f"the graph is not valid: {json.dumps([error, node_errors], default=str)[:2000]}")
    with vram_peak() as memory:
        _, seconds = timed(lambda: executor.execute(graph, prompt_id, {}, outputs))
    if not executor.success:
        failed = [data for event, data in executor.status_messages if event == "execution_error"]
        raise RuntimeError(f"the prompt failed: {json.dumps(failed, default=str)[:3000]}")
    return {"seconds": seconds, **memory, "outputs": executor.history_result["outputs"]}


def new_image(rt: Runtime) -> str:
    """The sample under a new name in ComfyUI's input folder: every node from the image on runs again, while the
    checkpoint and the prompts' conditioning stay cached, as on a user's server (the bench's end_to_end)."""
    import folder_paths

    rt.prompts += 1
    name = f"gpu_{rt.prompts}.png"
    shutil.copyfile(SAMPLE, Path(folder_paths.get_input_directory()) / name)
    return name


def run_graph(rt: Runtime, name: str, size: int, steps: int, denoise: float) -> dict:
    """One of the bench's four graphs (bench/img2img_bench/end_to_end.py) at ``size``, ``steps`` and ``denoise``."""
    from img2img_bench.end_to_end import Case, server_graphs

    case = Case("gpu", rt.checkpoint, size, steps, denoise)
    image = new_image(rt)
    result = run_prompt(rt, server_graphs(case, image, seed=rt.prompts)[name])
    rt.warm.add((name, size))
    log(f"{name} {size}² s = {denoise}: {result['seconds']:.2f} s")
    return result


def speed_size(rt: Runtime, profile: Profile, clock: Clock, size: int, estimate: float | None) -> list[dict]:
    """The four graphs at ``size``: one warm-up run each, then rounds of the four at each strength. The first size
    (``estimate`` None) runs its warm-up and first round whatever the clock says: a part always measures."""
    from img2img_bench.end_to_end import GRAPHS

    if estimate is not None and not clock.allows(estimate, f"the warm-up at {size}²"):
        return []
    started = time.monotonic()
    for name in GRAPHS:
        run_graph(rt, name, size, profile.steps, 0.5)
    warm_s = time.monotonic() - started
    runs: dict = {(s, name): [] for s in GRAPH_STRENGTHS for name in GRAPHS}
    for repeat, denoise in itertools.product(range(profile.repeats), GRAPH_STRENGTHS):
        first = estimate is None and repeat == 0 and denoise == GRAPH_STRENGTHS[0]
        if not first and not clock.allows(warm_s, f"round {repeat + 1} at {size}², s = {denoise}"):
            break
        for name in GRAPHS:
            runs[denoise, name].append(run_graph(rt, name, size, profile.steps, denoise))
    rows = []
    for denoise in GRAPH_STRENGTHS:
        done = {name: runs[denoise, name] for name in GRAPHS if runs[denoise, name]}
        if len(done) == len(GRAPHS):
            seconds = {name: statistics.median(run["seconds"] for run in done[name]) for name in GRAPHS}
            peaks = {name: max_peak(done[name]) for name in GRAPHS}
            rows.append({"size": size, "strength": denoise, "runs": len(done[GRAPHS[0]]), "seconds": seconds,
                         "peak_mib": peaks, "warm_up_s": warm_s})  # fmt: skip
    return rows


def max_peak(runs: list[dict]) -> float | None:
    peaks = [run["peak_mib"] for run in runs if run["peak_mib"] is not None]
    return max(peaks) if peaks else None


def speed(rt: Runtime, profile: Profile, clock: Clock) -> dict:
    rows, estimate, previous = [], None, profile.sizes[0]
    for size in profile.sizes:
        started = time.monotonic()
        scaled = None if estimate is None else estimate * (size / previous) ** 2  # a round's time grows with pixels
        rows += speed_size(rt, profile, clock, size, scaled)
        estimate, previous = (time.monotonic() - started) / (1 + profile.repeats * len(GRAPH_STRENGTHS)), size
        if clock.stopped:
            break
    return {"steps": profile.steps, "repeats": profile.repeats, "sampler": "euler", "rows": rows}


def memory(rt: Runtime, profile: Profile, clock: Clock) -> dict:
    """Each graph once at memory_size, s = 0.5, after one warm run that loads the models (the VRAM figures are
    the peak of the run, the weights the executor holds included, and its rise over the level at its start)."""
    from img2img_bench.end_to_end import GRAPHS

    size, graphs = profile.memory_size, {}
    if (GRAPHS[0], size) not in rt.warm:
        run_graph(rt, GRAPHS[0], size, profile.steps, 0.5)
    for name in GRAPHS:
        if not clock.allows(0.0, f"{name} at {size}²"):
            break
        result = run_graph(rt, name, size, profile.steps, 0.5)
        graphs[name] = {key: result[key] for key in ("seconds", "peak_mib", "base_mib")}
    note = "" if rt.device.type == "cuda" else "no CUDA: a CPU has no max_memory_allocated, VRAM not measured"
    return {"size": size, "strength": 0.5, "graphs": graphs, "note": note}


def tiled(rt: Runtime, profile: Profile, clock: Clock) -> dict:
    """The upscale-and-refine example graph from tiled_from² x4, the model in tiles, the VAE tiling on auto."""
    import folder_paths
    from PIL import Image

    graph = json.loads(UPSCALE_GRAPH.read_text(encoding="utf-8"))
    graph["1"]["inputs"]["ckpt_name"] = rt.checkpoint
    graph["4"]["inputs"].update(image=new_image(rt), width=profile.tiled_from, height=profile.tiled_from)
    graph["7"]["inputs"].update(tile_size=profile.tile, overlap=profile.tile_overlap)
    graph["8"]["inputs"]["steps"] = profile.steps
    result = run_prompt(rt, graph)
    saved = result["outputs"]["10"]["images"][0]
    with Image.open(Path(folder_paths.get_output_directory()) / saved["subfolder"] / saved["filename"]) as picture:
        width, height = picture.size
    settings = {"from": profile.tiled_from, "scale": graph["5"]["inputs"]["scale_by"], "tile": profile.tile}
    settings.update(overlap=profile.tile_overlap, steps=profile.steps, strength=graph["8"]["inputs"]["denoise"])
    return {**settings, "width": width, "height": height, **{k: result[k] for k in ("seconds", "peak_mib", "base_mib")}}


CHECKS: dict[str, Callable[[Runtime, Profile, Clock], dict]] = {
    "exactness": exactness,
    "floor": floor,
    "speed": speed,
    "memory": memory,
    "tiled": tiled,
}


def machine(rt: Runtime) -> dict:
    import platform

    import comfy.ldm.modules.attention as attention
    import torch
    import transformers

    figures = {
        "python": platform.python_version(), "torch": torch.__version__, "comfyui": COMFYUI_VERSION,
        "transformers": transformers.__version__, "device": str(rt.device), "threads": torch.get_num_threads(),
        "attention": attention.optimized_attention.__name__, "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }  # fmt: skip
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        figures.update(
            gpu=properties.name, capability=f"{properties.major}.{properties.minor}",
            memory_gib=round(properties.total_memory / 2**30, 1), allocator=torch.cuda.get_allocator_backend(),
        )  # fmt: skip
    return figures


def run_part(rt: Runtime, name: str, profile: Profile, deadline: float) -> dict:
    """One part under its clock; an error is recorded with its traceback, and the next part runs."""
    import torch

    clock = Clock(profile.caps[name], deadline)
    log(f"{name}: up to {clock.left():.0f} s")
    try:
        with torch.inference_mode():  # as ComfyUI's executor runs every node
            result = CHECKS[name](rt, profile, clock)
        result["status"], result["stopped"] = ("stopped" if clock.stopped else "done"), clock.stopped
    except Exception:
        result = {"status": "failed", "error": traceback.format_exc()[-4000:]}
        log(f"{name} failed:\n{result['error']}")
    result["seconds"] = time.monotonic() - clock.start
    log(f"{name}: {result['status']} in {result['seconds']:.1f} s")
    return result


def write(out: Path, figures: dict) -> None:
    (out / "figures.json").write_text(json.dumps(figures, indent=1), encoding="utf-8")
    (out / "figures.md").write_text(report(figures), encoding="utf-8")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="the staged ComfyUI tree")
    parser.add_argument("--imports-only", action="store_true", help="print the imported distributions as JSON")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--checkpoint", help="in the tree's models/checkpoints/")
    parser.add_argument("--profile", choices=PROFILES, default="gpu")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--deadline-s", type=float, default=420.0, help="seconds for all the parts")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    if options.imports_only:
        import_everything(options.comfyui)
        print(json.dumps(distributions()))
        return 0
    deadline = time.monotonic() + options.deadline_s
    rt = Runtime(import_comfyui(options.comfyui), options.comfyui, options.checkpoint)
    profile, parts = PROFILES[options.profile], [part for part in PARTS if part in options.parts.split(",")]
    figures = {"profile": options.profile, "checkpoint": options.checkpoint, "deadline_s": options.deadline_s,
               "started": time.strftime("%F %T"), "machine": machine(rt), "parts": {}}  # fmt: skip
    for name in parts:
        figures["parts"][name] = run_part(rt, name, profile, deadline)
        write(options.out, figures)
    figures["imports"] = distributions()
    write(options.out, figures)
    exact = figures["parts"].get("exactness", {})
    failed = [name for name, part in figures["parts"].items() if part["status"] == "failed"]
    return 1 if failed or exact.get("within", 0) < len(exact.get("cells", [])) else 0


if __name__ == "__main__":
    sys.exit(main())
