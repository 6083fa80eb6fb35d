"""The command line of bench/run.py: what to measure, and where the results go."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import torch

import img2img_host as host_harness

from .cli_throughput import cli_throughput
from .comfyui import import_comfyui, load_pack
from .device import log
from .end_to_end import Case, end_to_end, peak_memory
from .measure import matmul_rate
from .one_model import Bench
from .report import machine, report
from .specs import PARTS, SD15, TINY, TINY_NAME, TINY_QUICK, ensure_sd15
from .whole_graph import breakdown

# What the whole-graph parts measure: N = 20 at three strengths, what users run (quick: the test checkpoint).
WHOLE_STEPS, WHOLE_STRENGTHS = 20, (0.3, 0.5, 0.8)

DESCRIPTION = "The pack beside ComfyUI core, in one process on one machine: what img2img costs and where it goes."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--quick", action="store_true", help="the test checkpoint only (under 3 minutes)")
    parser.add_argument(
        "--repeats", type=int, help="timed runs per configuration, after a warm-up (default 5; --quick: 3)"
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"what to measure, comma-separated from {','.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--server-sizes",
        default="256,512",
        help="image sides of the full-shape SD1.5 end-to-end graphs, comma-separated (default: 256,512)",
    )
    options = parser.parse_args(argv)
    if options.repeats is None:
        options.repeats = 3 if options.quick else 5
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
    }
    # The parts measured in this process; the others run their own servers and need no model loaded here.
    for spec in specs if {"rows", "accelerate", "curve", "whole"} & set(parts) else ():
        bench = Bench(comfy_nodes, pack, spec, checkpoints[spec.name], options.repeats)
        results["models"].append(bench.run(results["matmul_rate"], parts))
        if "whole" in parts:
            bench.spec = replace(spec, steps=WHOLE_STEPS)
            results["models"][-1]["whole"] = breakdown(bench, 0.5, results["matmul_rate"])
        del bench
        comfy.model_management.unload_all_models()
        comfy.model_management.soft_empty_cache()
    sizes = [int(size) for size in options.server_sizes.split(",")]
    if "server" in parts:
        if options.quick:
            cases = [Case(TINY_NAME, TINY_QUICK.checkpoint, TINY_QUICK.size, TINY_QUICK.steps, 0.5)]
        else:
            cases = [Case(SD15.name, SD15.checkpoint, size, WHOLE_STEPS, s) for size in sizes for s in WHOLE_STRENGTHS]
        # Quick: two counted runs, to stay under 3 minutes.
        repeats = min(options.repeats, 2) if options.quick else options.repeats
        results["server"] = end_to_end(host, models_dir, cases, repeats, out / "server")
    if "memory" in parts and not options.quick:
        cases = [Case(SD15.name, SD15.checkpoint, size, WHOLE_STEPS, 0.5) for size in sizes]
        results["memory"] = peak_memory(host, models_dir, cases, out / "memory")
    if "cli" in parts:
        spec = TINY_QUICK if options.quick else SD15
        results["cli"] = cli_throughput(
            spec.checkpoint,
            models_dir if not options.quick else host.checkpoint.parent,
            spec.size,
            WHOLE_STEPS,
            0.5,
            4 if options.quick else 16,  # quick: 16 pictures took a minute of its 3 on 2026-12-01
        )
    results["seconds"] = time.monotonic() - started
    name = ("quick" if options.quick else "full") + ("" if parts == PARTS else "-" + "-".join(parts))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    text = report(results) + f"\nBench time: {results['seconds'] / 60:.1f} min.\n"
    (out / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    log(f"wrote {out / (name + '.json')} and {out / (name + '.md')}")
    return 0
