"""The committed demo model (models/) is what its training script's recorded run produced, and keeps its promises:
small fp16 weights under the checkpoint's key prefixes, an SD1.5-detectable UNet, and no effect of the text."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from pack_under_test import PACK_ROOT

MODELS = PACK_ROOT / "models"
RECORD = json.loads((MODELS / "img2img-demo.json").read_text(encoding="utf-8"))
WEIGHTS = MODELS / RECORD["weights"]


def test_the_weights_are_the_recorded_runs_output_and_small():
    assert hashlib.sha256(WEIGHTS.read_bytes()).hexdigest() == RECORD["sha256"]
    assert WEIGHTS.stat().st_size == RECORD["bytes"] <= 64 * 1024 * 1024
    assert RECORD["settings"]["held_out"] and not set(RECORD["settings"]["held_out"]) & set(RECORD["training_photos"])


@pytest.fixture(scope="module")
def weights():
    with safe_open(WEIGHTS, "pt") as file:
        yield {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118 (safe_open is no dict)


def test_fp16_unet_and_vae_under_the_checkpoint_prefixes(weights):
    assert {key.split(".")[0] for key in weights} == {"model", "first_stage_model"}
    assert all(key.startswith(("model.diffusion_model.", "first_stage_model.")) for key in weights)
    assert {tensor.dtype for tensor in weights.values() if tensor.is_floating_point()} == {torch.float16}
    assert "first_stage_model.taesd_decoder.1.weight" in weights  # what ComfyUI recognises a TAESD VAE by


def test_the_unet_is_read_as_sd15_and_ignores_the_text(weights):
    # ComfyUI's detection: 320 base channels and 768-wide cross-attention context.
    assert tuple(weights["model.diffusion_model.input_blocks.0.0.weight"].shape) == (320, 4, 3, 3)
    keys = [key for key in weights if key.endswith("attn2.to_k.weight")]
    assert keys and all(weights[key].shape[1] == 768 for key in keys)
    outputs = [key for key in weights if ".attn2.to_out.0." in key]
    assert outputs and all(float(weights[key].abs().max()) == 0.0 for key in outputs)


def test_the_sample_photo_is_a_held_out_picture_the_figures_are_measured_on():
    import measure_demo_model  # scripts/ is on the tests' path
    from PIL import Image

    assert "chelsea" in RECORD["settings"]["held_out"]
    with Image.open(PACK_ROOT / "example_workflows" / "input" / "sample.png") as sample:
        committed = torch.from_numpy(np.array(sample.convert("RGB"))).float() / 255
    assert torch.equal((measure_demo_model.photo_square("chelsea", 128)[0] * 255).round() / 255, committed)
