"""README command (1): the img2img CLI on the bundled sample photos with the demo model; and the example graph
that the tests start from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from .layout import DEMO_CHECKPOINT, PACK_ROOT, TEST_CHECKPOINT, Host, phase
from .server import Server

SAMPLES = PACK_ROOT / "example_workflows" / "input"
# What command (1) changes: the held-out sample photo, and the same photo with a transparent rectangle, whose
# region the command cuts out at the demo model's own 128 px, changes and stitches back. Named, not the folder:
# the example graphs' other inputs (a 1024×768 photo for crop and stitch, its mask, a strength gradient) are
# not photos to change, and the large one would take minutes on two cores.
DEMO_PHOTOS = ("sample.png", "sample_regional.png")
REGION_CROP = ("--crop-size", "128")
PROMPT = ("--prompt", "a photo", "--negative", "blurry, low quality")
# The demo model ignores the text (its cross-attention outputs are zero), so guidance changes nothing but the
# cost: at cfg 1 ComfyUI makes one model call a step instead of two.
CFG = ("--cfg", "1")
SHEET_STRENGTHS = "0,0.2,0.4,0.6,0.8"  # denoise 0 is the input through the VAE and back


def demo_graph(image_name: str, seed: int) -> dict:
    graph = json.loads((PACK_ROOT / "example_workflows" / "api" / "img2img.json").read_text(encoding="utf-8"))
    graph["1"]["inputs"]["ckpt_name"] = TEST_CHECKPOINT
    graph["4"]["inputs"]["image"] = image_name
    graph["6"]["inputs"]["seed"] = seed
    return graph


def _cli_path(host: Host) -> Path:
    """A folder that puts cli/ on the host's path as its package, img2img_cli, without installing it (the build
    installed the `cli` extra's few dependencies)."""
    cli_path = host.root / "cli-path"
    cli_path.mkdir(exist_ok=True)
    link = cli_path / "img2img_cli"
    if link.is_symlink() or link.exists():
        link.unlink()  # also when it exists: the clone may have moved since
    link.symlink_to(PACK_ROOT / "cli", target_is_directory=True)
    return cli_path


def _run_cli(host: Host, arguments: list[str]) -> int:
    env = {**os.environ, "PYTHONPATH": str(_cli_path(host))}
    cli = subprocess.Popen([str(host.python), "-m", "img2img_cli", *arguments], cwd=PACK_ROOT, env=env)
    try:
        return cli.wait()
    except KeyboardInterrupt:
        # The CLI got the Ctrl-C as well and stops its jobs on the server; subprocess.run would kill it
        # after 0.25 s, before it could.
        return cli.wait()


def _outputs(folder: Path) -> list[Path]:
    manifest = folder / "manifest.jsonl"
    if not manifest.exists():
        return []
    return [folder / json.loads(line)["output"] for line in manifest.read_text(encoding="utf-8").splitlines()]


def run_demo(host: Host) -> int:
    """README command (1): img2img of the sample photos at denoise 0.6, and a strength sheet of the first one
    (denoise 0, 0.2, 0.4, 0.6, 0.8 side by side), on the demo model, through one host server it starts."""
    out = host.root / "demo-output"
    # Fresh every time: the command's resume would skip the photos done by an earlier build's model.
    shutil.rmtree(out, ignore_errors=True)
    with Server(host, host.root / "demo-server") as server:
        common = [*PROMPT, *CFG, "--checkpoint", DEMO_CHECKPOINT, "--per-image-seeds", "--server", server.url]
        with phase("img2img of the sample photos"):
            photos = [str(SAMPLES / name) for name in DEMO_PHOTOS]
            code = _run_cli(host, ["run", *photos, *common, *REGION_CROP, "--denoise", "0.6", "--out", str(out)])
        if code == 0:
            with phase("strength sheet"):
                sheet = ["sweep", str(SAMPLES / "sample.png"), *common, "--denoise", SHEET_STRENGTHS]
                code = _run_cli(host, [*sheet, "--out", str(out / "sheet")])
    for path in _outputs(out):
        print(f"img2img output: {path}")
    for path in _outputs(out / "sheet"):
        print(f"strength sheet (denoise 0, 0.2, 0.4, 0.6, 0.8): {path}")
    print(f"manifests: {out / 'manifest.jsonl'}, {out / 'sheet' / 'manifest.jsonl'}")
    return code
