"""Train the demo img2img model: a TAESD-shaped VAE and a small SD1.5-family UNet, on photos that ship in
scikit-image's wheel (``skimage.data``), reproducibly, on the CPU.

    python scripts/train_demo_model.py --comfyui .host/ComfyUI [--out-dir models] [--seed 0]
    python scripts/train_demo_model.py --comfyui .host/ComfyUI --resume PREVIOUS.safetensors --vae-steps 0 \
        --unet-steps 560
    python scripts/train_demo_model.py --comfyui .host/ComfyUI --resume PREVIOUS.safetensors --vae-steps 0 \
        --unet-latent 16 --unet-steps 240

The committed weights (models/img2img-demo-unet-vae.safetensors) are these three commands run one after
the other, each run's output moved aside (with its img2img-demo.json next to it) before the next resumes
from it: the first with the defaults (VAE 600 steps, UNet 320 steps on 8x8 latent windows; 16 minutes on
one busy CPU core), the second (the same VAE, 560 more UNet steps at 8x8; about 10 minutes), the third (the
same VAE, 240 more UNet steps on whole 16x16 latents, the size of a 128 px picture that the figures are
measured at; about 4 s a step, 20 minutes on a core shared with other work). The defaults still mean the
first run. models/img2img-demo.json is the third run's record; it holds the second run's record under
``resumed_from.record``, which holds the first's the same way. The UNet got the extra steps because 320
left the pictures blotchy at low strength, and the 16x16 steps because the 8x8-trained UNet still added
blotches at the evaluation size.

Two stages, with every random draw from one seeded torch.Generator (and torch.manual_seed for anything
that draws from the global generator), so a run with the same seed, settings, torch and ComfyUI versions
repeats the same data stream; CPU kernels may still differ in the last bits between machines. The forward
passes run under bfloat16 autocast where the CPU has bfloat16 units (AVX512-BF16 or AMX), as the recorded
runs did; elsewhere ``--precision auto`` (the default) trains in float32, since emulated bfloat16 is several
times slower there (an AVX2 EPYC: a UNet step at 16x16 about 120 s in bfloat16, about 20 s in float32).
``--precision bfloat16`` repeats the recorded runs on any CPU; each record holds the precision it used.

1. The VAE: ComfyUI's ``comfy.taesd.taesd.TAESD`` (ComfyUI recognises it by its ``taesd_decoder.1.weight``
   key), trained with a pixel MSE (+ a small L1 on image gradients, for edges) on random crops of the
   training photos at native resolution and downscales, with flips and colour-channel permutations.
   Its ``vae_scale`` / ``vae_shift`` are then set from the latent statistics so that the latents the UNet
   sees (ComfyUI's ``VAE.encode`` output times SD1.5's latent factor 0.18215) have mean 0 and std 1.
2. The UNet: ComfyUI's ``UNetModel`` with 320 base channels and 768-wide conv-proj_in cross-attention, so
   ComfyUI detects the checkpoint as SD15 / EPS; trained as an EPS predictor on SD1.5's discrete schedule
   (scaled-linear betas 0.00085..0.012, 1000 steps), its input scaled by c_in = 1/sqrt(sigma^2 + 1) and fed
   the integer timestep, as ComfyUI's ModelSamplingDiscrete/EPS does, on a bank of latents of augmented
   crops made with the frozen encoder. The loss is min-SNR-gamma weighted, which favours the x0 error at
   low and middle noise levels, where img2img at low strength works.

The text encoder stays random (make_test_checkpoint's generator makes it at checkpoint build time), and the
UNet ignores the text by construction: every cross-attention output projection (``attn2.to_out.0``) is zero
and not trained, so the conditional and unconditional predictions are identical and CFG has no effect.

Held out: the photos in HELD_OUT are never used for training; they are the evaluation and demo pictures.

Output: fp16 safetensors of the UNet and VAE under the checkpoint prefixes ``model.diffusion_model.`` and
``first_stage_model.`` (``img2img-demo-unet-vae.safetensors``), and ``img2img-demo.json`` with the seed,
settings, training time, final losses and the weights' sha256. scripts/make_demo_checkpoint.py adds the
random CLIP-L and writes the loadable checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import make_test_checkpoint  # scripts/, this script's folder, is first on its path
import torch
import torch.nn.functional as F

SCRIPTS_DIR = Path(__file__).resolve().parent
WEIGHTS_NAME = "img2img-demo-unet-vae.safetensors"
INFO_NAME = "img2img-demo.json"

# Never trained on: the pictures the figures and the demo are made with.
HELD_OUT = ("coffee", "chelsea")
COLOUR_PHOTOS = ("astronaut", "rocket", "motorcycle_left", "motorcycle_right", "ihc", "retina", "hubble_deep_field")
GRAY_PHOTOS = ("camera", "coins", "moon", "brick", "grass", "gravel", "page", "text", "clock_motion", "cell")
# SD1.5's latent format multiplies VAE latents by this before the UNet (comfy.latent_formats.SD15).
SD15_LATENT_FACTOR = 0.18215

# The UNet: 320 base channels, context 768 and conv proj_in are what ComfyUI's detection reads as SD15. One
# level with one res block and a transformer in each block (the shape of make_test_checkpoint's UNET_CONFIG):
# 25.8M parameters, so that UNet + VAE stay under 64 MB in fp16 (a second level would make it 44M), and fast
# enough to train on a CPU; the attention still sees the whole latent.
DEMO_UNET_CONFIG = make_test_checkpoint.UNET_CONFIG


@dataclass
class Settings:
    seed: int = 0
    vae_steps: int = 600
    vae_batch: int = 12
    vae_crop: int = 64
    vae_lr: float = 2e-3
    # Gaussian noise on the raw latents while training the decoder, so that it decodes the slightly
    # perturbed latents that img2img hands it into pictures rather than artefacts.
    vae_latent_noise: float = 0.03
    vae_grad_l1: float = 0.1
    # Crops are taken at scales from native resolution down to this one (log-uniform): the 128x128
    # evaluation pictures are whole photos downscaled about 2.5-3x, so the range reaches well below that.
    min_scale: float = 0.2
    bank_crops: int = 256
    bank_crop: int = 128
    unet_steps: int = 320
    unet_batch: int = 16
    # 8x8 latent windows (64 px) of the bank's 16x16 latents: a quarter of the cost of 16x16 per sample; the
    # convolutions and attention apply unchanged at the 16x16 latents of a 128 px picture.
    unet_latent: int = 8
    unet_lr: float = 4e-4
    min_snr_gamma: float = 5.0
    # One thread: on a busy 2-core machine a second OpenMP thread spins against other processes and made
    # steps five times slower in a trial; on an idle machine 2 is about 1.5x faster.
    threads: int = 1
    # The autocast precision of the forward passes. The recorded runs were bfloat16, on a CPU with AMX;
    # without bfloat16 units oneDNN emulates it, several times slower than float32 (see --precision).
    precision: str = "bfloat16"
    held_out: tuple[str, ...] = field(default=HELD_OUT)


def autocast(s: Settings) -> torch.autocast:
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.precision == "bfloat16")


def cpu_has_bfloat16_units() -> bool:
    # The same probe as the pack's accelerate path (nodes/accelerate.py): plain AVX512 or AVX2 only emulate it.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def load_photos(names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Photos from skimage.data's folder (files shipped in the wheel, nothing downloaded) as float RGB
    [3, H, W] in [0, 1]; grayscale ones become gray RGB."""
    import skimage.data
    from PIL import Image

    folder = Path(skimage.data.__file__).parent
    photos = {}
    for name in names:
        (path,) = [p for p in (folder / f"{name}.png", folder / f"{name}.jpg") if p.exists()]
        with Image.open(path) as image:
            array = torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8)
            photos[name] = array.view(image.height, image.width, 3).permute(2, 0, 1).float().div(255).contiguous()
    return photos


class CropSampler:
    """Random crops of the training photos: scale, position, flip and colour-channel order all drawn from one
    seeded generator, so the stream of crops is a function of the seed only."""

    def __init__(
        self, photos: dict[str, torch.Tensor], colour: tuple[str, ...], gen: torch.Generator, min_scale: float
    ) -> None:
        self.names = list(photos)
        self.photos = [photos[n] for n in self.names]
        # Colour photos carry most of the weight: the held-out pictures are colour photos.
        weights = [3.0 if n in colour else 1.0 for n in self.names]
        self.weights = torch.tensor(weights) / sum(weights)
        self.gen = gen
        self.min_scale = min_scale

    def _uniform(self) -> float:
        return torch.rand((), generator=self.gen).item()

    def crop(self, size: int) -> torch.Tensor:
        image = self.photos[torch.multinomial(self.weights, 1, generator=self.gen).item()]
        _, height, width = image.shape
        # Log-uniform scale, capped so that the source window fits in the photo.
        scale = math.exp(math.log(self.min_scale) * self._uniform())
        window = min(round(size / scale), height, width)
        top = int(self._uniform() * (height - window + 1))
        left = int(self._uniform() * (width - window + 1))
        patch = image[None, :, top : top + window, left : left + window]
        if window != size:
            patch = F.interpolate(patch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if self._uniform() < 0.5:
            patch = patch.flip(-1)
        if self._uniform() < 0.5:
            # A different channel order gives colours the few training photos lack.
            patch = patch[:, torch.randperm(3, generator=self.gen)]
        return patch[0].clamp(0, 1)

    def batch(self, count: int, size: int) -> torch.Tensor:
        return torch.stack([self.crop(size) for _ in range(count)])


def init_taesd(vae: torch.nn.Module) -> None:
    """Start TAESD as a blur-downsample / blur-upsample codec of the colours, so that training begins near the
    PSNR of an 8x bilinear round trip and spends its few CPU minutes on detail rather than on learning to
    pass colours through.

    Every residual block starts as the identity (its last conv zero). Channels 0-2 of every feature map carry
    R, G, B: the encoder's strided convs average them with a [1, 2, 1] binomial kernel, its last conv puts
    them in latent channels 0-2, and the decoder's convs after each nearest upsample smooth them with the same
    kernel (about a bilinear upsample). All other weights start at PyTorch's defaults (ComfyUI's ops skip
    initialisation), and no other channel feeds the carriers at the start.
    """
    import comfy.taesd.taesd

    for module in vae.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.Conv2d.reset_parameters(module)
    # A second pass: modules() yields a block before its convs, which the first pass would re-initialise.
    for module in vae.modules():
        if isinstance(module, comfy.taesd.taesd.Block):
            torch.nn.init.zeros_(module.conv[-1].weight)
            torch.nn.init.zeros_(module.conv[-1].bias)
    binomial = torch.tensor([1.0, 2.0, 1.0])
    smooth = (binomial[:, None] * binomial[None, :]) / 16
    centre = torch.zeros(3, 3)
    centre[1, 1] = 1.0

    def carry(conv: torch.nn.Conv2d, kernel: torch.Tensor, channels: int = 3) -> None:
        with torch.no_grad():
            conv.weight[:channels] = 0.0
            for c in range(channels):
                conv.weight[c, c] = kernel
            if conv.bias is not None:
                conv.bias[:channels] = 0.0

    convs = [m for m in vae.taesd_encoder if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        carry(conv, smooth if conv.stride == (2, 2) else centre)
    convs = [m for m in vae.taesd_decoder if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        carry(conv, smooth if conv.bias is None else centre)
    last = vae.taesd_decoder[-1]
    with torch.no_grad():
        # The encoder's carriers hold pixel values in [0, 1] and the decoder's output is in [0, 1] too.
        last.bias.zero_()


def init_unet(unet: torch.nn.Module) -> None:
    """PyTorch-default initialisation (ComfyUI's ops skip it), the output conv zeroed as in the original SD
    UNet, and the cross-attention output projections zeroed so that the text has no effect."""
    # ComfyUI's ops override reset_parameters with a no-op: call PyTorch's own (global RNG, seeded in train).
    for module in unet.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            (torch.nn.Conv2d if isinstance(module, torch.nn.Conv2d) else torch.nn.Linear).reset_parameters(module)
        elif isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and module.weight is not None:
            torch.nn.init.ones_(module.weight)
            torch.nn.init.zeros_(module.bias)
    for name, parameter in unet.named_parameters():
        if is_cross_attention_out(name) or name.startswith("out.2."):
            torch.nn.init.zeros_(parameter)


def is_cross_attention_out(name: str) -> bool:
    return ".attn2.to_out." in name


def cosine_lr(step: int, total: int, peak: float, warmup: int = 50) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(0, 1) - b).pow(2).mean().item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def held_out_eval_pictures(photos: dict[str, torch.Tensor], size: int = 128) -> torch.Tensor:
    """The held-out photos for the training log's VAE figure: short side to ``size`` (bicubic, antialiased), centre
    crop. Close to measure_demo_model's ``whole`` pictures (Pillow's Lanczos), not the same: the figures are that
    script's."""
    pictures = []
    for image in photos.values():
        _, height, width = image.shape
        scale = size / min(height, width)
        new = (max(size, round(height * scale)), max(size, round(width * scale)))
        resized = F.interpolate(image[None], size=new, mode="bicubic", antialias=True, align_corners=False)
        top, left = (new[0] - size) // 2, (new[1] - size) // 2
        pictures.append(resized[0, :, top : top + size, left : left + size].clamp(0, 1))
    return torch.stack(pictures)


def train_vae(
    vae: torch.nn.Module, sampler: CropSampler, s: Settings, gen: torch.Generator, held_out: torch.Tensor
) -> dict[str, float]:
    vae.train()
    vae.to(memory_format=torch.channels_last)
    params = [p for n, p in vae.named_parameters() if n not in ("vae_scale", "vae_shift")]
    optimizer = torch.optim.Adam(params, lr=s.vae_lr, betas=(0.9, 0.99))
    start = time.perf_counter()
    running = None
    for step in range(s.vae_steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, s.vae_steps, s.vae_lr)
        x = sampler.batch(s.vae_batch, s.vae_crop).contiguous(memory_format=torch.channels_last)
        with autocast(s):
            raw = vae.taesd_encoder(x)
            noisy = raw + s.vae_latent_noise * torch.randn(raw.shape, generator=gen).to(raw.dtype)
            y = vae.taesd_decoder(noisy).float()
        mse = (y - x).pow(2).mean()
        gy, gx = image_gradients(y)
        ty, tx = image_gradients(x)
        loss = mse + s.vae_grad_l1 * ((gy - ty).abs().mean() + (gx - tx).abs().mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running = mse.item() if running is None else 0.98 * running + 0.02 * mse.item()
        if step % 100 == 0 or step == s.vae_steps - 1:
            elapsed = time.perf_counter() - start
            with torch.no_grad(), autocast(s):
                back = vae.taesd_decoder(vae.taesd_encoder(held_out)).float()
            eta = elapsed / (step + 1) * (s.vae_steps - step - 1)
            print(
                f"vae step {step:5d}  train mse {running:.5f} ({-10 * math.log10(running):.2f} dB)  "
                f"held-out 128px {psnr(back, held_out):.2f} dB  {elapsed:.0f}s, eta {eta:.0f}s",
                flush=True,
            )
    vae.eval()
    with torch.no_grad():
        back = vae.taesd_decoder(vae.taesd_encoder(held_out))
    return {
        "vae_train_mse_ema": running,
        "vae_held_out_psnr_fp32": psnr(back, held_out),
        "vae_seconds": time.perf_counter() - start,
    }


def make_latent_bank(vae: torch.nn.Module, sampler: CropSampler, s: Settings) -> torch.Tensor:
    """Raw encoder latents of augmented crops (the frozen encoder, in batches)."""
    latents = []
    with torch.no_grad(), autocast(s):
        for _ in range(0, s.bank_crops, 16):
            x = sampler.batch(16, s.bank_crop).contiguous(memory_format=torch.channels_last)
            latents.append(vae.taesd_encoder(x).float())
    return torch.cat(latents)[: s.bank_crops].contiguous()


def train_unet(unet: torch.nn.Module, bank: torch.Tensor, s: Settings, gen: torch.Generator) -> dict[str, float]:
    import comfy.model_sampling

    # ComfyUI's own schedule object: the same sigmas the sampler uses (SD1.5 defaults when no config is given).
    sigmas = comfy.model_sampling.ModelSamplingDiscrete().sigmas.float()
    trainable = [p for n, p in unet.named_parameters() if not is_cross_attention_out(n)]
    for n, p in unet.named_parameters():
        p.requires_grad_(not is_cross_attention_out(n))
    optimizer = torch.optim.AdamW(trainable, lr=s.unet_lr, betas=(0.9, 0.99), weight_decay=0.0)
    # The text is ignored, but the UNet's cross-attention still needs a context tensor of the right width.
    context = torch.zeros(s.unet_batch, 77, 768)
    unet.train()
    start = time.perf_counter()
    running = None
    size = s.unet_latent
    for step in range(s.unet_steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, s.unet_steps, s.unet_lr)
        index = torch.randint(0, bank.shape[0], (s.unet_batch,), generator=gen)
        top = torch.randint(0, bank.shape[2] - size + 1, (s.unet_batch,), generator=gen)
        left = torch.randint(0, bank.shape[3] - size + 1, (s.unet_batch,), generator=gen)
        x0 = torch.stack([bank[i, :, y : y + size, x : x + size] for i, y, x in zip(index, top, left, strict=True)])
        flip = torch.rand(s.unet_batch, generator=gen) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
        timestep = torch.randint(0, len(sigmas), (s.unet_batch,), generator=gen)
        sigma = sigmas[timestep][:, None, None, None]
        eps = torch.randn(x0.shape, generator=gen)
        # ComfyUI's EPS parameterisation: x = x0 + sigma * eps, model input x / sqrt(sigma^2 + 1).
        model_input = (x0 + sigma * eps) / (sigma**2 + 1).sqrt()
        with autocast(s):
            predicted = unet(model_input, timesteps=timestep.float(), context=context).float()
        snr = 1.0 / sigma.flatten() ** 2
        weight = snr.clamp(max=s.min_snr_gamma) / snr
        loss = (weight * (predicted - eps).pow(2).mean(dim=(1, 2, 3))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == s.unet_steps - 1:
            elapsed = time.perf_counter() - start
            eta = elapsed / (step + 1) * (s.unet_steps - step - 1)
            print(f"unet step {step:5d}  weighted eps loss {running:.4f}  {elapsed:.0f}s, eta {eta:.0f}s", flush=True)
    unet.eval()
    return {"unet_loss_ema": running, "unet_seconds": time.perf_counter() - start}


def train(comfyui_dir: Path, out_dir: Path, s: Settings, resume: Path | None = None) -> dict:
    """Train both parts (or, with ``resume``, only the UNet further from an earlier run's weights), write the
    fp16 weights and the JSON record; return the record."""
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.ops
    import comfy.taesd.taesd
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from safetensors.torch import load_file, save

    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    total_start = time.perf_counter()

    training = load_photos(COLOUR_PHOTOS + GRAY_PHOTOS)
    assert not set(training) & set(s.held_out), "a held-out photo is in the training set"
    held_out = held_out_eval_pictures(load_photos(s.held_out))
    sampler = CropSampler(training, COLOUR_PHOTOS, gen, s.min_scale)

    vae = comfy.taesd.taesd.TAESD()
    unet = UNetModel(**DEMO_UNET_CONFIG, operations=comfy.ops.disable_weight_init)
    if resume is None:
        init_taesd(vae)
        record = train_vae(vae, sampler, s, gen, held_out)
    else:
        # Continue from an earlier run's weights: the VAE (with its scale and shift) stays as it is and the
        # UNet trains on from where it was, on a fresh latent bank and learning-rate schedule.
        loaded = load_file(str(resume))
        vae.load_state_dict(
            {k[len("first_stage_model.") :]: v.float() for k, v in loaded.items() if k.startswith("first_stage_model.")}
        )
        unet.load_state_dict(
            {
                k[len("model.diffusion_model.") :]: v.float()
                for k, v in loaded.items()
                if k.startswith("model.diffusion_model.")
            }
        )
        vae.eval()
        record = {"resumed_from": {"file": resume.name, "sha256": hashlib.sha256(resume.read_bytes()).hexdigest()}}
        previous = resume.with_name(INFO_NAME)
        if previous.exists():
            record["resumed_from"]["record"] = json.loads(previous.read_text(encoding="utf-8"))

    raw_bank = make_latent_bank(vae, sampler, s)
    mean, std = raw_bank.mean().item(), raw_bank.std().item()
    if resume is None:
        # ComfyUI: VAE.encode = raw / vae_scale + vae_shift, and the UNet sees that times 0.18215. Choosing
        # vae_scale = std * 0.18215 and vae_shift = -mean / vae_scale makes the UNet's latents mean 0, std 1.
        vae_scale = std * SD15_LATENT_FACTOR
        vae_shift = -mean / vae_scale
        with torch.no_grad():
            vae.vae_scale.fill_(vae_scale)
            vae.vae_shift.fill_(vae_shift)
    else:
        vae_scale, vae_shift = vae.vae_scale.item(), vae.vae_shift.item()
        mean, std = -vae_shift * vae_scale, vae_scale / SD15_LATENT_FACTOR
    bank = (raw_bank - mean) / std
    print(
        f"latent bank {tuple(bank.shape)}: raw mean {mean:.3f} std {std:.3f} -> vae_scale {vae_scale:.5f}, "
        f"vae_shift {vae_shift:.4f}; per-channel std {[round(v, 3) for v in bank.std(dim=(0, 2, 3)).tolist()]}",
        flush=True,
    )

    if resume is None:
        init_unet(unet)
    unet.to(memory_format=torch.channels_last)
    record.update(train_unet(unet, bank, s, gen))

    tensors = {}
    for prefix, module in (("model.diffusion_model.", unet), ("first_stage_model.", vae)):
        for key, tensor in module.state_dict().items():
            tensors[prefix + key] = tensor.detach().to(torch.float16).contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / WEIGHTS_NAME
    data = save(tensors, metadata={"description": f"comfyui-img2img demo UNet + TAESD VAE, seed {s.seed}"})
    make_test_checkpoint.write_atomically(weights_path, data)

    unet_params = sum(t.numel() for k, t in tensors.items() if k.startswith("model.diffusion_model."))
    vae_params = sum(t.numel() for k, t in tensors.items() if k.startswith("first_stage_model."))
    record = {
        "weights": WEIGHTS_NAME,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "unet_params": unet_params,
        "vae_params": vae_params,
        "unet_config": DEMO_UNET_CONFIG,
        "vae_scale": vae_scale,
        "vae_shift": vae_shift,
        "settings": asdict(s),
        "training_photos": sorted(training),
        "torch": torch.__version__,
        "total_seconds": time.perf_counter() - total_start,
        **record,
    }
    make_test_checkpoint.write_atomically(out_dir / INFO_NAME, (json.dumps(record, indent=2) + "\n").encode())
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", type=Path, required=True, help="ComfyUI source tree")
    parser.add_argument("--out-dir", type=Path, default=SCRIPTS_DIR.parent / "models")
    parser.add_argument("--resume", type=Path, help="an earlier run's weights: keep its VAE, train its UNet on")
    defaults = Settings()
    for name, value in asdict(defaults).items():
        if isinstance(value, (int, float)) and name != "held_out":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument(
        "--precision",
        choices=("auto", "bfloat16", "float32"),
        default="auto",
        help="auto: bfloat16 where the CPU has bfloat16 units (AVX512-BF16 or AMX), else float32; reproducing the "
        "committed weights needs bfloat16, as recorded",
    )
    args = parser.parse_args()
    if args.precision == "auto":
        args.precision = "bfloat16" if cpu_has_bfloat16_units() else "float32"
    settings = Settings(**{k: getattr(args, k) for k in asdict(defaults) if k != "held_out"})
    sys.path.insert(0, str(args.comfyui.resolve()))
    record = train(args.comfyui.resolve(), args.out_dir, settings, args.resume)
    print(json.dumps({k: v for k, v in record.items() if k not in ("unet_config", "settings")}, indent=2))


if __name__ == "__main__":
    main()
