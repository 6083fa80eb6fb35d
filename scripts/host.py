"""The headless ComfyUI host that the tests, the demo and the benchmarks run the pack in.

    python3 scripts/host.py build      # make the host (idempotent)
    python3 scripts/host.py demo       # README command (1): img2img of the bundled sample image
    python3 scripts/host.py test       # README command (2): the whole test suite
    python3 scripts/host.py bench      # the side-by-side benchmark (bench/README.md; --quick: 3 min)
    python3 scripts/host.py serve      # a server on 127.0.0.1:8188 for trying the pack by hand
    python3 scripts/host.py gpu        # the checks on CUDA: --prepare here, then the device; --dry-run on a CPU

The harness itself is the package beside this file, scripts/img2img_host/ (its docstring lists its
modules). It uses only the standard library, so the system ``python3`` can run it before any
environment exists.
"""

import sys

from img2img_host.command import main  # scripts/ is this script's folder, so first on its path

if __name__ == "__main__":
    sys.exit(main())
