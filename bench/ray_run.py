"""Throughput of `img2img run --ray` on this machine, and a cluster's on paper (bench/img2img_bench/ray_throughput.py).

.host/venv/bin/python bench/ray_run.py     # about 2 minutes on 2 CPU cores; results in .host/bench/ray.{json,md}
"""

import sys
from pathlib import Path

# The host harness, scripts/img2img_host/ (standard library only); img2img_bench is beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from img2img_bench.ray_throughput import main

if __name__ == "__main__":
    sys.exit(main())
