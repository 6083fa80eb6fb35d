"""Measure the demo img2img model through ComfyUI's own loading and sampling path, on held-out photos.

    python scripts/measure_demo_model.py --comfyui .host/ComfyUI [--checkpoint PATH | --weights PATH]
        [--protocol whole [crop256] [native]] [--seeds 4] [--out figures.json] [--look-dir /tmp/demo_model_look]

Protocol (the figures issue 14 asks for):
- Pictures: the held-out photos (never trained on: train_demo_model.HELD_OUT), made 128x128 in one of three
  ways, chosen with --protocol (several may be given; each is measured on its own and the JSON holds the
  figures of each under ``protocols`` with its name and description, never mixed):
  ``whole`` (the default, the protocol of the first figures): the whole photo, the short side resized to
  128 px with Pillow's Lanczos filter, then centre-cropped to 128x128;
  ``crop256``: the photo's short side resized to 256 px (Lanczos), then its 128x128 centre crop: half
  resolution, so a less detailed picture of the middle of the photo;
  ``native``: the photo's 128x128 centre crop at native resolution (no resize): the least detail per pixel.
  For comparison the VAE round trip is also reported on a 128x128 centre crop at native resolution (no
  resize), and at 256x256 (made the same way as the 128 px pictures). The pack's sample photo,
  example_workflows/input/sample.png, is the ``whole`` picture of ``chelsea`` (a unit test holds them equal).
- The checkpoint is assembled (make_demo_checkpoint) unless --checkpoint is given, and loaded with
  comfy.sd.load_checkpoint_guess_config, as core CheckpointLoaderSimple does, on the CPU.
- VAE round trip: ComfyUI's VAE.encode then VAE.decode; PSNR over all pixels and channels in [0, 1].
- Img2img: strengths 0.1 .. 0.9 in steps_x_denoise mode: the last floor(20 s) steps of a 20-step euler /
  normal schedule, run by core's common_ksampler exactly as KSamplerAdvanced runs it (add_noise on,
  start_at_step = 20 - floor(20 s), return_with_leftover_noise off), seed 0, cfg 1 and an empty prompt
  (the model ignores the text, so cfg has no effect). PSNR of the decoded result to the 128x128 input.
  The figures and checks are seed 0's; ``img2img_psnr_by_seed`` also holds seeds 0 .. --seeds - 1 at each
  strength, for the spread a single seed's figure carries (2-4 dB at 0.8).
  At 0.9 also the total variation per pixel (mean absolute difference of horizontal and vertical
  neighbours) of the result and of the input.
- Regional: a noise mask over the left half (as core SetLatentNoiseMask), strength 0.8: PSNR of the right
  half to the input, against the VAE round trip's PSNR (the whole picture's, and the same half's).
Targets: round trip >= 24 dB; img2img PSNR strictly decreasing in strength, >= 22 dB at 0.2, >= 12 dB at
0.8; TV(0.9) <= 2 TV(input); regional kept half >= round trip - 1 dB.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import train_demo_model  # scripts/, this script's folder, is first on its path
from make_demo_checkpoint import make_demo_checkpoint
from train_demo_model import psnr

SCRIPTS_DIR = Path(__file__).resolve().parent
STRENGTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
STRIP_STRENGTHS = (0.2, 0.4, 0.6, 0.8)
STEPS = 20
SEED = 0
REGIONAL_STRENGTH = 0.8
DEFAULT_WEIGHTS = SCRIPTS_DIR.parent / "models" / "img2img-demo-unet-vae.safetensors"
PROTOCOLS = {
    "whole": "the whole held-out photo: short side to 128 px (Lanczos), centre crop 128x128",
    "crop256": "the held-out photo's short side to 256 px (Lanczos), then its 128x128 centre crop (half resolution)",
    "native": "the held-out photo's 128x128 centre crop at native resolution (no resize)",
}


def photo_square(name: str, size: int, resize: bool = True):
    """A held-out photo as a ComfyUI IMAGE [1, size, size, 3]: short side to ``size`` with Lanczos and a centre
    crop, or (resize=False) a centre crop at native resolution."""
    import numpy
    import skimage.data
    from PIL import Image

    folder = Path(skimage.data.__file__).parent
    (path,) = [p for p in (folder / f"{name}.png", folder / f"{name}.jpg") if p.exists()]
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if resize:
        scale = size / min(image.size)
        image = image.resize(
            (max(size, round(image.width * scale)), max(size, round(image.height * scale))), Image.LANCZOS
        )
    left, top = (image.width - size) // 2, (image.height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    return torch.from_numpy(numpy.asarray(image).astype("float32") / 255.0)[None]


def protocol_picture(name: str, protocol: str):
    """The 128x128 picture a protocol measures on (PROTOCOLS), as a ComfyUI IMAGE [1, 128, 128, 3]."""
    if protocol == "whole":
        return photo_square(name, 128)
    if protocol == "crop256":
        return photo_square(name, 256)[:, 64:192, 64:192].contiguous()
    if protocol == "native":
        return photo_square(name, 128, resize=False)
    raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def tv_per_pixel(image: torch.Tensor) -> float:
    """Mean absolute difference between horizontally and vertically neighbouring pixels (IMAGE [B, H, W, C])."""
    dy = (image[:, 1:] - image[:, :-1]).abs().mean()
    dx = (image[:, :, 1:] - image[:, :, :-1]).abs().mean()
    return ((dx + dy) / 2).item()


def start_step(strength: float, steps: int = STEPS) -> int:
    # steps_x_denoise: run the last floor(N s) steps; the epsilon guards 20 * 0.7 = 13.999... style rounding.
    return steps - math.floor(steps * strength + 1e-9)


def save_strip(images: list[torch.Tensor], path: Path) -> None:
    from PIL import Image

    strip = torch.cat([i[0] for i in images], dim=1).clamp(0, 1).mul(255).round().byte().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(path)


def load(checkpoint: Path) -> tuple:
    """The checkpoint as core CheckpointLoaderSimple loads it: (model, empty-prompt conditioning, VAE)."""
    import comfy.sd
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(checkpoint), output_vae=True, output_clip=True)
    print(
        f"loaded {checkpoint.name}: model config {type(model.model.model_config).__name__}, "
        f"model type {model.model.model_type.name}, VAE {type(vae.first_stage_model).__name__}",
        flush=True,
    )
    return model, clip.encode_from_tokens_scheduled(clip.tokenize("")), vae


def measure(loaded: tuple, look_dir: Path | None, protocol: str, seeds: int) -> dict:
    import nodes

    model, positive, vae = loaded
    negative = positive

    def img2img(latent: dict, strength: float, seed: int = SEED) -> torch.Tensor:
        (out,) = nodes.common_ksampler(
            model,
            seed,
            STEPS,
            1.0,
            "euler",
            "normal",
            positive,
            negative,
            latent,
            denoise=1.0,
            disable_noise=False,
            start_step=start_step(strength),
            last_step=10000,
            force_full_denoise=True,
        )
        return vae.decode(out["samples"])

    results: dict = {
        "protocol": protocol,
        "pictures": PROTOCOLS[protocol],
        "model_config": type(model.model.model_config).__name__,
        "model_type": model.model.model_type.name,
        "photos": {},
    }
    for name in train_demo_model.HELD_OUT:
        picture = protocol_picture(name, protocol)
        native = photo_square(name, 128, resize=False)
        latent = vae.encode(picture)
        round_trip = vae.decode(latent)
        large = photo_square(name, 256)
        row = {
            "protocol": protocol,
            "vae_psnr": psnr(round_trip, picture),
            "vae_psnr_native_crop": psnr(vae.decode(vae.encode(native)), native),
            "vae_psnr_256": psnr(vae.decode(vae.encode(large)), large),
            "latent_std_after_0.18215": (latent * 0.18215).std().item(),
            "img2img_psnr": {},
            "img2img_psnr_by_seed": {},
        }
        strip = {0.0: round_trip}
        for strength in STRENGTHS:
            started = time.perf_counter()
            key = f"{strength:.1f}"
            result = img2img({"samples": latent}, strength)
            row["img2img_psnr"][key] = psnr(result, picture)
            row["img2img_psnr_by_seed"][key] = [row["img2img_psnr"][key]] + [
                psnr(img2img({"samples": latent}, strength, seed), picture) for seed in range(SEED + 1, SEED + seeds)
            ]
            strip[strength] = result
            if strength == 0.9:
                row["tv_input"], row["tv_0.9"] = tv_per_pixel(picture), tv_per_pixel(result.clamp(0, 1))
            print(
                f"{name} ({protocol}) strength {key}: PSNR {row['img2img_psnr'][key]:.2f} dB "
                f"({time.perf_counter() - started:.1f}s)",
                flush=True,
            )
        # Regional: regenerate the left half only (mask 1 = regenerate, at pixel resolution as SetLatentNoiseMask).
        mask = torch.zeros(1, 1, 128, 128)
        mask[..., :64] = 1.0
        regional = img2img({"samples": latent, "noise_mask": mask}, REGIONAL_STRENGTH)
        row["regional_kept_half_psnr"] = psnr(regional[:, :, 64:], picture[:, :, 64:])
        row["regional_changed_half_psnr"] = psnr(regional[:, :, :64], picture[:, :, :64])
        row["vae_psnr_same_half"] = psnr(round_trip[:, :, 64:], picture[:, :, 64:])
        psnrs = list(row["img2img_psnr"].values())
        row["checks"] = {
            "vae_psnr>=24": row["vae_psnr"] >= 24.0,
            "strictly_decreasing": all(a > b for a, b in itertools.pairwise(psnrs)),
            "psnr_0.2>=22": row["img2img_psnr"]["0.2"] >= 22.0,
            "psnr_0.8>=12": row["img2img_psnr"]["0.8"] >= 12.0,
            "tv_0.9<=2x_input": row["tv_0.9"] <= 2 * row["tv_input"],
            "regional_kept>=vae-1": row["regional_kept_half_psnr"] >= row["vae_psnr"] - 1.0,
        }
        results["photos"][name] = row
        print(json.dumps({name: row}, indent=1), flush=True)
        if look_dir is not None:
            images = [picture, round_trip] + [strip[s] for s in STRIP_STRENGTHS] + [regional]
            suffix = "" if protocol == "whole" else f"_{protocol}"
            save_strip(images, look_dir / f"{name}{suffix}.png")
    rows = list(results["photos"].values())
    mean = {
        "protocol": protocol,
        "vae_psnr": sum(r["vae_psnr"] for r in rows) / len(rows),
        "vae_psnr_native_crop": sum(r["vae_psnr_native_crop"] for r in rows) / len(rows),
        "vae_psnr_256": sum(r["vae_psnr_256"] for r in rows) / len(rows),
        "img2img_psnr": {k: sum(r["img2img_psnr"][k] for r in rows) / len(rows) for k in rows[0]["img2img_psnr"]},
        "regional_kept_half_psnr": sum(r["regional_kept_half_psnr"] for r in rows) / len(rows),
    }
    results["mean"] = mean
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI source tree")
    parser.add_argument("--checkpoint", type=Path, help="an assembled checkpoint (default: assemble one)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="trained UNet + VAE safetensors")
    parser.add_argument(
        "--protocol", nargs="+", choices=list(PROTOCOLS), default=["whole"], help="which 128x128 pictures"
    )
    parser.add_argument("--seeds", type=int, default=4, help="seeds per strength for img2img_psnr_by_seed")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--look-dir", type=Path, default=Path("/tmp/demo_model_look"), help="PNG strips")
    args = parser.parse_args()
    comfyui_dir = args.comfyui.resolve()
    sys.path.insert(0, str(comfyui_dir))
    import comfy.cli_args

    # Before any other comfy import: ComfyUI picks its device at import time.
    comfy.cli_args.args.cpu = True
    torch.set_num_threads(1)
    figures: dict = {}
    if args.checkpoint is None:
        figures["weights"] = args.weights.name
        figures["weights_sha256"] = hashlib.sha256(args.weights.read_bytes()).hexdigest()
    else:
        figures["checkpoint"] = args.checkpoint.name
    figures["protocols"] = {}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        checkpoint = args.checkpoint
        if checkpoint is None:
            checkpoint = Path(tmp) / "img2img-demo-sd15.safetensors"
            make_demo_checkpoint(comfyui_dir, args.weights, checkpoint)
        loaded = load(checkpoint)
        for protocol in dict.fromkeys(args.protocol):
            figures["protocols"][protocol] = measure(loaded, args.look_dir, protocol, args.seeds)
            print(json.dumps(figures["protocols"][protocol]["mean"], indent=1), flush=True)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
