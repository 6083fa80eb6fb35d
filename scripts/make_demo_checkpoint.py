"""Assemble the demo SD1.5-format checkpoint from the committed UNet + VAE weights and a random CLIP-L.

    python scripts/make_demo_checkpoint.py --comfyui DIR [--weights models/img2img-demo-unet-vae.safetensors]
        [--out PATH/img2img-demo-sd15.safetensors]

The trained weights (scripts/train_demo_model.py) hold only the UNet (``model.diffusion_model.``) and the
TAESD VAE (``first_stage_model.``). The text encoder is the random CLIP-L that make_test_checkpoint draws:
the same generator, seed and per-tensor draw, so it costs no space in the repository, and the assembled
file is byte-identical every time for the same weights and ComfyUI tree. The demo UNet ignores the text
(its cross-attention outputs are zero), so random text weights change no picture.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import make_test_checkpoint  # scripts/, this script's folder, is first on its path
import torch
from safetensors.torch import load_file, save

SCRIPTS_DIR = Path(__file__).resolve().parent
DEFAULT_WEIGHTS = SCRIPTS_DIR.parent / "models" / "img2img-demo-unet-vae.safetensors"
CHECKPOINT_NAME = "img2img-demo-sd15.safetensors"
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
CLIP_SEED = 0


def random_clip_tensors(comfyui_dir: Path, seed: int = CLIP_SEED) -> dict[str, torch.Tensor]:
    """CLIP-L's text model with make_test_checkpoint's random fp16 weights: the generator runs over the tiny
    test checkpoint's full key list in order (as that script does), and only the CLIP keys are kept."""
    gen = torch.Generator().manual_seed(seed)
    state, _ = make_test_checkpoint.build_state_dict(comfyui_dir, "tiny")
    clip = {}
    for name, like in state.items():
        value = make_test_checkpoint.random_tensor(name, like, gen) if like.is_floating_point() else like.contiguous()
        if name.startswith(CLIP_PREFIX):
            clip[name] = value.to(torch.float16) if value.is_floating_point() else value
    return clip


def make_demo_checkpoint(comfyui_dir: Path, weights: Path, out: Path) -> None:
    """Write the full checkpoint (trained UNet + VAE, random CLIP-L) to ``out`` atomically."""
    trained = load_file(str(weights))
    unexpected = [k for k in trained if not k.startswith(("model.diffusion_model.", "first_stage_model."))]
    if unexpected:
        raise ValueError(f"{weights}: keys outside the UNet and VAE prefixes, e.g. {unexpected[:3]}")
    tensors = {**random_clip_tensors(comfyui_dir), **trained}
    # Sorted keys and one metadata entry: safetensors would otherwise not promise the same bytes every time.
    tensors = {k: tensors[k].contiguous() for k in sorted(tensors)}
    data = save(
        tensors,
        metadata={
            "description": f"comfyui-img2img demo model: trained UNet + VAE from "
            f"{weights.name}, random CLIP-L (seed {CLIP_SEED})"
        },
    )
    make_test_checkpoint.write_atomically(out, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI source tree")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="trained UNet + VAE safetensors")
    parser.add_argument("--out", type=Path, default=None, help=f"output path (default: ./{CHECKPOINT_NAME})")
    args = parser.parse_args()
    comfyui_dir = args.comfyui.resolve()
    # The model classes come from the ComfyUI tree the checkpoint is made for.
    sys.path.insert(0, str(comfyui_dir))
    out = args.out or Path(CHECKPOINT_NAME)
    start = time.perf_counter()
    make_demo_checkpoint(comfyui_dir, args.weights, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
