"""The benchmark of one model: the pack beside core's samplers, its accelerate mode and its strength curve."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import torch

from .device import log
from .measure import Probe, difference, median_ratio, median_time, side_by_side, wall_time
from .specs import H100_FLOPS, NEGATIVE, POSITIVE, SAMPLE_IMAGE, ModelSpec


@dataclass
class Bench:
    comfy_nodes: object
    pack: dict
    spec: ModelSpec
    checkpoint: Path
    repeats: int

    def __post_init__(self) -> None:
        import comfy.sd

        model, clip, self.vae = comfy.sd.load_checkpoint_guess_config(
            str(self.checkpoint), output_vae=True, output_clip=True, embedding_directory=None
        )[:3]
        self.probe = Probe.on(model)
        self.model = self.probe.model
        encode = self.comfy_nodes.CLIPTextEncode().encode
        self.positive, self.negative = encode(clip, POSITIVE)[0], encode(clip, NEGATIVE)[0]
        self.latents: dict[int, dict] = {}

    def image_batch(self, batch: int) -> torch.Tensor:
        from comfyui_img2img.nodes.core.fit import fit_image_and_mask
        from comfyui_img2img.nodes.core.images import load_image_file

        image, mask = load_image_file(SAMPLE_IMAGE)
        return fit_image_and_mask(image, mask, self.spec.size, self.spec.size)[0].repeat(batch, 1, 1, 1)

    def latent(self, batch: int) -> dict:
        if batch not in self.latents:
            self.latents[batch] = self.pack["Img2ImgVAEEncode"]().encode(
                self.image_batch(batch), self.vae, "never", 512, 64
            )[0]
        return self.latents[batch]

    def pack_run(self, latent, sampler, denoise, mode="steps_x_denoise", accelerate=False, seed=1):
        def run():
            out = self.pack["Img2ImgKSampler"]().sample(
                model=self.model,
                positive=self.positive,
                negative=self.negative,
                latent_image=latent,
                seed=seed,
                steps=self.spec.steps,
                cfg=7.0,
                sampler_name=sampler,
                scheduler="normal",
                denoise=denoise,
                strength_mode=mode,
                batch_seed="comfy",
                accelerate=accelerate,
            )
            return out["result"][0]["samples"]

        return run

    def core_advanced_run(self, latent, sampler, denoise, seed=1):
        steps = self.spec.steps
        return self.core_run(
            self.comfy_nodes.KSamplerAdvanced,
            latent,
            sampler,
            add_noise="enable",
            noise_seed=seed,
            steps=steps,
            start_at_step=steps - int(steps * denoise),
            end_at_step=10000,
            return_with_leftover_noise="disable",
        )

    def core_denoise_run(self, latent, sampler, denoise, seed=1):
        return self.core_run(
            self.comfy_nodes.KSampler, latent, sampler, seed=seed, steps=self.spec.steps, denoise=denoise
        )

    def core_run(self, node, latent, sampler, **inputs):
        """A run of one of core's sampler nodes with this bench's model, prompts, cfg and schedule."""

        def run():
            return node().sample(
                model=self.model,
                cfg=7.0,
                sampler_name=sampler,
                scheduler="normal",
                positive=self.positive,
                negative=self.negative,
                latent_image=latent,
                **inputs,
            )[0]["samples"]

        return run

    def pair(self, pack_run, core_run) -> dict[str, object]:
        runs = side_by_side({"pack": pack_run, "core": core_run}, self.probe, self.repeats)
        pack, core = runs["pack"].summary(), runs["core"].summary()
        return {
            "pack": pack,
            "core": core,
            "ratio": pack["total_s"] / core["total_s"],
            "difference": difference(runs["pack"].output, runs["core"].output),
            "pack_output": runs["pack"].output,
        }

    def flops_per_step(self, batch: int) -> float:
        """FLOPs of one model step (CFG: cond and uncond), counted on one single-step pack run."""
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        run = self.pack_run(self.latent(batch), "euler", 1 / self.spec.steps)
        with counter:
            run()
        return counter.get_total_flops()

    def attention_times(self) -> dict[str, dict[str, float]]:
        """One UNet forward at CFG batch 2 with ComfyUI's attention for this device, and with PyTorch's fused
        scaled_dot_product_attention, in float32: what the choice of attention costs a step."""
        import comfy.model_management

        from comfyui_img2img.nodes.accelerate import ATTENTION_OVERRIDE, fused_attention

        comfy.model_management.load_models_gpu([self.model])
        unet = self.model.model.diffusion_model
        device = self.model.load_device
        size = self.spec.size // 8
        x = torch.randn(2, 4, size, size, device=device)
        timesteps = torch.full((2,), 500.0, device=device)
        context = torch.randn(2, 77, 768, device=device)  # both models are SD1.5-shaped: CLIP-L context
        fused = {ATTENTION_OVERRIDE: fused_attention}
        with torch.inference_mode():
            return {
                "comfyui": median_time(lambda: unet(x, timesteps, context=context), self.repeats),
                "fused": median_time(
                    lambda: unet(x, timesteps, context=context, transformer_options=fused), self.repeats
                ),
            }

    def vae_times(self, batch: int) -> dict[str, dict[str, float]]:
        pixels = self.image_batch(batch)
        latent = self.latent(batch)
        encode, decode = self.pack["Img2ImgVAEEncode"](), self.pack["Img2ImgVAEDecode"]()
        return {
            "encode": median_time(lambda: encode.encode(pixels, self.vae, "never", 512, 64), self.repeats),
            "decode": median_time(lambda: decode.decode(latent, self.vae, "never", 512, 64), self.repeats),
        }

    def run(self, rates: dict[str, float], parts: tuple[str, ...]) -> dict[str, object]:
        spec = self.spec
        result = {"model": spec.name, "steps": spec.steps, "size": spec.size, "rows": [], "curve": []}
        # The dtype ComfyUI loaded the UNet in for this device: float32 on a CPU, usually half precision on a GPU.
        result["unet_dtype"] = str(self.model.model.get_dtype()).removeprefix("torch.")
        latent = self.latent(1)
        if "rows" in parts:
            self.rows(result, rates)
        if "accelerate" in parts:
            result["accelerate"] = self.accelerate_rows(latent)
        if "curve" in parts:
            result["curve"] = self.curve(latent)
        return result

    def rows(self, result: dict[str, object], rates: dict[str, float]) -> None:
        spec = self.spec
        result["attention"] = self.attention_times()
        for batch in dict.fromkeys(batch for batch, _, _ in spec.rows):
            result.setdefault("flops_per_step", {})[batch] = self.flops_per_step(batch)
            result.setdefault("vae", {})[batch] = self.vae_times(batch)
        for batch, sampler, denoise in spec.rows:
            log(f"{spec.name}: batch {batch}, {sampler}, s={denoise}: steps_x_denoise vs KSamplerAdvanced")
            latent = self.latent(batch)
            row = self.pair(self.pack_run(latent, sampler, denoise), self.core_advanced_run(latent, sampler, denoise))
            del row["pack_output"]
            steps = row["pack"]["model_calls"]
            row.update(kind="steps_x_denoise vs KSamplerAdvanced", batch=batch, sampler=sampler, s=denoise)
            row["floor_s"] = steps * result["flops_per_step"][batch] / rates["float32"]
            row["h100_floor_s"] = steps * result["flops_per_step"][batch] / H100_FLOPS
            result["rows"].append(row)
        log(f"{spec.name}: comfy mode vs KSampler(denoise)")
        latent = self.latent(1)
        row = self.pair(self.pack_run(latent, "euler", 0.5, "comfy"), self.core_denoise_run(latent, "euler", 0.5))
        del row["pack_output"]
        row.update(kind="comfy vs KSampler(denoise)", batch=1, sampler="euler", s=0.5)
        result["rows"].append(row)

    def accelerate_rows(self, latent) -> dict[str, object]:
        from comfyui_img2img.nodes.accelerate import accelerated_dtype

        dtype, reason = accelerated_dtype(self.model)
        if dtype is None:
            return {"skipped": reason}
        core_beside_copy = self.core_beside_copy(latent)  # first: its "before" precedes any accelerated run
        rows = []
        for denoise in (0.5, 1.0):
            log(f"{self.spec.name}: accelerate, s={denoise}")
            plain = self.pack_run(latent, "euler", denoise)()
            row = self.pair(
                self.pack_run(latent, "euler", denoise, accelerate=True),
                self.core_advanced_run(latent, "euler", denoise),
            )
            row.update(s=denoise, vs_plain=difference(row.pop("pack_output"), plain))
            rows.append(row)
        return {
            "dtype": str(dtype).removeprefix("torch."),
            "rows": rows,
            "core_beside_copy": core_beside_copy,
        }

    def core_beside_copy(self, latent) -> dict[str, dict[str, float]]:
        """Core's time before the model's first accelerated run, then with the kept bfloat16 copy in memory and
        after releasing it, alternating: whether an accelerated run or its copy slows the rest of the process."""
        from comfyui_img2img.nodes.accelerate import release_kept_copy

        log(f"{self.spec.name}: core before and beside the kept copy")
        accelerated = self.pack_run(latent, "euler", 0.5, accelerate=True)
        core = self.core_advanced_run(latent, "euler", 0.5)
        wall_time(core)  # warm-up
        times: dict[str, list[float]] = {"before": [wall_time(core) for _ in range(self.repeats)]}
        times.update(kept=[], released=[])
        for _ in range(self.repeats):
            accelerated()  # converts (again) and keeps the copy
            times["kept"].append(wall_time(core))
            release_kept_copy()
            times["released"].append(wall_time(core))
        return {
            name: {"total_s": statistics.median(values), "total_min_s": min(values), "total_max_s": max(values)}
            for name, values in times.items()
        }

    def curve(self, latent) -> list[dict[str, object]]:
        """Time at s over the pack's time at s = 1, as ratios within each repeat: the machine's drift over the
        minutes a curve takes would otherwise be as large as the effect."""
        full = self.pack_run(latent, "euler", 1.0)
        points = []
        for denoise in self.spec.curve:
            log(f"{self.spec.name}: strength curve, s={denoise}")
            runs = {
                "pack": self.pack_run(latent, "euler", denoise),
                "core": self.core_denoise_run(latent, "euler", denoise),
            }
            if denoise < 1:
                runs["pack_full"] = full
            results = side_by_side(runs, self.probe, self.repeats)
            pack, core, reference = results["pack"], results["core"], results.get("pack_full", results["pack"])
            points.append(
                {
                    "s": denoise,
                    "model_steps": pack.model_calls,
                    "pack_total": median_ratio(pack.total_s, reference.total_s),
                    "pack_sampler": median_ratio(pack.loop_s, reference.loop_s),
                    "core_total": median_ratio(core.total_s, reference.total_s),
                }
            )
        return points
