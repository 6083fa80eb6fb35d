"""Pictures of any size: the one-pass VAE tiler against the whole pass and core's tiled nodes, and a 4096² refine.

    .host/venv/bin/python bench/any_size.py [--sizes 512,1024] [--tile 256] [--refine 4096]

Each run is a fresh process (``worker``), so that its peak resident memory is its own (ru_maxrss, the model
load included); its outputs are saved and compared in the parent. VAE: SD1.5's full-shape KL VAE with random
weights (as the bench makes it), encode then decode of the sample photo at each size, by:
- ``whole``: ComfyUI's VAE.encode/decode of the whole picture;
- ``pack``: Img2ImgVAEEncode/Img2ImgVAEDecode with tiling "always" (exact tiles where memory allows);
- ``core``: core's VAEEncodeTiled/VAEDecodeTiled at the same tile size, overlap 64 px.
Refine: the upscale-and-refine example graph (example_workflows/api/img2img_upscale.json) on the demo model,
the sample photo 128 → --refine px, strength 0.3, model tiles of 128 px, VAE tiling auto: time and peak RSS.
Results go to .host/bench/any-size.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import img2img_host as host_harness

from .device import log

VAE_VARIANTS = ("whole", "pack", "core")


def worker(variant: str, size: int, tile: int, out: Path) -> dict:
    """One run in this process; the picture it made is saved to ``out``."""
    import numpy as np
    import torch
    from PIL import Image

    from .comfyui import import_comfyui, load_pack

    nodes = import_comfyui(host_harness.default_host().comfyui)
    pack = load_pack()
    with Image.open(host_harness.PACK_ROOT / "example_workflows" / "input" / "sample.png") as picture:
        rgb = picture.convert("RGB").resize((size, size), Image.LANCZOS)
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0)[None]
    if variant == "refine":
        return refine(nodes, pack, pixels, out)
    import comfy.sd
    from make_test_checkpoint import kl_vae_state_dict

    vae = comfy.sd.VAE(sd=kl_vae_state_dict())
    with torch.inference_mode():
        started = time.perf_counter()
        image = code(variant, nodes, pack, vae, pixels, tile)
        seconds = time.perf_counter() - started
    torch.save(image, out)
    return {"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def code(variant: str, nodes, pack, vae, pixels, tile: int):
    if variant == "whole":
        return vae.decode(vae.encode(pixels))
    if variant == "pack":
        (latent,) = pack["Img2ImgVAEEncode"]().encode(pixels, vae, "always", tile, 64)
        return pack["Img2ImgVAEDecode"]().decode(latent, vae, "always", tile, 64)[0]
    (latent,) = nodes.VAEEncodeTiled().encode(vae, pixels, tile, 64)
    return nodes.VAEDecodeTiled().decode(vae, latent, tile, 64)[0]


def refine(nodes, pack, pixels, out: Path) -> dict:
    """The upscale-and-refine graph's nodes, called in order on the demo model (its 128 px input: the sample)."""
    import torch

    graph = json.loads((host_harness.PACK_ROOT / "example_workflows" / "api" / "img2img_upscale.json").read_text())
    model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(host_harness.DEMO_CHECKPOINT)[:3]
    positive = nodes.CLIPTextEncode().encode(clip, graph["2"]["inputs"]["text"])[0]
    negative = nodes.CLIPTextEncode().encode(clip, graph["3"]["inputs"]["text"])[0]
    small = torch.nn.functional.interpolate(pixels.movedim(-1, 1), size=(128, 128), mode="area").movedim(1, -1)
    sampler = graph["8"]["inputs"]
    with torch.inference_mode():
        started = time.perf_counter()
        (big,) = nodes.ImageScaleBy().upscale(small, "lanczos", pixels.shape[1] / 128)
        (latent,) = pack["Img2ImgVAEEncode"]().encode(big, vae, "auto", 512, 64)
        (tiled,) = pack["Img2ImgTiledModel"]().patch(model, 128, 32, 0)
        latent = pack["Img2ImgKSampler"]().sample(
            tiled, positive, negative, latent, sampler["seed"], sampler["steps"], sampler["cfg"], "euler", "normal",
            0.3, "steps_x_denoise", "comfy",
        )["result"][0]  # fmt: skip
        (image,) = pack["Img2ImgVAEDecode"]().decode(latent, vae, "auto", 512, 64)
        seconds = time.perf_counter() - started
    torch.save(image[:, ::8, ::8].clone(), out)  # a thumbnail: the picture itself is a few hundred MB
    return {"seconds": seconds, "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def run_worker(variant: str, size: int, tile: int, folder: Path) -> dict:
    out = folder / f"{variant}-{size}.pt"
    command = [sys.executable, str(Path(__file__).resolve().parents[1] / "any_size.py"), "--worker", variant]
    command += ["--sizes", str(size), "--tile", str(tile), "--out", str(out)]
    log(f"{variant} at {size}² ...")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"{variant} at {size}² failed:\n{result.stderr[-3000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "out": out}


def psnr(a, b) -> float:
    mse = float((a.clamp(0, 1) - b.clamp(0, 1)).double().square().mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def measure(sizes: list[int], tile: int, refine_size: int) -> dict:
    import torch

    results: dict = {"tile": tile, "vae": {}, "refine": None}
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            runs = {variant: run_worker(variant, size, tile, Path(folder)) for variant in VAE_VARIANTS}
            whole = torch.load(runs["whole"].pop("out"))
            for variant in ("pack", "core"):
                runs[variant]["psnr"] = psnr(torch.load(runs[variant].pop("out")), whole)
            results["vae"][str(size)] = runs
        if refine_size:
            refined = run_worker("refine", refine_size, tile, Path(folder))
            refined.pop("out")
            results["refine"] = {"size": refine_size, **refined}
    return results


def report(results: dict) -> str:
    gib = 2**30
    lines = [
        f"VAE encode + decode, SD1.5 KL VAE (random weights), tiles of {results['tile']} px:",
        "",
        "| size | whole | pack tiles (exact) | core tiled | pack / core | pack / whole | PSNR pack | PSNR core |"
        " peak RSS whole / pack / core |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, runs in results["vae"].items():
        w, p, c = (runs[v] for v in VAE_VARIANTS)
        lines.append(
            f"| {size}² | {w['seconds']:.1f} s | {p['seconds']:.1f} s | {c['seconds']:.1f} s "
            f"| {p['seconds'] / c['seconds']:.2f} | {p['seconds'] / w['seconds']:.2f} | {p['psnr']:.1f} dB "
            f"| {c['psnr']:.1f} dB | {w['peak_rss'] / gib:.2f} / {p['peak_rss'] / gib:.2f} / "
            f"{c['peak_rss'] / gib:.2f} GiB |"
        )
    if results["refine"]:
        r = results["refine"]
        lines += ["", f"Refine 128 → {r['size']}² at 0.3 on the demo model: {r['seconds'] / 60:.1f} min, "
                  f"peak RSS {r['peak_rss'] / gib:.2f} GiB."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--refine", type=int, default=4096, help="the refine's side in px; 0: no refine")
    parser.add_argument("--worker", choices=(*VAE_VARIANTS, "refine"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    sizes = [int(size) for size in options.sizes.split(",")]
    if options.worker:
        print(json.dumps(worker(options.worker, sizes[0], options.tile, options.out)))
        return 0
    results = measure(sizes, options.tile, options.refine)
    out = host_harness.default_host().root / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "any-size.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    text = report(results)
    (out / "any-size.md").write_text(text, encoding="utf-8")
    print(text)
    return 0
