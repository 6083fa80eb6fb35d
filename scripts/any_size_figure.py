"""docs/upscale_refine.jpg, the any-size page's picture, on the demo model through a host server:

    python3 scripts/host.py build && .host/venv/bin/python scripts/any_size_figure.py

The upscale-and-refine example graph (example_workflows/api/img2img_upscale.json: the held-out sample photo
128 → 512 px with Lanczos, refined at 0.3 with the model in tiles of 128 px), and the same refine with the
model untiled, as one labelled sheet: the input (nearest-neighbour ×4, to show its pixels), the Lanczos
upscale, the refine in tiles, and the difference to the untiled refine ×8.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import img2img_host as host_harness  # scripts/img2img_host, beside this script

EXAMPLES = host_harness.PACK_ROOT / "example_workflows"
OUT = host_harness.PACK_ROOT / "docs" / "upscale_refine.jpg"


def run(server, graph: dict) -> np.ndarray:
    entry = server.wait(server.queue(graph))
    if entry["status"]["status_str"] != "success":
        raise SystemExit(json.dumps(entry["status"], indent=1))
    [image] = [image for output in entry["outputs"].values() for image in output.get("images", [])]
    with Image.open(server.output_dir / image["subfolder"] / image["filename"]) as picture:
        return np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0


def main() -> None:
    graph = json.loads((EXAMPLES / "api" / "img2img_upscale.json").read_text(encoding="utf-8"))
    graph["1"]["inputs"]["ckpt_name"] = host_harness.DEMO_CHECKPOINT
    untiled = json.loads(json.dumps(graph))
    del untiled["7"]
    untiled["8"]["inputs"]["model"] = ["1", 0]
    scaled = json.loads(json.dumps(untiled))
    scaled["10"]["inputs"]["images"] = ["5", 0]
    for node in ("2", "3", "6", "8", "9"):
        del scaled[node]
    with Image.open(EXAMPLES / "input" / "sample.png") as sample:
        nearest = np.asarray(sample.convert("RGB").resize((512, 512), Image.NEAREST), dtype=np.float32) / 255.0
    with tempfile.TemporaryDirectory() as folder, host_harness.Server(host_harness.default_host(), Path(folder)) as s:
        (s.input_dir / "sample.png").write_bytes((EXAMPLES / "input" / "sample.png").read_bytes())
        tiled, whole, lanczos = run(s, graph), run(s, untiled), run(s, scaled)
    difference = np.clip(np.abs(tiled - whole) * 8, 0, 1)
    images = torch.from_numpy(np.stack([nearest, lanczos, tiled, difference]))
    labels = ["input, 128 px", "Lanczos x4", "refined in tiles", "tiled - untiled, x8"]
    sheet = host_harness.core_module("contact_sheet").contact_sheet(images, labels, [""])
    # A sheet of photos: as JPEG a fifth of the PNG (what travels to the GPU machine is counted in MiB).
    Image.fromarray((sheet[0].numpy() * 255).round().astype(np.uint8)).save(OUT, quality=88, optimize=True)
    print(f"wrote {OUT}; tiles vs untiled: {10 * np.log10(1 / np.mean((tiled - whole) ** 2)):.1f} dB")


if __name__ == "__main__":
    main()
