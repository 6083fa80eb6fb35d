"""Img2ImgVAEEncode / Img2ImgVAEDecode on the test checkpoint's VAE: tiles agree with the whole, big images fit."""

from __future__ import annotations

import subprocess
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from pack_under_test import PACK_ROOT, SAMPLE

# The peak memory README promises for a 4096×4096 encode on the CPU (the whole image at once would
# need tens of GB of activations).
ENCODE_4096_PEAK_BYTES = 4 * 2**30


@pytest.fixture(scope="module")
def sample_256() -> torch.Tensor:
    with Image.open(SAMPLE) as picture:
        pixels = np.asarray(picture.convert("RGB").resize((256, 256), Image.LANCZOS), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels)[None]


def test_tiled_and_whole_encode_and_decode_agree(comfy_runtime, sample_256):
    """Through the nodes: tiles where memory allows are exact, so the tiled picture is the whole one."""
    encode = comfy_runtime.pack["Img2ImgVAEEncode"]().encode
    decode = comfy_runtime.pack["Img2ImgVAEDecode"]().decode
    vae = comfy_runtime.vae
    with torch.inference_mode():
        (whole,) = encode(sample_256, vae, "never", 512, 64)
        (tiled,) = encode(sample_256, vae, "always", 96, 32)
        assert whole["samples"].shape == tiled["samples"].shape == (1, 4, 32, 32)
        assert float((whole["samples"] - tiled["samples"]).abs().max()) <= 1e-4 * float(whole["samples"].abs().max())
        (image,) = decode(whole, vae, "never", 512, 64)
        (image_tiled,) = decode(whole, vae, "always", 96, 32)
    assert image.shape == image_tiled.shape == (1, 256, 256, 3)
    assert float((image - image_tiled).abs().max()) < 1e-4


def test_bad_sizes_and_tiles_are_refused_with_the_input_named(comfy_runtime, sample_256):
    encode = comfy_runtime.pack["Img2ImgVAEEncode"]().encode
    with torch.inference_mode():
        with pytest.raises(ValueError, match="multiple"):
            encode(sample_256[:, :250], comfy_runtime.vae, "auto", 512, 64)
        with pytest.raises(ValueError, match="overlap at least 0"):
            encode(sample_256, comfy_runtime.vae, "always", 128, -1)
        with pytest.raises(ValueError, match="mask"):
            encode(sample_256, comfy_runtime.vae, "never", 512, 64, mask=torch.zeros(1, 64, 64))
        (latent,) = encode(sample_256, comfy_runtime.vae, "never", 512, 64, mask=torch.ones(1, 256, 256))
    assert latent["noise_mask"].shape == (1, 1, 256, 256)


def test_a_4096_square_encode_stays_within_the_memory_bound(comfy_host):
    """In a fresh process, so that the peak resident memory is the encode's own."""
    script = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(PACK_ROOT / "tests")!r})
        from pathlib import Path
        from pack_under_test import import_comfyui, load_nodes
        import_comfyui(Path({str(comfy_host.comfyui)!r}))
        import torch, nodes
        pack = load_nodes()
        vae = nodes.CheckpointLoaderSimple().load_checkpoint({comfy_host.checkpoint.name!r})[2]
        pixels = torch.rand(1, 4096, 4096, 3, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            (latent,) = pack.NODE_CLASS_MAPPINGS["Img2ImgVAEEncode"]().encode(pixels, vae, "auto", 512, 64)
        print(tuple(latent["samples"].shape), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    """)
    result = subprocess.run(
        [str(comfy_host.python), "-c", script], cwd=comfy_host.comfyui, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stderr[-3000:]
    shape, peak = result.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert shape == "(1, 4, 512, 512)"
    assert int(peak) < ENCODE_4096_PEAK_BYTES, f"peak {int(peak) / 2**30:.2f} GiB"
