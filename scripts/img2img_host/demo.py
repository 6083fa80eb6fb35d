"""README command (1): the img2img CLI on the bundled sample images; and the example graph it starts from."""

from __future__ import annotations

import json
import os
import subprocess

from .layout import PACK_ROOT, TEST_CHECKPOINT, Host, phase


def demo_graph(image_name: str, seed: int) -> dict:
    graph = json.loads((PACK_ROOT / "example_workflows" / "api" / "img2img.json").read_text())
    graph["1"]["inputs"]["ckpt_name"] = TEST_CHECKPOINT
    graph["4"]["inputs"]["image"] = image_name
    graph["6"]["inputs"]["seed"] = seed
    return graph


def run_demo(host: Host) -> int:
    """README command (1): the img2img CLI on the bundled sample images, on a host server it starts."""
    # The CLI runs from this checkout without installing it: a link named as its package puts cli/ on
    # the host's path (the build installed the `cli` extra's few dependencies).
    cli_path = host.root / "cli-path"
    cli_path.mkdir(exist_ok=True)
    link = cli_path / "img2img_cli"
    if link.is_symlink() or link.exists():
        link.unlink()  # also when it exists: the clone may have moved since
    link.symlink_to(PACK_ROOT / "cli", target_is_directory=True)
    out = host.root / "demo-output"
    command = [
        str(host.python),
        "-m",
        "img2img_cli",
        "run",
        str(PACK_ROOT / "example_workflows" / "input"),
        "--prompt",
        "a watercolor painting of hills at sunset",
        "--negative",
        "blurry, low quality",
        "--denoise",
        "0.6",
        "--per-image-seeds",
        "--out",
        str(out),
    ]
    with phase("img2img of the sample images"):
        cli = subprocess.Popen(command, cwd=PACK_ROOT, env={**os.environ, "PYTHONPATH": str(cli_path)})
        try:
            code = cli.wait()
        except KeyboardInterrupt:
            # The CLI got the Ctrl-C as well and stops its job and its server; subprocess.run would kill
            # it after 0.25 s and leave that server running.
            code = cli.wait()
    manifest = out / "manifest.jsonl"
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            print(f"img2img output: {out / json.loads(line)['output']}")
        print(f"manifest: {manifest}")
    return code
