"""Pictures of any size: the one-pass VAE tiler beside the whole pass and core's tiled nodes, and a big refine
(bench/img2img_bench/any_size.py).

.host/venv/bin/python bench/any_size.py     # results in .host/bench/any-size.{json,md}
"""

import sys
from pathlib import Path

# The host harness, scripts/img2img_host/ (standard library only), and scripts/ itself (the test checkpoint's
# KL VAE); img2img_bench is beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from img2img_bench.any_size import main

if __name__ == "__main__":
    sys.exit(main())
