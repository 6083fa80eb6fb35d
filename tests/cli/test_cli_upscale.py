"""``img2img run --scale/--tile/--upscale-model`` against real ComfyUI servers: upscale and refine to the end."""

from __future__ import annotations

from pathlib import Path

import torch
from img2img_cli.main import main
from PIL import Image
from safetensors.torch import save_file

from cli_progress import manifest_lines

FAST = ["--prompt", "a lighthouse", "--denoise", "0.5", "--steps", "2"]


def executed_classes(server, prompt_id: str) -> set[str]:
    """The node classes of the graph the server ran for a manifest line."""
    [entry] = server.get_json(f"/history/{prompt_id}").values()
    return {node["class_type"] for node in entry["prompt"][2].values()}


def test_an_input_upscaled_twice_and_refined_in_tiles(server, checkpoint, make_images, tmp_path, capsys):
    [image] = make_images(tmp_path / "in", [(64, 48)])
    out = tmp_path / "out"
    args = ["run", str(image), *FAST, "--checkpoint", checkpoint, "--scale", "2", "--tile", "64"]
    assert main([*args, "--out", str(out), "--server", server.url]) == 0, capsys.readouterr()
    [line] = manifest_lines(out)
    with Image.open(out / line["output"]) as picture:
        assert picture.size == (128, 96)
    # The strength's plan as for any run, and the new parameters, which make it another resume key.
    plan = {name: line["parameters"][name] for name in ("denoise", "steps", "mode", "scale", "tile")}
    assert plan == {"denoise": 0.5, "steps": 2, "mode": "steps_x_denoise", "scale": 2.0, "tile": 64}
    assert "upscale_model" not in line["parameters"]
    assert {"ImageScaleBy", "Img2ImgTiledModel"} <= executed_classes(server, line["prompt_id"])
    # 128 x 96 px (16 x 12 latent pixels) takes several 64 px tiles (8 latent pixels) at every step.
    assert "1 done, 0 skipped, 0 failed" in capsys.readouterr().out


def tiny_upscale_model(path: Path) -> None:
    """A 4x Real-ESRGAN Compact (SRVGGNetCompact, 4 features, 1 convolution) with random weights: core's
    UpscaleModelLoader recognises the architecture and the factor (48 output channels = 3 x 4²) by its keys."""
    generator = torch.Generator().manual_seed(0)
    shapes = {
        "body.0.weight": (4, 3, 3, 3),
        "body.0.bias": (4,),
        "body.1.weight": (4,),  # PReLU
        "body.2.weight": (4, 4, 3, 3),
        "body.2.bias": (4,),
        "body.3.weight": (4,),
        "body.4.weight": (48, 4, 3, 3),
        "body.4.bias": (48,),
    }
    path.parent.mkdir(parents=True)
    save_file({name: torch.randn(shape, generator=generator) * 0.1 for name, shape in shapes.items()}, str(path))


def test_an_upscale_model_of_another_factor_is_resized_to_exactly_the_scale(checkpoint, make_images, tmp_path, capsys):
    """The local host with --models-dir serves DIR/upscale_models; a 4x model at --scale 1.5 gives 1.5x, the
    input fitted to a multiple of 16 first (64 x 48 is one) so that 1.5x stays a multiple of 8."""
    models = tmp_path / "models"
    tiny_upscale_model(models / "upscale_models" / "4x-tiny.safetensors")
    [image] = make_images(tmp_path / "in", [(64, 48)])
    out = tmp_path / "out"
    args = ["run", str(image), *FAST, "--models-dir", str(models), "--scale", "1.5"]
    assert main([*args, "--upscale-model", "4x-tiny.safetensors", "--out", str(out)]) == 0, capsys.readouterr()
    [line] = manifest_lines(out)
    with Image.open(out / line["output"]) as picture:
        assert picture.size == (96, 72)
    assert (line["parameters"]["scale"], line["parameters"]["upscale_model"]) == (1.5, "4x-tiny.safetensors")
    assert "tile" not in line["parameters"]
