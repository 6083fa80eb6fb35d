"""The Comfy registry's own checks with comfy-cli from PyPI: `comfy node validate`, and the archive that
`comfy node pack` makes for `comfy node publish`, installed as `comfy node install` installs it."""

from __future__ import annotations

import subprocess
import zipfile

import pytest

from pack_install import PACK_FOLDER, assert_serves_the_pack, git, tracked_copy

# What ComfyUI needs of the pack (and cli/, which pyproject.toml builds the `img2img` command from).
ARCHIVE_TOP_LEVEL = {
    "__init__.py",
    "nodes",
    "js",
    "example_workflows",
    "cli",
    "pyproject.toml",
    "requirements.txt",
    "README.md",
    "LICENSE",
    "icon.png",
}


@pytest.fixture
def checkout(tmp_path):
    return tracked_copy(tmp_path / PACK_FOLDER)


def comfy(comfy_host, checkout, *args: str) -> subprocess.CompletedProcess[str]:
    """comfy-cli in the checkout, with a home of its own (it keeps its settings there) and no prompts."""
    command = [str(comfy_host.registry_venv / "bin" / "comfy"), "--skip-prompt", "--no-enable-telemetry", *args]
    home = checkout.parent / "home"
    home.mkdir(exist_ok=True)
    run = subprocess.run(
        command, cwd=checkout, env={"HOME": str(home), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def test_comfy_node_validate_passes_without_a_warning(comfy_host, checkout):
    output = comfy(comfy_host, checkout, "node", "validate")
    text = output.stdout + output.stderr
    assert "All validation checks passed" in text, text
    assert "warning" not in text.lower(), text


def test_the_packed_archive_holds_what_comfyui_runs_and_nothing_else(comfy_host, checkout):
    # Litter a run of the pack or the tests leaves beside the tracked files.
    for litter in ("nodes/__pycache__/inputs.cpython-311.pyc", "__pycache__/__init__.cpython-311.pyc"):
        (checkout / litter).parent.mkdir(parents=True, exist_ok=True)
        (checkout / litter).write_bytes(b"litter")
    comfy(comfy_host, checkout, "node", "pack")

    with zipfile.ZipFile(checkout / "node.zip") as archive:
        names = set(archive.namelist())
        assert {name.split("/")[0] for name in names} == ARCHIVE_TOP_LEVEL
        assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
        tracked = set(git("ls-files", cwd=checkout).split())
        needed = {name for name in tracked if name.split("/")[0] in ARCHIVE_TOP_LEVEL}
    assert names == needed
    assert not any(name.startswith(("models/", "tests/", "scripts/", "bench/", "docs/")) for name in names)


def test_the_archive_alone_runs_in_a_fresh_comfyui(comfy_host, checkout, fresh_host, tmp_path):
    """Unpacked into custom_nodes/<node id>, as `comfy node install` does with the registry's copy."""
    comfy(comfy_host, checkout, "node", "pack")
    with zipfile.ZipFile(checkout / "node.zip") as archive:
        archive.extractall(fresh_host.comfyui / "custom_nodes" / PACK_FOLDER)
    assert_serves_the_pack(fresh_host, tmp_path / "server")


def test_the_registry_reads_the_frontend_range_from_the_commands_dependencies(comfy_host, checkout):
    """pyproject.toml's dependencies are the `img2img` command's; comfy-cli still finds the frontend range there
    (the only place it reads it from) and publishes the rest."""
    code = (
        "from comfy_cli.registry.config_parser import extract_node_configuration as read\n"
        "project = read('pyproject.toml').project\n"
        "print(project.supported_comfyui_frontend_version)\n"
        "print(*project.dependencies)\n"
    )
    python = str(comfy_host.registry_venv / "bin" / "python")
    output = subprocess.run([python, "-c", code], cwd=checkout, capture_output=True, text=True, check=True).stdout
    frontend, dependencies = output.splitlines()
    assert frontend == ">=1.32.9"
    assert {name.split(">")[0] for name in dependencies.split()} == {"requests", "websocket-client", "tqdm"}
