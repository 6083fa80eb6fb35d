"""The command line of scripts/host.py: build | demo | test | bench | serve, each after bringing the host up to date,
and gpu (gpu.py: it brings the host up to date only with --prepare; on the GPU machine there is no host to build)."""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Sequence

from .build import COMFYUI_VERSION, build
from .chromium import ensure_chromium
from .demo import run_demo
from .gpu import main as gpu_main
from .layout import PACK_ROOT, log, phase
from .server import Server

DESCRIPTION = "The headless ComfyUI host that the tests, the demo and the benchmarks run the pack in."


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("command", choices=("build", "demo", "test", "bench", "serve", "gpu"))
    parser.add_argument("--force", action="store_true", help="rebuild the host even if it is up to date")
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, help="test: extra pytest arguments; bench, gpu: their options (--help)"
    )
    options = parser.parse_args(argv)
    if options.command == "gpu":
        return gpu_main(options.args)
    started = time.monotonic()
    with phase("host build"):
        host = build(force=options.force, demo_only=options.command == "demo")
    if options.command == "demo":
        code = run_demo(host)
        log(f"total: {time.monotonic() - started:.1f} s")
        return code
    elif options.command == "test":
        ensure_chromium()
        with phase("test suite"):
            code = subprocess.run([str(host.python), "-m", "pytest", *options.args], cwd=PACK_ROOT).returncode
        log(f"total: {time.monotonic() - started:.1f} s")
        return code
    elif options.command == "bench":
        with phase("benchmark"):
            code = subprocess.run([str(host.python), str(PACK_ROOT / "bench" / "run.py"), *options.args]).returncode
        log(f"total: {time.monotonic() - started:.1f} s")
        return code
    elif options.command == "serve":
        server = Server(host, host.root / "serve", port=8188)
        server.start()
        print(f"ComfyUI {COMFYUI_VERSION} with the pack: {server.url} (Ctrl-C stops it)")
        try:
            server.process.wait()
        except KeyboardInterrupt:
            server.stop()
    log(f"total: {time.monotonic() - started:.1f} s")
    return 0
