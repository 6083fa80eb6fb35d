"""Runs into one output folder: claims on inputs (cli/claims.py), with real processes and real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from img2img_cli.claims import CLAIMS_FOLDER, STALE_S, Claims, claim_name
from PIL import Image

from cli_progress import manifest_lines, wait_until

FAST = ["--prompt", "a lighthouse", "--denoise", "0.5", "--steps", "2", "--per-image-seeds"]


def start_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "img2img_cli", "run", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def assert_each_input_once(out: Path, inputs: list[Path]) -> None:
    lines = manifest_lines(out)
    assert sorted(line["input"] for line in lines) == [str(path) for path in inputs]
    outputs = sorted(line["output"] for line in lines)
    assert outputs == sorted(path.name for path in inputs)  # no "_1" copy made by the other run
    assert sorted(path.name for path in out.iterdir()) == sorted([*outputs, "manifest.jsonl"])  # claims gone
    for line in lines:
        with Image.open(out / line["output"]) as picture:
            picture.load()


def test_two_runs_started_at_once_into_one_folder_do_each_input_once(
    server, start_server, checkpoint, make_images, cli_env, tmp_path
):
    other = start_server()
    inputs = make_images(tmp_path / "in", [(64, 64)] * 8)
    out = tmp_path / "out"
    common = [str(tmp_path / "in"), *FAST, "--checkpoint", checkpoint, "--out", str(out)]
    runs = [start_cli(cli_env, *common, "--server", url) for url in (server.url, other.url)]
    outputs = []
    for run in runs:
        output, _ = run.communicate(timeout=300)
        outputs.append(output)
        assert run.returncode == 0, output
    assert_each_input_once(out, inputs)
    # Between them, every input once: what one did, the other counted as skipped.
    done = [int(next(line for line in o.splitlines() if " done, " in line).split(": ")[1].split()[0]) for o in outputs]
    assert sum(done) == len(inputs), outputs


def test_the_claims_of_a_killed_run_are_taken_over(start_server, checkpoint, make_images, cli_env, tmp_path):
    fresh = start_server()  # its first job loads the model: the killed run holds a claim meanwhile
    inputs = make_images(tmp_path / "in", [(64, 64)] * 3)
    out = tmp_path / "out"
    common = [str(tmp_path / "in"), *FAST, "--checkpoint", checkpoint, "--out", str(out), "--server", fresh.url]
    killed = start_cli(cli_env, *common)
    try:
        wait_until(lambda: any((out / CLAIMS_FOLDER).glob("*.claim")), 60, "a claim of the first run")
        killed.send_signal(signal.SIGKILL)
        killed.wait()  # reaped: its pid is no longer alive
    finally:
        killed.kill()
    assert list((out / CLAIMS_FOLDER).glob("*.claim"))  # left behind by the killed run
    second = start_cli(cli_env, *common)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    assert "took over a claim" in output
    assert_each_input_once(out, inputs)


def test_a_live_claim_of_another_host_is_left_alone_and_a_stale_one_taken_over(tmp_path):
    claims = Claims(tmp_path)
    try:
        folder = tmp_path / CLAIMS_FOLDER
        live, stale = folder / f"{claim_name('a')}.claim", folder / f"{claim_name('b')}.claim"
        for path in (live, stale):
            path.write_text(json.dumps({"host": "another-machine", "pid": os.getpid(), "run": path.stem}))
        old = time.time() - STALE_S - 60
        os.utime(stale, (old, old))
        assert not claims.claim("a") and claims.claim("b")
        assert json.loads(stale.read_text())["run"] == claims.owner["run"]
        claims.release("b")
        assert not stale.exists() and live.exists()
    finally:
        claims.close()
    assert folder.exists()  # the other host's claim keeps it
