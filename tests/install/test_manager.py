"""ComfyUI-Manager's install from a git URL, with the real comfyui-manager from PyPI (its cm-cli).

The URL is a bare clone of the checkout served as file://localhost/... (Manager takes only URLs with a
host; that form works offline). cm-cli finds ComfyUI through COMFYUI_PATH and installs into its
custom_nodes/; it runs in the host's environment, where it pip-installs the pack's requirements.txt.
Its exit code says nothing (it exits 0 when an install failed): the folder and the server are the verdict.
"""

from __future__ import annotations

import os
import subprocess

from pack_install import PACK_FOLDER, assert_serves_the_pack, git, pack_node_ids, tracked_copy
from pack_under_test import PACK_ROOT


def test_manager_installs_from_a_git_url_and_comfyui_loads_every_node(fresh_host, tmp_path):
    source = tracked_copy(tmp_path / "checkout")
    bare = tmp_path / "remote" / f"{PACK_FOLDER}.git"  # Manager names the folder after the URL's last part
    git("clone", "-q", "--bare", str(source), str(bare), cwd=tmp_path)
    url = f"file://localhost{bare.as_posix()}"
    user = tmp_path / "user"
    user.mkdir()
    env = {**os.environ, "COMFYUI_PATH": str(fresh_host.comfyui)}
    env.pop("PYTHONPATH", None)
    install = subprocess.run(
        [str(fresh_host.python), "-m", "cm_cli", "install", url, "--user-directory", str(user)],
        cwd=fresh_host.comfyui,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = install.stdout + install.stderr

    installed = fresh_host.comfyui / "custom_nodes" / PACK_FOLDER
    assert (installed / "__init__.py").is_file(), output
    assert git("rev-parse", "HEAD", cwd=installed) == git("rev-parse", "HEAD", cwd=source), output
    assert git("status", "--porcelain", cwd=installed) == "", output
    # Manager ran the requirements (each line through pip; torch it leaves to ComfyUI) and no install script.
    assert "Install: pip packages" in output and "Install: install script" not in output, output
    assert not (installed / "install.py").exists()
    assert "Installation was successful" in output, output
    assert pack_node_ids() >= {"Img2ImgKSampler", "Img2ImgSaveImage"}

    assert_serves_the_pack(fresh_host, tmp_path / "server")
    assert PACK_ROOT not in installed.resolve().parents  # a clone of its own, not a link to this checkout
