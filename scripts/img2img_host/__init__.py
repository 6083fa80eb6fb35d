"""The headless ComfyUI host that the tests, the demo and the benchmarks run the pack in.

``scripts/host.py`` is its command line; this package is what that command, the tests (pytest puts
``scripts/`` on their path), the benchmark and the ``img2img`` CLI (``img2img_cli.local.load_harness``)
import. Standard library only, so the system ``python3`` can run it before any environment exists.

    layout.py     where a host lives (``.host/`` or ``$IMG2IMG_HOST_DIR``) and the harness's log lines
    build.py      the pins, and building the virtual environment, ComfyUI, the test and the demo checkpoints
    chromium.py   Debian's Chromium for the browser tests
    server.py     one ComfyUI server process on loopback
    demo.py       README command (1): the img2img CLI on the bundled sample images
    command.py    ``build | demo | test | bench | serve | gpu``
    gpu.py        ``gpu``: the payload for the GPU machine (--prepare), staging it there, the dry run on a CPU
    gpu_checks.py the checks ``gpu`` runs in a child process: the one module here that imports torch and ComfyUI,
                  which this package never imports
    gpu_report.py their figures.json as figures.md
"""

from .build import COMFY_CLI_PIN, COMFYUI_VERSION, COMFYUI_WHEEL, HOST_PINS, MANAGER_PIN, NEWER_FRONTEND, build
from .chromium import CHROMIUM, CHROMIUM_ARGS, ensure_chromium
from .demo import demo_graph, run_demo
from .layout import DEMO_CHECKPOINT, PACK_ROOT, TEST_CHECKPOINT, Host, core_module, default_host, log, phase
from .server import Server, free_port

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "COMFYUI_VERSION",
    "COMFYUI_WHEEL",
    "COMFY_CLI_PIN",
    "DEMO_CHECKPOINT",
    "HOST_PINS",
    "MANAGER_PIN",
    "NEWER_FRONTEND",
    "PACK_ROOT",
    "TEST_CHECKPOINT",
    "Host",
    "Server",
    "build",
    "core_module",
    "default_host",
    "demo_graph",
    "ensure_chromium",
    "free_port",
    "log",
    "phase",
    "run_demo",
]
