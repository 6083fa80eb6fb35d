"""ComfyUI and the pack in this process."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from .specs import PACK_ROOT


def import_comfyui(comfyui: Path):
    sys.path.insert(0, str(comfyui))
    import comfy.cli_args

    # ComfyUI's device probe fails on a CUDA build of torch without a GPU; with a GPU it picks the GPU.
    comfy.cli_args.args.cpu = not torch.cuda.is_available()
    import comfy.utils
    import nodes as comfy_nodes

    comfy.utils.PROGRESS_BAR_ENABLED = False
    return comfy_nodes


def load_pack() -> dict:
    spec = importlib.util.spec_from_file_location(
        "comfyui_img2img", PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)]
    )
    pack = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = pack
    spec.loader.exec_module(pack)
    return pack.NODE_CLASS_MAPPINGS
