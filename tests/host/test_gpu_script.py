"""`python3 scripts/host.py gpu`, the prepared script for the GPU machine, kept from rotting between GPU runs.

Its dry run (the same checks on this CPU, small: the test checkpoint, 64² and 128², N = 4) runs here in a child
process, and its figures.json and figures.md must hold every part with sane numbers. The payload's plan (which
wheels the GPU image lacks) is checked on the distributions that run imported, without downloading anything;
--prepare itself (downloads, a 15 s xz archive) runs by hand, and prints what travels.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest

from img2img_host import gpu
from img2img_host.build import PACK_DIR_NAME
from img2img_host.gpu_report import SECTIONS
from pack_under_test import PACK_ROOT

PARTS = ("exactness", "floor", "speed", "memory", "tiled")
GRAPHS = ("pack accelerate", "pack", "core KSamplerAdvanced", "core KSampler(denoise)")
# What the GPU image lacks of ComfyUI's imports (KINDS.md's list): a new one here means a wheel to carry.
CARRIED = {"torchsde", "trampoline"}


@pytest.fixture(scope="module")
def dry_run(comfy_host, tmp_path_factory):
    """The dry run's exit status, figures.json, figures.md and log (about 1.5 minutes on 2 idle cores)."""
    out = tmp_path_factory.mktemp("gpu-dry-run")
    command = [sys.executable, str(PACK_ROOT / "scripts" / "host.py"), "gpu", "--dry-run", "--out", str(out)]
    done = subprocess.run(command, cwd=PACK_ROOT, capture_output=True, text=True, timeout=600)
    figures = json.loads((out / "figures.json").read_text(encoding="utf-8"))
    return done, figures, (out / "figures.md").read_text(encoding="utf-8"), (out / "gpu.log").read_text()


def test_the_dry_run_ends_well_and_holds_every_part(dry_run):
    done, figures, markdown, log = dry_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert figures["profile"] == "dry" and figures["machine"]["device"] == "cpu"
    for name in PARTS:
        part = figures["parts"][name]
        # A slow machine may stop a part at its cap, after its first unit; a failure is a rotten script.
        assert part["status"] in ("done", "stopped"), (name, part.get("error"))
        assert part["seconds"] > 0
    assert all(f"## {title}" in markdown for title, _ in SECTIONS.values())
    assert "no CUDA" in markdown and "exactness: " in log


def test_the_dry_run_finds_the_pack_equal_to_core(dry_run):
    part = dry_run[1]["parts"]["exactness"]
    assert part["tolerance"] == 1e-4 and "float32" in part["tolerance_why"]
    assert part["cells"] and all(cell["max_abs"] <= part["tolerance"] for cell in part["cells"])
    assert part["within"] == len(part["cells"])
    if part["status"] == "done":
        assert len(part["cells"]) == part["planned"] == 2 * 4 * 3 * 3
    # The comparison can fail: core one step later is far off.
    assert part["sensitivity"]["max_abs"] > 100 * part["tolerance"]
    assert part["clip_tokens_as_transformers_4"] is True
    assert {cell["mask"] for cell in part["cells"]} <= {"none", "SetLatentNoiseMask"}
    assert all(cell["model_steps"] > 0 for cell in part["cells"])


def test_the_dry_run_times_the_step_beside_its_floor(dry_run):
    part = dry_run[1]["parts"]["floor"]
    assert part["matmul_rate"]["bfloat16"] > 1e9
    assert part["rows"] and part["rows"][0]["size"] == 64
    for row in part["rows"]:
        assert row["flops_per_step"] > 1e9 and 0 < row["floor_s"] < row["model_step_s"]
        assert 0 < row["unet_step_s"] <= row["model_step_s"] and row["accelerated_model_step_s"] > 0


def test_the_dry_run_times_the_four_graphs(dry_run):
    part = dry_run[1]["parts"]["speed"]
    assert part["steps"] == 4 and part["rows"]
    for row in part["rows"]:
        assert row["size"] in (64, 128) and row["runs"] >= 1
        assert set(row["seconds"]) == set(GRAPHS) and all(value > 0 for value in row["seconds"].values())
        assert all(peak is None for peak in row["peak_mib"].values())  # no VRAM on a CPU


def test_the_dry_run_states_that_a_cpu_has_no_vram_and_refines_in_tiles(dry_run):
    memory, tiled = dry_run[1]["parts"]["memory"], dry_run[1]["parts"]["tiled"]
    assert "no CUDA" in memory["note"] and memory["graphs"]
    assert all(graph["seconds"] > 0 and graph["peak_mib"] is None for graph in memory["graphs"].values())
    assert (tiled["width"], tiled["height"]) == (256, 256) and tiled["tile"] == 64 and tiled["seconds"] > 0


def test_the_payload_carries_exactly_what_the_gpu_image_lacks(dry_run):
    """The plan that --prepare downloads, from the distributions the dry run imported (without downloading)."""
    imported = dry_run[1]["imports"]
    assert {"torch", "transformers", "torchsde"} <= set(imported)
    planned = {pin.split("==")[0] for pin in gpu.wheel_plan(imported)}
    assert planned == CARRIED, "a new import: carry its wheel (gpu.py) or check that the GPU image has it"


def test_the_wheel_plan_skips_the_image_the_stub_the_optional_and_the_alternatives():
    imported = {"torch": "2.14.1", "PyYAML": "6", "av": "18", "chardet": "7", "pydantic_core": "2", "torchsde": "0.2.6"}
    assert gpu.wheel_plan(imported) == ["torchsde==0.2.6"]
    assert gpu.wheel_plan({"Some_New.Package": "1.0"}) == ["some-new-package==1.0"]


def test_the_tree_leaves_room_for_the_payload():
    """What travels to the GPU machine besides .gpu/ (tracked and untracked files), and the payload as the last
    --prepare measured it, stay within the device tool's 64 MiB."""
    assert gpu.tree_bytes() + gpu.PAYLOAD_ALLOWANCE <= gpu.CARRY_LIMIT


def test_the_tree_archive_leaves_out_models_outputs_tests_and_byte_code(tmp_path):
    keep = gpu.tree_member("ComfyUI")
    names = ["ComfyUI/models", "ComfyUI/output", "ComfyUI/tests-unit", "ComfyUI/comfy/__pycache__/a.pyc",
             f"ComfyUI/custom_nodes/{PACK_DIR_NAME}"]  # fmt: skip
    assert all(keep(tarfile.TarInfo(name)) is None for name in names)
    kept = keep(tarfile.TarInfo("ComfyUI/comfy/samplers.py"))
    assert kept is not None and kept.uid == 0 and kept.uname == ""
