"""The pack importable as ``comfyui_img2img`` without running its ``__init__``.

The pack's top-level ``__init__`` registers nodes and so imports ComfyUI; the core must be
importable without it. Registering the folder as a bare package gives tests the same relative
import structure ComfyUI sees, under a name that cannot shadow ComfyUI's own ``nodes`` module.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACK_ROOT = Path(__file__).resolve().parents[1]
SAMPLE = PACK_ROOT / "example_workflows" / "input" / "sample.png"
# The six nodes of the img2img graph (the example workflows); the pack has more (sweep, loopback, tiles, parts).
GRAPH_NODE_IDS = frozenset(
    {
        "Img2ImgLoadImage",
        "Img2ImgVAEEncode",
        "Img2ImgNoiseAtStrength",
        "Img2ImgKSampler",
        "Img2ImgVAEDecode",
        "Img2ImgSaveImage",
    }
)


def register_pack() -> ModuleType:
    """The pack folder as the bare package ``comfyui_img2img`` (its ``__init__`` not run); idempotent.

    A fresh interpreter gets the same by importing this module (the clean-interpreter test does)."""
    if "comfyui_img2img" not in sys.modules:
        spec = importlib.machinery.ModuleSpec("comfyui_img2img", None, is_package=True)
        pack = importlib.util.module_from_spec(spec)
        pack.__path__ = [str(PACK_ROOT)]
        sys.modules["comfyui_img2img"] = pack
    return sys.modules["comfyui_img2img"]


register_pack()


def import_comfyui(comfyui: Path) -> None:
    """Make the host's ComfyUI importable in this process, on the CPU (tests only: it is no package)."""
    if str(comfyui) not in sys.path:
        sys.path.insert(0, str(comfyui))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # before comfy.model_management picks a device


def load_nodes() -> ModuleType:
    """Run the pack's ``__init__`` into the package the tests import it as, as ComfyUI loads it."""
    pack = sys.modules["comfyui_img2img"]
    if not hasattr(pack, "NODE_CLASS_MAPPINGS"):
        importlib.util.spec_from_file_location(pack.__name__, PACK_ROOT / "__init__.py").loader.exec_module(pack)
    return pack


def pytest_collect_directory(path: Path, parent):
    """The pack root is a package whose ``__init__`` imports ComfyUI (it registers the nodes), and
    pytest would import it for package-level set-up: collect it as a plain folder instead."""
    import pytest

    if path == PACK_ROOT:
        return pytest.Dir.from_parent(parent, path=path)
    return None
