"""``img2img run --ray local``: a local Ray instance whose two workers each own a ComfyUI server of the test host.

The driver is killed mid-folder, and the same command run again finishes it; in that second run one worker's
server is SIGKILLed (Ray restarts the worker with a new server and retries its image): every input done
exactly once, with one decodable picture each.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from PIL import Image

from cli_progress import manifest_lines, wait_until

IMAGES = 8
# Small pictures and few steps: an image takes about a second on a CPU, so the kills land mid-folder.
ARGS = ["--prompt", "a lighthouse", "--denoise", "1", "--steps", "4", "--per-image-seeds"]
WORKER_LINE = re.compile(r"worker (\d+): ComfyUI pid (\d+) at (\S+)")


class Cli:
    """The command in its own session (the driver, and the Ray instance it starts), its output read as it comes."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def workers(self) -> dict[int, tuple[int, str]]:
        return {int(m[1]): (int(m[2]), m[3]) for m in map(WORKER_LINE.search, self.lines) if m}

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self.reader.join(10)
        return code

    def kill(self) -> None:
        """The driver and everything of its session: Ray's processes, and through them the workers' servers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def test_two_ray_workers_a_killed_server_and_a_killed_driver_each_image_once(
    comfy_host, checkpoint, make_images, cli_env, tmp_path
):
    inputs = make_images(tmp_path / "in", [(64, 64), (64, 48), (48, 64), (64, 64)] * 2)
    assert len(inputs) == IMAGES
    out = tmp_path / "out"
    env = {**cli_env, "RAY_USAGE_STATS_ENABLED": "0"}
    command = [sys.executable, "-m", "img2img_cli", "run", str(tmp_path / "in"), *ARGS, "--checkpoint", checkpoint]
    command += ["--out", str(out), "--ray", "local", "--workers", "2", "--cpu", "--comfyui", str(comfy_host.comfyui)]

    first = Cli(command, env)
    try:
        wait_until(lambda: len(first.workers()) == 2, 240, "two workers with their servers\n" + first.output())
        wait_until(lambda: len(manifest_lines(out)) >= 2, 180, "two images done")
    finally:
        first.kill()  # the driver, mid-folder, with an image in flight on each worker
    before = manifest_lines(out)
    assert 2 <= len(before) < IMAGES, first.output()

    second = Cli(command, env)
    try:
        wait_until(lambda: len(second.workers()) == 2, 240, "two workers again\n" + second.output())
        wait_until(lambda: len(manifest_lines(out)) >= len(before) + 1, 180, "an image done by the second run")
        victim_pid, _ = second.workers()[1]
        os.kill(victim_pid, signal.SIGKILL)  # the server, not its worker: the worker finds it gone and restarts
        assert second.wait(300) == 0, second.output()
    finally:
        second.kill()
    output = second.output()
    assert f"{IMAGES - len(before)} done, {len(before)} skipped, 0 failed" in output, output
    assert "took over a claim" in output  # the killed driver's claims on its images in flight

    lines = manifest_lines(out)
    assert lines[: len(before)] == before
    assert sorted(line["input"] for line in lines) == [str(path) for path in inputs]  # each input once
    assert len({line["prompt_id"] for line in lines}) == IMAGES
    # The victim's image was retried on its worker's new server, which neither worker had at the start.
    started = {url for _, url in second.workers().values()}
    assert {line["server"].split(" on ")[0] for line in lines[len(before) :]} - started, output
    outputs = sorted(line["output"] for line in lines)
    assert outputs == sorted(path.name for path in inputs)  # no "_1" second copy of a retried image
    assert sorted(path.name for path in out.iterdir()) == sorted([*outputs, "manifest.jsonl"])
    for line in lines:
        with Image.open(out / line["output"]) as picture, Image.open(Path(line["input"])) as original:
            picture.load()  # a truncated file fails here
            assert picture.size == original.size
