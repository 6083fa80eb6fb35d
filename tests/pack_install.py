"""Helpers of tests/install/: the pack installed as users install it, into ComfyUI trees beside the test host.

Each install goes into a fresh ComfyUI: a copy of the host's tree with core's own custom_nodes/ (the host's
link to this checkout left out) and the host's models and virtual environment linked in. What is installed
is the checkout's tracked files as they are on disk, uncommitted edits included, in a git repository of
their own: what the next commit would publish.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

from host_servers import host_harness
from pack_under_test import PACK_ROOT

PACK_FOLDER = "comfyui-img2img"


def pack_node_ids() -> set[str]:
    """The keys of NODE_CLASS_MAPPINGS in the pack's __init__.py, read without importing ComfyUI."""
    tree = ast.parse((PACK_ROOT / "__init__.py").read_text(encoding="utf-8"))
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and getattr(statement.targets[0], "id", None) == "NODE_CLASS_MAPPINGS":
            return {key.value for key in statement.value.keys}
    raise AssertionError("no NODE_CLASS_MAPPINGS in __init__.py")


def git(*args: str, cwd: Path) -> str:
    identity = ["-c", "user.name=img2img tests", "-c", "user.email=tests@localhost", "-c", "init.defaultBranch=main"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def tracked_copy(destination: Path) -> Path:
    """The checkout's tracked files as on disk, committed in a new repository at ``destination``."""
    names = git("ls-files", "-z", cwd=PACK_ROOT).split("\0")
    for name in filter(None, names):
        source = PACK_ROOT / name
        if source.is_file():  # a tracked file deleted on disk is left out, as the next commit would
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    git("init", "-q", cwd=destination)
    git("add", "--all", cwd=destination)
    git("commit", "-q", "-m", "the checkout under test", cwd=destination)
    return destination


def make_fresh_host(comfy_host: host_harness.Host, root: Path) -> host_harness.Host:
    """A ComfyUI of its own: core's tree with an empty custom_nodes/ (core's examples only), sharing the host's
    environment and models."""
    host = host_harness.Host(root)
    host.root.mkdir()
    (host.root / "venv").symlink_to(comfy_host.root / "venv", target_is_directory=True)

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        skip = {"__pycache__"}
        if here == comfy_host.comfyui:
            skip |= {"models", "input", "output", "temp", "user"}
        if here == comfy_host.comfyui / "custom_nodes":
            skip |= {name for name in names if (here / name).is_symlink()}  # the host's link to this checkout
        return skip & set(names)

    shutil.copytree(comfy_host.comfyui, host.comfyui, symlinks=True, ignore=ignore)
    (host.comfyui / "models").symlink_to(comfy_host.comfyui / "models", target_is_directory=True)
    assert not (host.comfyui / "custom_nodes" / PACK_FOLDER).exists()
    return host


def assert_serves_the_pack(host: host_harness.Host, workdir: Path) -> None:
    """Starts the host's ComfyUI and checks it loaded the pack from custom_nodes/comfyui-img2img: every node,
    the plan line's script and the plan route."""
    with host_harness.Server(host, workdir) as server:
        info = server.get_json("/object_info")
        from_pack = {name for name, node in info.items() if node.get("python_module") == f"custom_nodes.{PACK_FOLDER}"}
        log = server.log()
        assert from_pack == pack_node_ids(), log[-4000:]
        assert f"/extensions/{PACK_FOLDER}/img2img.js" in server.get_json("/extensions")
        plan = server.get_json("/img2img/plan?steps=20&denoise=0.5&strength_mode=steps_x_denoise&scheduler=normal")
        assert "steps 11–20 of 20" in plan["text"], plan
    assert "IMPORT FAILED" not in "\n".join(line for line in log.splitlines() if PACK_FOLDER in line), log[-4000:]
