"""Where the time of the accelerated img2img graph goes: load, encode, sampler (and per step), decode, save,
each beside its FLOP floor, measured in this process on one model."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .measure import median_time
from .one_model import Bench
from .specs import SAMPLE_IMAGE


def counted_flops(run) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return float(counter.get_total_flops())


@torch.inference_mode()
def breakdown(bench: Bench, denoise: float, rates: dict[str, float]) -> dict:
    """The accelerated graph's parts at ``denoise``: median seconds over the bench's repeats, and each part's
    floor, its FLOPs (counted on the plain float32 path) over the measured bfloat16 matmul rate."""
    from comfyui_img2img.nodes.core.fit import fit_image_and_mask
    from comfyui_img2img.nodes.core.image_bytes import image_file_bytes
    from comfyui_img2img.nodes.core.images import load_image_file

    size, vae = bench.spec.size, bench.vae
    encoder, decoder = bench.pack["Img2ImgVAEEncode"](), bench.pack["Img2ImgVAEDecode"]()

    def load():
        image, mask = load_image_file(SAMPLE_IMAGE)
        return fit_image_and_mask(image, mask, size, size)[0]

    pixels = load()
    latent = encoder.encode(pixels, vae, "never", 512, 64)[0]
    sampler = bench.pack_run(latent, "euler", denoise, accelerate=True)
    samples = {"samples": sampler()}
    decoded = decoder.decode(samples, vae, "never", 512, 64)[0]
    parts = {
        "load": load,
        "encode": lambda: encoder.encode(pixels, vae, "never", 512, 64, accelerate=True),
        "sampler": sampler,
        "decode": lambda: decoder.decode(samples, vae, "never", 512, 64, accelerate=True),
        "save": lambda: image_file_bytes(decoded[0], "png"),
    }
    model_steps = int(bench.spec.steps * denoise)
    flops = {
        "encode": counted_flops(lambda: encoder.encode(pixels, vae, "never", 512, 64)),
        "sampler": model_steps * bench.flops_per_step(1),
        "decode": counted_flops(lambda: decoder.decode(samples, vae, "never", 512, 64)),
    }
    result = {"size": size, "steps": bench.spec.steps, "denoise": denoise, "model_steps": model_steps, "parts": {}}
    for name, run in parts.items():
        seconds = median_time(run, bench.repeats)["median_s"]
        floor = flops.get(name, 0.0) / rates["bfloat16"]
        result["parts"][name] = {"seconds": seconds, "flops": flops.get(name, 0.0), "floor_s": floor}
    result["per_step_s"] = result["parts"]["sampler"]["seconds"] / max(model_steps, 1)
    return result
