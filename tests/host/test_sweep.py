"""Img2ImgDenoiseSweep on the test checkpoint."""

import torch


def test_the_sweep_runs_every_strength_and_seed_and_lays_them_out(comfy_runtime):
    rt = comfy_runtime
    with torch.inference_mode():
        clean = {"samples": rt.vae.encode(torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(3)))}
        sheet, images = rt.pack["Img2ImgDenoiseSweep"]().sweep(
            rt.model, rt.positive, rt.negative, clean, rt.vae, 5, 10, 7.0, "euler", "normal", "steps_x_denoise",
            "0, 0.3, 0.6", "5, 6",
        )  # fmt: skip
        unchanged = rt.vae.decode(clean["samples"])
    assert images.shape == (6, 64, 64, 3)
    assert sheet.shape[0] == 1 and sheet.shape[1] > 2 * 64 and sheet.shape[2] > 3 * 64
    # Strength 0 returns the input in both rows; the other strengths differ per seed.
    assert torch.equal(images[0], unchanged[0]) and torch.equal(images[3], unchanged[0])
    assert not torch.equal(images[1], images[4]) and not torch.equal(images[1], images[2])
