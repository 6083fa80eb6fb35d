"""The core imports nothing from ComfyUI: proven in a clean interpreter with ComfyUI importable."""

import subprocess
import sys
import textwrap

from pack_under_test import PACK_ROOT

CORE_MODULES = sorted(p.stem for p in (PACK_ROOT / "nodes" / "core").glob("*.py") if p.stem != "__init__")
HOST_MODULES = (
    "comfy",
    "comfy_api",
    "comfy_execution",
    "folder_paths",
    "server",
    "execution",
    "latent_preview",
    "nodes",
)


def test_core_modules_import_without_comfyui():
    assert {"strength", "noise", "images"} <= set(CORE_MODULES)
    # pack_under_test registers the pack folder as comfyui_img2img when imported, and imports only the stdlib.
    code = textwrap.dedent(f"""
        import importlib, sys
        sys.path.insert(0, {str(PACK_ROOT / "tests")!r})
        import pack_under_test
        for name in {CORE_MODULES!r}:
            importlib.import_module("comfyui_img2img.nodes.core." + name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HOST_MODULES!r})
        print(loaded)
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
