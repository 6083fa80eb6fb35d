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
from PIL import Image

import img2img_host as host_harness  # scripts/img2img_host, beside this script
from figures import save_sheet, saved_pictures

EXAMPLES = host_harness.PACK_ROOT / "example_workflows"
OUT = host_harness.PACK_ROOT / "docs" / "upscale_refine.jpg"


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
        nearest = np.asarray(sample.convert("RGB").resize((512, 512), Image.NEAREST), dtype=np.float64) / 255
    with tempfile.TemporaryDirectory() as folder, host_harness.Server(host_harness.default_host(), Path(folder)) as s:
        (s.input_dir / "sample.png").write_bytes((EXAMPLES / "input" / "sample.png").read_bytes())
        [tiled], [whole], [lanczos] = saved_pictures(s, graph), saved_pictures(s, untiled), saved_pictures(s, scaled)
    difference = np.clip(np.abs(tiled - whole) * 8, 0, 1)
    labels = ["input, 128 px", "Lanczos x4", "refined in tiles", "tiled - untiled, x8"]
    save_sheet([nearest, lanczos, tiled, difference], labels, OUT)
    print(f"wrote {OUT}; tiles vs untiled: {10 * np.log10(1 / np.mean((tiled - whole) ** 2)):.1f} dB")


if __name__ == "__main__":
    main()
