"""The report: the results as Markdown tables, and the machine they were measured on."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from .device import device


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def spread(summary: dict) -> str:
    return f"{seconds(summary['total_s'])} ({seconds(summary['total_min_s'])}–{seconds(summary['total_max_s'])})"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table's lines: the header, its rule, a line a row."""
    return [cells(header), "|" + "---|" * len(header), *map(cells, rows)]


def cells(values: Sequence[str]) -> str:
    return "| " + " | ".join(values) + " |"


def report(results: dict) -> str:
    rates = ", ".join(f"{dtype} {rate / 1e12:.3f} TFLOP/s" for dtype, rate in results["matmul_rate"].items())
    lines = [f"Machine: {results['machine']}", "", f"Command: `{results['command']}`", ""]
    lines += [f"Matmul rate (2048², median of 10): {rates}", ""]
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
        if model.get("whole"):
            lines += whole_report(model["whole"])
    if results.get("server"):
        lines += server_report(results["server"])
    if results.get("memory"):
        lines += memory_report(results["memory"])
    if results.get("cli"):
        lines += cli_report(results["cli"])
    return "\n".join(lines)


ROWS_HEADER = ("work", "batch", "sampler", "s", "model steps", "pack", "core", "pack / core", "max abs Δ")
PER_STEP_HEADER = (
    "work",
    "batch",
    "sampler",
    "s",
    "model/step (UNet alone) pack · core",
    "loop/step pack · core",
    "fixed pack · core",
    "peak extra memory pack · core",
    "FLOP floor here",
    "pack / floor",
    "H100 floor (projected)",
)


def server_report(server: dict) -> list[str]:
    names = list(server["rows"][0]["seconds"])
    lines = [
        "### End to end through the server (prompt time from its execution messages; euler, cfg 7)",
        "",
        "Each graph's time, and the accelerated pack graph's speed-up over the other three (their time over its).",
        "",
    ]
    lines += table(
        ("model", "size", "N", "s", *names, *(f"accelerated vs {name}" for name in names[1:])),
        (
            (
                row["case"]["model"],
                f"{row['case']['size']}²",
                str(row["case"]["steps"]),
                f"{row['case']['denoise']:g}",
                *(seconds(row["seconds"][name]) for name in names),
                *(f"**{row['seconds'][name] / row['seconds'][names[0]]:.2f}×**" for name in names[1:]),
            )
            for row in server["rows"]
        ),
    )
    return [*lines, ""]


def memory_report(memory: list[dict]) -> list[str]:
    names = list(memory[0]["peak_rss"])
    lines = [
        "### Peak memory",
        "",
        "Peak resident memory (VmHWM) of a server that loads the checkpoint and runs only that graph, once (s = 0.5).",
        "",
    ]
    lines += table(
        ("size", *names),
        (
            (f"{row['case']['size']}²", *(f"{row['peak_rss'][name] / 2**30:.2f} GiB" for name in names))
            for row in memory
        ),
    )
    return [*lines, ""]


def cli_report(cli: dict) -> list[str]:
    lines = [
        f"### `img2img run` over one local server ({cli['images']} pictures, {cli['size']}², N = {cli['steps']}, "
        f"s = {cli['denoise']:g}, {cli['checkpoint']}; each image's own time from the manifest)",
        "",
    ]
    lines += table(
        ("accelerate", "images", "seconds", "images per minute"),
        (
            (state, str(cli[key]["images"]), seconds(cli[key]["seconds"]), f"**{cli[key]['images_per_min']:.1f}**")
            for state, key in (("off", "plain"), ("on", "accelerate"))
        ),
    )
    return [*lines, ""]


def whole_report(whole: dict) -> list[str]:
    lines = [
        f"Where the accelerated graph's time goes (in this process, {whole['size']}², N = {whole['steps']}, "
        f"s = {whole['denoise']:g}, {whole['model_steps']} model steps; floor: FLOPs of the plain path over the "
        "bfloat16 matmul rate):",
        "",
    ]
    total = sum(part["seconds"] for part in whole["parts"].values())
    lines += table(
        ("part", "time", "share", "FLOPs", "floor", "time / floor"),
        (
            (
                name,
                seconds(part["seconds"]),
                f"{part['seconds'] / total:.0%}",
                f"{part['flops'] / 1e12:.3f} T" if part["flops"] else "–",
                seconds(part["floor_s"]) if part["flops"] else "–",
                f"{part['seconds'] / part['floor_s']:.1f}×" if part["flops"] else "–",
            )
            for name, part in whole["parts"].items()
        ),
    )
    lines += ["", f"Per model step: {seconds(whole['per_step_s'])}.", ""]
    return lines


def rows_report(model: dict) -> list[str]:
    lines = table(ROWS_HEADER, map(row_cells, model["rows"]))
    lines += [
        "",
        "Per step, memory and the floor (medians; loop = inside the sampler, outside the denoiser; "
        "fixed = outside the sampler):",
        "",
    ]
    lines += table(PER_STEP_HEADER, map(per_step_cells, model["rows"]))
    vae = "; ".join(
        f"batch {batch}: encode {seconds(t['encode']['median_s'])}, decode {seconds(t['decode']['median_s'])}"
        for batch, t in model["vae"].items()
    )
    lines += ["", f"VAE (pack nodes, tiling off): {vae}.", ""]
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


def row_cells(row: dict) -> list[str]:
    return [
        row["kind"],
        str(row["batch"]),
        row["sampler"],
        str(row["s"]),
        str(row["pack"]["model_calls"]),
        spread(row["pack"]),
        spread(row["core"]),
        f"**{row['ratio']:.3f}**",
        f"{row['difference']['max_abs']:.1e}",
    ]


def per_step_cells(row: dict) -> list[str]:
    pack, core = row["pack"], row["core"]
    floor = row.get("floor_s")
    return [
        row["kind"].split()[0],
        str(row["batch"]),
        row["sampler"],
        str(row["s"]),
        f"{seconds(pack['model_per_step_s'])} ({seconds(pack['unet_per_step_s'])}) · "
        f"{seconds(core['model_per_step_s'])} ({seconds(core['unet_per_step_s'])})",
        f"{pack['loop_per_step_s'] * 1000:.2f} · {core['loop_per_step_s'] * 1000:.2f} ms",
        f"{seconds(pack['fixed_s'])} · {seconds(core['fixed_s'])}",
        f"{pack['peak_extra_mib']:.0f} · {core['peak_extra_mib']:.0f} MiB",
        *(
            (seconds(floor), f"{pack['total_s'] / floor:.2f}×", f"{row['h100_floor_s'] * 1e3:.2f} ms")
            if floor
            else ("–", "–", "–")
        ),
    ]


def accelerate_report(accelerate: dict) -> list[str]:
    lines = [
        f"accelerate ({accelerate['dtype']} weights + fused attention; the first run converts the weights, "
        "later runs reuse them):",
        "",
    ]
    header = (
        "s",
        "model steps",
        "pack accelerate",
        "first run",
        "core KSamplerAdvanced",
        "speed-up",
        "model/step",
        "vs plain pack: rel. RMS · max abs",
    )
    lines += table(
        header,
        (
            (
                str(row["s"]),
                str(row["pack"]["model_calls"]),
                spread(row["pack"]),
                seconds(row["pack"]["first_s"]),
                spread(row["core"]),
                f"**{1 / row['ratio']:.2f}×**",
                seconds(row["pack"]["model_per_step_s"]),
                f"{row['vs_plain']['rel_rms']:.2%} · {row['vs_plain']['max_abs']:.2g}",
            )
            for row in accelerate["rows"]
        ),
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
    ]
    header = ("s", "k/N", "pack total", "pack sampler only", "sampler only vs k/N", "core KSampler(denoise) total")
    rows = []
    for point in model["curve"]:
        share = point["model_steps"] / model["steps"]
        deviation = f"{point['pack_sampler'] / share - 1:+.1%}" if share else "–"
        rows.append(
            (
                str(point["s"]),
                f"{share:.2f}",
                f"{point['pack_total']:.3f}",
                f"{point['pack_sampler']:.3f}",
                deviation,
                f"{point['core_total']:.3f}",
            )
        )
    return [*lines, *table(header, rows), ""]


def machine() -> str:
    import comfyui_version

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines()
        cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), cpu)
    if device().type == "cuda":
        cpu += f", GPU {torch.cuda.get_device_name(device())}"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"ComfyUI {comfyui_version.__version__}, device {device()}"
    )
