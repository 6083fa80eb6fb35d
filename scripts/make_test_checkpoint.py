"""Make a tiny SD1.5-format checkpoint with random weights, for tests and demos.

The file holds a one-level UNet (320 channels, so ComfyUI still detects SD15 / EPS),
a full-size CLIP-L text encoder (its size is fixed by ComfyUI's config) and a TAESD
VAE, under the usual SD1.5 key prefixes. ComfyUI's core CheckpointLoaderSimple loads
it like any SD1.5 checkpoint, and a 128x128 img2img run takes about a second on CPU,
so tests can exercise real sampling without downloading gigabytes of weights.

Key names and shapes come from ComfyUI's own model classes, so the file always
matches the ComfyUI tree it is made for. Every weight is drawn from a seeded
torch.Generator: the same seed and ComfyUI version give a byte-identical file.

    python scripts/make_test_checkpoint.py --comfyui DIR --out PATH [--seed 0] [--dtype fp16] [--shape tiny]

``--shape sd15`` makes instead a full-shape SD1.5 checkpoint (the 859.5M-parameter UNet and the
KL-VAE, random weights, about 2 GB in fp16) for the benchmarks: it costs what a real SD1.5 model
costs, without a download.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

# The smallest UNet that ComfyUI's model detection still reads as SD15: 320 base
# channels, 768-wide cross-attention with conv proj_in, one level with one res
# block, and a transformer in every block (input, middle and output).
UNET_CONFIG = {
    "image_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "num_res_blocks": [1],
    "channel_mult": [1],
    "transformer_depth": [1],
    "transformer_depth_output": [1, 1],
    "transformer_depth_middle": 1,
    "context_dim": 768,
    "num_heads": 8,
    "use_spatial_transformer": True,
    "use_linear_in_transformer": False,
    "legacy": False,
}

# The UNet of every SD1.5 checkpoint.
SD15_UNET_CONFIG = {
    **UNET_CONFIG,
    "num_res_blocks": [2, 2, 2, 2],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
}
# SD1.5's KL autoencoder, as ComfyUI's VAE class builds it for that checkpoint family.
SD15_VAE_CONFIG = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}
SHAPES = ("tiny", "sd15")

# TAESD's latent scale and shift are a normalisation, not learned features. The
# random encoder's raw latents have std ~0.4; a scale of 0.1 lifts them towards
# real SD latents (std ~5 before the 0.18215 latent factor), so img2img noise and
# image content mix as they do with real weights, and the decoder gets back the
# range it produced.
FIXED_VALUES = {"first_stage_model.vae_scale": 0.1, "first_stage_model.vae_shift": 0.0}


def build_state_dict(comfyui_dir: Path, shape: str = "tiny") -> tuple[dict[str, torch.Tensor], str]:
    """Return ComfyUI's SD1.5 modules' tensors under checkpoint key names (values
    uninitialised), and the key prefix of the VAE decoder's last conv."""
    import comfy.cli_args

    # Making weights needs no accelerator, and ComfyUI's device probe at import
    # fails on machines with a CUDA build of torch but no GPU.
    comfy.cli_args.args.cpu = True

    import comfy.clip_model
    import comfy.ops
    import comfy.taesd.taesd
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    # disable_weight_init skips PyTorch's default init: every value is replaced below.
    ops = comfy.ops.disable_weight_init
    with open(comfyui_dir / "comfy" / "sd1_clip_config.json", encoding="utf-8") as f:
        clip_config = json.load(f)

    if shape == "sd15":
        vae, unet_config = AutoencoderKL(ddconfig=SD15_VAE_CONFIG, embed_dim=4), SD15_UNET_CONFIG
        image_out = "first_stage_model.decoder.conv_out."
    else:
        vae, unet_config = comfy.taesd.taesd.TAESD(), UNET_CONFIG
        image_out = f"first_stage_model.taesd_decoder.{len(vae.taesd_decoder) - 1}."
    parts = {
        "model.diffusion_model.": UNetModel(**unet_config, operations=ops),
        # SD1.5 checkpoints carry only the text model, not CLIPTextModel's
        # text_projection: ComfyUI's SD15 loader would rename that key into an
        # unexpected one.
        "cond_stage_model.transformer.text_model.": comfy.clip_model.CLIPTextModel_(
            clip_config, torch.float32, None, ops
        ),
        "first_stage_model.": vae,
    }
    state = {prefix + key: tensor for prefix, module in parts.items() for key, tensor in module.state_dict().items()}
    return state, image_out


def random_tensor(name: str, like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Draw a value for one tensor so that activations stay O(1) through the network.

    Default inits would not do: the original SD modules zero their output layers
    (e.g. the UNet's out.2), which makes the model's output identically zero.
    """
    if name in FIXED_VALUES:
        return torch.full(like.shape, FIXED_VALUES[name])
    noise = torch.randn(like.shape, generator=gen)
    if name.endswith("embedding.weight"):
        # Token and position embeddings feed a LayerNorm; unit scale keeps them
        # from being swamped by the residual branches.
        return noise
    if like.dim() >= 2:
        # Linear and conv weights: variance 1/fan_in preserves activation scale.
        fan_in = math.prod(like.shape[1:])
        return noise / math.sqrt(fan_in)
    if name.endswith(".weight"):
        # The only 1-D weights are GroupNorm / LayerNorm scales.
        return 1.0 + 0.1 * noise
    return 0.1 * noise


def random_weights(
    state: dict[str, torch.Tensor], image_out: str, gen: torch.Generator, mid_grey: float
) -> dict[str, torch.Tensor]:
    """Seeded values for every floating-point tensor of ``state`` (integer buffers, ids and counters, carry
    meaning and are kept)."""
    tensors = {
        name: random_tensor(name, like, gen) if like.is_floating_point() else like.contiguous()
        for name, like in state.items()
    }
    # The decoder's last conv makes pixels (TAESD: in [0, 1], the KL-VAE: in [-1, 1]) from
    # non-negative features: zero-mean weights and a mid-grey bias keep decoded images mostly
    # inside that range instead of clamping to black or white.
    weight = tensors[image_out + "weight"]
    tensors[image_out + "weight"] = weight - weight.mean(dim=(1, 2, 3), keepdim=True)
    tensors[image_out + "bias"] = torch.full_like(tensors[image_out + "bias"], mid_grey)
    return tensors


def kl_vae_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """SD1.5's full-shape KL-VAE alone, random float32 weights, as ComfyUI's VAE(sd=...) takes it (ComfyUI
    imported already)."""
    from comfy.ldm.models.autoencoder import AutoencoderKL

    state = AutoencoderKL(ddconfig=SD15_VAE_CONFIG, embed_dim=4).state_dict()
    return random_weights(state, "decoder.conv_out.", torch.Generator().manual_seed(seed), 0.0)


def make_checkpoint(comfyui_dir: Path, out: Path, seed: int, dtype: torch.dtype, shape: str = "tiny") -> int:
    """Write the checkpoint to ``out`` atomically; return the UNet parameter count."""
    gen = torch.Generator().manual_seed(seed)
    state, image_out = build_state_dict(comfyui_dir, shape)
    tensors = random_weights(state, image_out, gen, 0.0 if shape == "sd15" else 0.5)
    tensors = {name: t.to(dtype) if t.is_floating_point() else t for name, t in tensors.items()}
    unet_params = sum(t.numel() for name, t in tensors.items() if name.startswith("model.diffusion_model."))

    # A single metadata entry: safetensors writes several in random order, which would break byte-identical output.
    write_atomically(out, save(tensors, metadata={"description": f"random test weights, seed {seed}"}))
    return unet_params


def write_atomically(out: Path, data: bytes) -> None:
    """``data`` at ``out``, or nothing there if interrupted: a temp file in the same folder makes os.replace
    atomic. Written by hand, since safetensors' save_file creates files with mode 0600, which other users
    (e.g. a ComfyUI service) could not read."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI source tree")
    parser.add_argument("--out", type=Path, required=True, help="output .safetensors path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=DTYPES, default="fp16")
    parser.add_argument("--shape", choices=SHAPES, default="tiny", help="tiny: for tests; sd15: full SD1.5 shape")
    args = parser.parse_args()
    comfyui_dir = args.comfyui.resolve()
    # The model classes come from the ComfyUI tree the checkpoint is made for.
    sys.path.insert(0, str(comfyui_dir))

    start = time.perf_counter()
    unet_params = make_checkpoint(comfyui_dir, args.out, args.seed, DTYPES[args.dtype], args.shape)
    size_mb = args.out.stat().st_size / 1e6
    print(
        f"wrote {args.out} ({size_mb:.0f} MB, UNet {unet_params / 1e6:.1f}M params) "
        f"in {time.perf_counter() - start:.1f}s"
    )


if __name__ == "__main__":
    main()
