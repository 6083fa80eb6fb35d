"""The pack beside ComfyUI core, in one process on one machine: what img2img costs and where it goes.

Run it through the host harness, which builds the pinned ComfyUI first:

    python3 scripts/host.py bench --quick     # test checkpoint only, under 3 minutes on 2 CPU cores
    python3 scripts/host.py bench             # plus a full-shape SD1.5 UNet and KL-VAE (random weights)

Every figure is a median of ``--repeats`` runs after a warm-up, with pack and core alternating so that
drift in the machine's speed hits both. The device is whatever ``comfy.model_management`` picks, so the
same command measures a GPU where there is one. Results go to ``.host/bench/`` as JSON and Markdown;
README.md beside this file explains the tables and holds the last full run.
"""

import sys
from pathlib import Path

# The host harness, scripts/img2img_host/ (standard library only); img2img_bench is beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from img2img_bench.main import main

if __name__ == "__main__":
    sys.exit(main())
