"""figures.md of ``python3 scripts/host.py gpu``: gpu_checks.py's figures.json as Markdown tables."""

from __future__ import annotations

from collections.abc import Callable

GRAPHS = ("pack accelerate", "pack", "core KSamplerAdvanced", "core KSampler(denoise)")  # the bench's four


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def mib(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} MiB"


def steps(count: int) -> str:
    return "1 step" if count == 1 else f"{count} steps"


def status(part: dict) -> str:
    line = f"*{part['status']}* in {part.get('seconds', 0):.1f} s"
    if part.get("stopped"):
        line += f"; {part['stopped']}"
    if part["status"] == "failed":
        line += f"\n\n```\n{part['error'].strip().splitlines()[-1]}\n```"
    return line


def exactness(part: dict) -> list[str]:
    cells, tolerance = part["cells"], part["tolerance"]
    largest = "–" if part["max_abs"] is None else f"{part['max_abs']:.3g}"
    lines = [
        f"{len(cells)} of {part['planned']} cells ran at {part['size']}², N = {part['steps']}, {part['scheduler']},"
        f" cfg {part['cfg']}; model {part['model_dtype']}, VAE {part['vae_dtype']}. Largest max |Δ| "
        f"{largest}; exactly equal {part['exactly_equal']}; within {tolerance:g}: "
        f"**{part['within']} of {len(cells)}**.",
        "",
        f"Tolerance {tolerance:g}: {part['tolerance_why']}",
        "",
        f"Sensitivity ({part['sensitivity']['what']}): max |Δ| {part['sensitivity']['max_abs']:.3g}, relative RMS "
        f"{part['sensitivity']['rel_rms']:.3g}. CLIP tokens as under transformers 4: "
        f"{part['clip_tokens_as_transformers_4']}.",
        "",
        "| noise mask | mode | sampler | " + " | ".join(f"s = {s}" for s in (0.3, 0.6, 1.0)) + " |",
        "|---|---|---|---|---|---|",
    ]
    rows: dict[tuple, dict] = {}
    for cell in cells:
        rows.setdefault((cell["mask"], cell["mode"], cell["sampler"]), {})[cell["strength"]] = cell
    for (mask, mode, sampler), by_strength in rows.items():
        values = [by_strength.get(s) for s in (0.3, 0.6, 1.0)]
        shown = [f"{cell['max_abs']:.2g} ({steps(cell['model_steps'])})" if cell else "–" for cell in values]
        lines.append(f"| {mask} | {mode} | {sampler} | " + " | ".join(shown) + " |")
    return lines


def floor(part: dict) -> list[str]:
    rates = ", ".join(f"{name} {rate / 1e12:.1f} TFLOP/s" for name, rate in part["matmul_rate"].items())
    lines = [
        f"Matmul rate ({part['matmul_size']}², median of 10): {rates}. A step: one denoiser call (CFG: cond and "
        f"uncond), timed inside the sampler over N = {part['steps']} at s = 0.5; its floor: its FLOPs over the "
        "bfloat16 rate.",
        "",
        "| size | FLOPs / step | floor | model step | UNet forward | UNet / floor | accelerate: step | accel / plain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    logs = []
    for row in part["rows"]:
        lines.append(
            f"| {row['size']}² | {row['flops_per_step'] / 1e12:.3f} T | {seconds(row['floor_s'])} "
            f"| {seconds(row['model_step_s'])} | {seconds(row['unet_step_s'])} "
            f"| {row['unet_step_s'] / row['floor_s']:.2f}× | {seconds(row['accelerated_model_step_s'])} "
            f"| {row['accelerated_model_step_s'] / row['model_step_s']:.3f} |"
        )
        logs += [line for line in row["accelerate_log"] if line not in logs]
    return [*lines, "", "accelerate said: " + ("; ".join(logs) or "nothing (it ran the low-precision path)")]


def speed(part: dict) -> list[str]:
    lines = [
        f"Prompt wall time through ComfyUI's executor, N = {part['steps']}, {part['sampler']}, median of the runs "
        "(each graph warmed once per size first):",
        "",
        "| size | s | runs | " + " | ".join(GRAPHS) + " | accel vs KSampler(denoise) | accel vs KSamplerAdvanced "
        "| pack / KSamplerAdvanced |",
        "|---|---|---|" + "---|" * (len(GRAPHS) + 3),
    ]
    for row in part["rows"]:
        time = row["seconds"]
        ratios = (
            time["core KSampler(denoise)"] / time["pack accelerate"],
            time["core KSamplerAdvanced"] / time["pack accelerate"],
            time["pack"] / time["core KSamplerAdvanced"],
        )
        lines.append(
            f"| {row['size']}² | {row['strength']} | {row['runs']} | "
            + " | ".join(seconds(time[name]) for name in GRAPHS)
            + f" | **{ratios[0]:.2f}×** | **{ratios[1]:.2f}×** | {ratios[2]:.3f} |"
        )
    return lines


def memory(part: dict) -> list[str]:
    if part.get("note"):
        return [f"{part['size']}², s = {part['strength']}: {part['note']}."]
    lines = [
        f"{part['size']}², s = {part['strength']}: peak allocated (max_memory_allocated) in the run, and its rise "
        "over the level at its start (the weights the executor holds):",
        "",
        "| graph | peak | above the start |",
        "|---|---|---|",
    ]
    for name, graph in part["graphs"].items():
        lines.append(f"| {name} | {mib(graph['peak_mib'])} | {mib(graph['peak_mib'] - graph['base_mib'])} |")
    return lines


def tiled(part: dict) -> list[str]:
    peak = mib(part["peak_mib"]) if part["peak_mib"] is not None else "not measured (no CUDA)"
    return [
        f"{part['from']}² ×{part['scale']:g} → {part['width']}×{part['height']}, the model in tiles of "
        f"{part['tile']} px (overlap {part['overlap']}), N = {part['steps']}, s = {part['strength']}, the VAE's "
        f"tiling on auto: **{seconds(part['seconds'])}**, peak VRAM {peak}."
    ]


SECTIONS: dict[str, tuple[str, Callable[[dict], list[str]]]] = {
    "exactness": ("Exactness: the pack against core", exactness),
    "floor": ("The UNet step beside its FLOP floor", floor),
    "speed": ("Speed: the bench's four graphs end to end", speed),
    "memory": ("Memory: peak VRAM per graph", memory),
    "tiled": ("Tiled img2img (upscale and refine)", tiled),
}


def report(figures: dict) -> str:
    machine = figures["machine"]
    described = ", ".join(f"{key} {value}" for key, value in machine.items())
    lines = [
        f"# The pack on {machine.get('gpu', machine['device'])}: `python3 scripts/host.py gpu` ({figures['profile']})",
        "",
        f"Started {figures['started']}; checkpoint {figures['checkpoint']}; {figures['deadline_s']:.0f} s for the "
        f"parts. Machine: {described}.",
    ]
    for name, part in figures["parts"].items():
        title, render = SECTIONS[name]
        lines += ["", f"## {title}", "", status(part)]
        if part["status"] != "failed":
            lines += ["", *render(part)]
    return "\n".join(lines) + "\n"
