"""README's figures of strength maps and kept colours, on the demo model, through a host server:

    python3 scripts/host.py build && .host/venv/bin/python scripts/kept_pixels_figures.py

Writes docs/strength_map.png: the example strength-map graph (example_workflows/api/img2img_strength_map.json)
on the demo model, as input | map | output. Then measures colour drift with and without Img2ImgVAEDecode's
color_correction: the example img2img graph on the held-out sample photo (example_workflows/input/sample.png),
at denoise 0.3 and 0.6 over three seeds; it prints, for the output against the input, the mean CIE76 colour
difference per pixel (ΔE) and how far apart the L, a and b channels' means and standard deviations are
(averaged over the three channels), each with the correction off and on.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import img2img_host as host_harness  # scripts/img2img_host, beside this script
from figures import rgb, saved_pictures

EXAMPLES = host_harness.PACK_ROOT / "example_workflows"
STRENGTHS = (0.3, 0.6)
SEEDS = (11, 12, 13)


def rgb_to_lab(pixels: np.ndarray) -> torch.Tensor:
    return host_harness.core_module("kept_pixels").rgb_to_lab(torch.from_numpy(pixels))


def colour_graph(denoise: float, seed: int, correction: bool) -> dict:
    graph = json.loads((EXAMPLES / "api" / "img2img.json").read_text(encoding="utf-8"))
    graph["1"]["inputs"]["ckpt_name"] = host_harness.DEMO_CHECKPOINT
    for node in ("6", "7"):
        graph[node]["inputs"].update(seed=seed, denoise=denoise)
    graph["8"]["inputs"].update(source=["4", 0], color_correction=correction)
    graph["9"]["inputs"]["filename_prefix"] = f"colour/{denoise}_{seed}_{'on' if correction else 'off'}"
    return graph


def corrected_and_not(server, denoise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The outputs with and without the correction, and the input, as RGB arrays in 0..1."""
    [corrected], [plain] = (
        saved_pictures(server, colour_graph(denoise, seed, correction)) for correction in (True, False)
    )
    return corrected, plain, rgb(EXAMPLES / "input" / "sample.png")


def strength_map_figure(server, path: Path) -> None:
    graph = json.loads((EXAMPLES / "api" / "img2img_strength_map.json").read_text(encoding="utf-8"))
    graph["1"]["inputs"]["ckpt_name"] = host_harness.DEMO_CHECKPOINT
    entry = server.wait(server.queue(graph))
    [output] = server.saved_paths(entry)
    panels = [rgb(EXAMPLES / "input" / "sample.png"), rgb(EXAMPLES / "input" / "strength_gradient.png"), rgb(output)]
    gap = np.ones((panels[0].shape[0], 4, 3))
    strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    Image.fromarray(np.rint(strip * 255).astype(np.uint8)).save(path, optimize=True)
    print(f"wrote {path}: input | strength map (denoise 0.8 × map) | output; {entry['outputs']['6']['text'][0]}")


def colour_error(output: np.ndarray, source: np.ndarray) -> dict[str, float]:
    out, src = rgb_to_lab(output).reshape(-1, 3), rgb_to_lab(source).reshape(-1, 3)
    return {
        "delta_e": float((out - src).norm(dim=-1).mean()),
        "channel_mean_gap": float((out.mean(0) - src.mean(0)).abs().mean()),
        "channel_std_gap": float((out.std(0) - src.std(0)).abs().mean()),
    }


def main() -> None:
    host = host_harness.default_host()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        server = host_harness.Server(host, Path(folder)).start()
        try:
            for name in ("sample.png", "strength_gradient.png"):
                (server.input_dir / name).write_bytes((EXAMPLES / "input" / name).read_bytes())
            strength_map_figure(server, host_harness.PACK_ROOT / "docs" / "strength_map.png")
            for denoise in STRENGTHS:
                errors = {"off": [], "on": []}
                for seed in SEEDS:
                    corrected, plain, source = corrected_and_not(server, denoise, seed)
                    errors["on"].append(colour_error(corrected, source))
                    errors["off"].append(colour_error(plain, source))
                for state, found in errors.items():
                    mean = {key: float(np.mean([e[key] for e in found])) for key in found[0]}
                    rows.append((denoise, state, mean))
        finally:
            server.stop()
    print("| denoise | color_correction | mean ΔE (CIE76) | L, a, b means apart | L, a, b spreads apart |")
    print("|---|---|---|---|---|")
    for denoise, state, mean in rows:
        print(
            f"| {denoise} | {state} | {mean['delta_e']:.2f} | {mean['channel_mean_gap']:.2f} | "
            f"{mean['channel_std_gap']:.2f} |"
        )


if __name__ == "__main__":
    main()
