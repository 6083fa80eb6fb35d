"""``img2img run`` against real ComfyUI servers with the pack: batches, resume, Ctrl-C, a dying server, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from img2img_cli.local import load_harness
from img2img_cli.main import main
from PIL import Image

from cli_progress import manifest_lines, wait_until
from pack_under_test import PACK_ROOT

# Small pictures and one model step keep an image well under a second on a CPU.
FAST = ["--prompt", "a lighthouse", "--denoise", "0.5", "--steps", "2"]
SIZES = [(64, 64), (96, 64), (64, 96), (128, 64), (80, 48)]


def pictures(out: Path) -> list[str]:
    return sorted(path.name for path in out.iterdir() if path.name != "manifest.jsonl")


def start_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``python -m img2img_cli run ARGS`` in its own process, for the tests that signal it or kill a server.

    Ctrl-C is the default in the child even where the suite itself runs with it ignored (a shell's
    background job, e.g. under nohup, ignores SIGINT and its children inherit that): the command is
    tested as a terminal runs it."""
    command = [sys.executable, "-m", "img2img_cli", "run", *args]
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def running(server) -> bool:
    return bool(server.get_json("/queue")["queue_running"])


def test_a_folder_of_five_images_end_to_end(server, checkpoint, make_images, tmp_path, capsys):
    inputs = make_images(tmp_path / "in", SIZES)
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "in"), *FAST, "--seed", "5", "--per-image-seeds", "--checkpoint", checkpoint]
    assert main([*args, "--out", str(out), "--server", server.url]) == 0
    lines = manifest_lines(out)
    assert [line["input"] for line in lines] == [str(path) for path in inputs]
    assert [line["seed"] for line in lines] == [5, 6, 7, 8, 9]
    assert pictures(out) == sorted(f"image{number:02d}.png" for number in range(5))
    for line, size in zip(lines, SIZES, strict=True):
        with Image.open(out / line["output"]) as picture:
            assert picture.size == size and "parameters" in picture.text
        assert line["parameters"]["steps"] == 2 and line["parameters"]["checkpoint"] == checkpoint
        assert line["server"] == server.url and line["timings"]["total_s"] > 0
    assert "5 done, 0 skipped, 0 failed" in capsys.readouterr().out


def test_a_rerun_does_only_the_inputs_not_yet_in_the_manifest(server, checkpoint, make_images, tmp_path, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    args = ["run", str(folder), *FAST, "--per-image-seeds", "--checkpoint", checkpoint, "--out", str(out)]
    make_images(folder, SIZES[:2])
    assert main([*args, "--server", server.url]) == 0
    first = manifest_lines(out)
    make_images(folder, SIZES[2:], start=2)
    capsys.readouterr()
    assert main([*args, "--server", server.url]) == 0
    lines = manifest_lines(out)
    assert lines[:2] == first and len(lines) == 5
    assert [Path(line["input"]).name for line in lines[2:]] == ["image02.png", "image03.png", "image04.png"]
    assert [line["seed"] for line in lines] == [0, 1, 2, 3, 4]
    assert "3 done, 2 skipped" in capsys.readouterr().out
    # Another parameter is another picture, next to the first one.
    args = ["run", str(folder / "image00.png"), *args[2:], "--cfg", "3"]
    assert main([*args, "--server", server.url]) == 0
    assert manifest_lines(out)[5]["output"] == "image00_1.png" and len(pictures(out)) == 6


def test_ctrl_c_stops_the_job_on_the_server_and_leaves_the_manifest_whole(
    server, checkpoint, make_images, cli_env, tmp_path
):
    folder, out = tmp_path / "in", tmp_path / "out"
    make_images(folder, [(64, 64), (64, 64)])
    common = ["--checkpoint", checkpoint, "--out", str(out), "--server", server.url]
    assert main(["run", str(folder / "image00.png"), *FAST, *common]) == 0
    # 10000 steps from pure noise: far longer than the test, so only the interrupt can end it.
    cli = start_cli(cli_env, str(folder), *FAST[:2], "--denoise", "1", "--steps", "10000", *common)
    try:
        wait_until(lambda: running(server), 60, "the long job starting")
        time.sleep(1.0)  # into the sampler's steps
        cli.send_signal(signal.SIGINT)
        output, _ = cli.communicate(timeout=90)
    finally:
        cli.kill()
    assert cli.returncode == 130, output
    assert "Ctrl-C" in output and "interrupted" in output
    assert not running(server) and not server.get_json("/queue")["queue_pending"], output
    assert server.get_json("/system_stats")["system"]
    [line] = manifest_lines(out)  # the first run's line, whole; nothing from the stopped one
    assert pictures(out) == [line["output"]]


def test_a_server_that_dies_hands_its_image_to_the_others(
    server, start_server, checkpoint, make_images, cli_env, tmp_path
):
    victim = start_server()
    inputs = make_images(tmp_path / "in", [(64, 64)] * 4)
    out = tmp_path / "out"
    # The victim's first job loads the model first: it is caught with that job in flight.
    args = [str(tmp_path / "in"), *FAST[:2], "--denoise", "1", "--steps", "4", "--checkpoint", checkpoint]
    cli = start_cli(cli_env, *args, "--out", str(out), "--server", victim.url, "--server", server.url)
    try:
        wait_until(lambda: running(victim), 60, "a job on the second server")
        os.killpg(victim.process.pid, signal.SIGKILL)
        output, _ = cli.communicate(timeout=180)
    finally:
        cli.kill()
    assert cli.returncode == 0, output
    assert f"server {victim.url} is gone" in output and "goes back to the queue" in output
    lines = manifest_lines(out)
    assert sorted(line["input"] for line in lines) == [str(path) for path in inputs]
    assert {line["server"] for line in lines} == {server.url}
    assert pictures(out) == sorted(line["output"] for line in lines)


def test_a_bad_input_fails_alone_with_a_message_naming_it(server, checkpoint, make_images, tmp_path, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    make_images(folder, [(64, 64), (64, 64)])
    (folder / "broken.png").write_text("this is no picture")
    code = main(["run", str(folder), *FAST, "--checkpoint", checkpoint, "--out", str(out), "--server", server.url])
    captured = capsys.readouterr()
    assert code == 1
    [failure] = [line for line in captured.err.splitlines() if line.startswith("FAILED")]
    assert failure.startswith(f"FAILED {folder / 'broken.png'}: Img2ImgLoadImage (node ") and "input 'image'" in failure
    assert sorted(Path(line["input"]).name for line in manifest_lines(out)) == ["image00.png", "image01.png"]
    assert "2 done, 0 skipped, 1 failed" in captured.out


def test_without_server_it_starts_the_local_host_with_a_models_folder(checkpoint, make_images, tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    (models / "my-model.safetensors").symlink_to(load_harness(PACK_ROOT).default_host().checkpoint)
    [image] = make_images(tmp_path / "in", [(64, 64)])
    out = tmp_path / "out"
    args = ["run", str(image), *FAST, "--checkpoint", "my-model.safetensors", "--models-dir", str(models)]
    code = main([*args, "--out", str(out)])
    assert code == 0, capsys.readouterr()
    [line] = manifest_lines(out)
    assert line["parameters"]["checkpoint"] == "my-model.safetensors" and line["server"].startswith("http://127.0.0.1:")


def test_sweep_saves_one_labelled_contact_sheet_per_image(server, checkpoint, make_images, tmp_path):
    make_images(tmp_path / "in", [(64, 64)])
    out = tmp_path / "out"
    args = ["sweep", str(tmp_path / "in"), "--prompt", "a lighthouse", "--steps", "2", "--checkpoint", checkpoint]
    assert main([*args, "--denoise", "0, 0.5, 1", "--seeds", "1,2", "--out", str(out), "--server", server.url]) == 0
    [line] = manifest_lines(out)
    assert line["parameters"]["denoise"] == [0, 0.5, 1] and line["parameters"]["sweep_seeds"] == [1, 2]
    with Image.open(out / line["output"]) as sheet:
        # Three 64-pixel columns and two rows, with room for the labels above and to the left.
        assert sheet.width > 3 * 64 + 40 and 2 * 64 < sheet.height < 3 * 64
        # The labels are dark text on the white margin left of the first row.
        margin = np.asarray(sheet.convert("L").crop((0, sheet.height - 2 * 64, 20, sheet.height - 64)))
        assert margin.min() < 128 and margin.max() == 255
