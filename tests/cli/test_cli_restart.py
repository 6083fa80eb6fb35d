"""``img2img run`` when its only server is killed mid-folder and restarted: the rerun finishes the folder.

Every input ends up done exactly once: one manifest line and one whole picture each, none twice, none missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from img2img_cli.main import main
from PIL import Image

from cli_progress import manifest_lines, wait_until
from host_servers import host_harness

IMAGES = 6
KILL_AFTER = 2  # outputs in the manifest when the server is killed
# Small pictures and few steps keep an image around a second on a CPU: the kill lands while images are left.
ARGS = ["--prompt", "a lighthouse", "--denoise", "1", "--steps", "4", "--per-image-seeds"]


def test_a_killed_and_restarted_server_gets_the_rest_of_the_folder_each_image_once(
    comfy_host, checkpoint, make_images, cli_env, tmp_path, capsys
):
    inputs = make_images(tmp_path / "in", [(64, 64), (96, 64), (64, 96), (64, 64), (80, 48), (64, 64)])
    assert len(inputs) == IMAGES
    out, workdir = tmp_path / "out", tmp_path / "server"
    victim = host_harness.Server(comfy_host, workdir).start()
    restarted = None
    try:
        command = [sys.executable, "-m", "img2img_cli", "run", str(tmp_path / "in"), *ARGS]
        command += ["--checkpoint", checkpoint, "--out", str(out), "--server", victim.url]
        cli = subprocess.Popen(command, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: len(manifest_lines(out)) >= KILL_AFTER, 180, f"{KILL_AFTER} outputs in the manifest")
            os.killpg(victim.process.pid, signal.SIGKILL)
            victim.process.wait()
            output, _ = cli.communicate(timeout=60)
        finally:
            cli.kill()
        first = manifest_lines(out)
        # Killed mid-folder: the images not done count as failed, the exit status says how many.
        assert KILL_AFTER <= len(first) < IMAGES, output
        assert cli.returncode == IMAGES - len(first), output
        assert f"server {victim.url} is gone" in output and "no server left to run it" in output

        # The same port, folders and models: a restart as a supervisor would do it.
        restarted = host_harness.Server(comfy_host, workdir, port=victim.port).start()
        capsys.readouterr()
        rerun = ["run", str(tmp_path / "in"), *ARGS, "--checkpoint", checkpoint, "--out", str(out)]
        assert main([*rerun, "--server", restarted.url]) == 0
        assert f"{IMAGES - len(first)} done, {len(first)} skipped, 0 failed" in capsys.readouterr().out
    finally:
        victim.stop()
        if restarted is not None:
            restarted.stop()

    lines = manifest_lines(out)
    assert lines[: len(first)] == first  # the first run's lines stay as they were
    assert sorted(line["input"] for line in lines) == [str(path) for path in inputs]  # each input once
    assert [line["seed"] for line in sorted(lines, key=lambda line: line["input"])] == list(range(IMAGES))
    assert len({line["prompt_id"] for line in lines}) == IMAGES
    # One picture per input under its own name (no "_1" second copy), and nothing else: no partial file.
    outputs = sorted(line["output"] for line in lines)
    assert outputs == sorted(path.name for path in inputs)
    assert sorted(path.name for path in out.iterdir()) == sorted([*outputs, "manifest.jsonl"])
    for line in lines:
        source = Path(line["input"])
        with Image.open(out / line["output"]) as picture, Image.open(source) as original:
            picture.load()  # a truncated file fails here
            assert picture.size == original.size
