"""``python3 scripts/host.py gpu``: the pack on CUDA (exactness against core, speed, memory, tiles) in one call.

The GPU machine (/work/.library/device) has CUDA's torch in its plain ``python3`` but no network, and only the
working tree travels there (tracked and untracked files plus the ``carry`` of ignored paths, 64 MiB in all). So
the work is split in two:

    python3 scripts/host.py gpu --prepare        # here: fills .gpu/ (git-ignored) and prints what travels
    python3 scripts/host.py gpu --out DIR        # there: stage ComfyUI from .gpu/, run the checks, write DIR
    python3 scripts/host.py gpu --dry-run --out DIR   # here, on the CPU: the same checks, small (CI runs it)

``--prepare`` packs the host's ComfyUI 0.3.75 tree (without models, inputs, outputs and ComfyUI's own tests)
into .gpu/ComfyUI.tar.xz and downloads, for Python 3.12 on x86-64 Linux, the wheels of the distributions the
checks import that the GPU image lacks (``wheel_plan``). On the machine the run unpacks the tree into a
temporary folder, installs those wheels with ``pip --target`` into a folder of their own (torch and every
package of the image stay as they are), links the pack into ``custom_nodes/``, makes the full-shape SD1.5
checkpoint with random weights (scripts/make_test_checkpoint.py --shape sd15) and runs gpu_checks.py in a
child process under a deadline, which writes figures.json and figures.md into ``--out``. ``--dry-run`` stages
the host's own tree the same way (uncompressed, with the host's test checkpoint) and runs the checks with the
host's Python at small sizes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .build import COMFYUI_VERSION, PACK_DIR_NAME, build
from .layout import PACK_ROOT, default_host, log, phase

PAYLOAD = PACK_ROOT / ".gpu"
TREE_ARCHIVE = "ComfyUI.tar.xz"
# What of ComfyUI's tree the checks do not need: the models are made there, inputs and outputs are the run's
# own, tests are ComfyUI's, and the pack's link is made again where the tree is unpacked.
TREE_EXCLUDED = ("models", "input", "output", "user", "temp", "tests", "tests-unit", f"custom_nodes/{PACK_DIR_NAME}")
CARRY_LIMIT = 64 * 2**20  # the device tool's limit on the working tree plus the carried paths
# The payload as the last --prepare measured it (2026-12-04: 4.65 MiB), with room: the test that the tree
# leaves room for it runs without a payload.
PAYLOAD_ALLOWANCE = 6 * 2**20
# One device call may run 10 minutes; the checks get 8 of them (the bound), the rest is set-up.
DEVICE_BUDGET_S = 480.0
DRY_BUDGET_S = 300.0
SD15_CHECKPOINT = "img2img-bench-sd15-full.safetensors"  # the bench's name for it (bench/img2img_bench/specs.py)
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
DEVICE_PYTHON = "3.12"
DEVICE_STAGE = Path(tempfile.gettempdir()) / "img2img-gpu"  # outside the tree: nothing staged travels back
# The python3 packages of the GPU machine's image, as KINDS.md lists them (read there on 2026-11-17).
DEVICE_PACKAGES = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft
nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless
opt-einsum opt-einsum-fx optax optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip
pluggy portalocker prometheus-client propcache protobuf psutil py-cpuinfo pyarrow pybind11 pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentence-transformers sentencepiece setuptools shellingham simplejson
six sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torch-geometric torchaudio torchdiffeq torchmetrics torchvision
tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug
wheel wrapt xarray xxhash yarl zipp
"""
DEVICE_IMAGE = frozenset(DEVICE_PACKAGES.split())
# Imported by ComfyUI but not carried. av (PyAV, about 40 MB with its FFmpeg): `import nodes` imports it for the
# video types, which these checks never use; a stub module stands in (av_stub). transformers: the image's 5.17
# (ComfyUI 0.3.75 is pinned <5 on the host, where 5.x changed tokenizer loading) gives SD1.5's CLIP tokenizer
# the same token ids as 4.57 on the host (compared here, 2026-12-04), and gpu_checks compares them again there.
NOT_CARRIED = frozenset({"av"})
# requests imports chardet where it is installed (the host has it) and charset-normalizer (the image's) else.
ALTERNATIVES = {"chardet": "charset-normalizer"}
# Imported where installed, and not needed: ComfyUI's custom-node loader reads the pack's pyproject.toml with
# pydantic-settings only to find a web folder (without it: one warning line; the pack names WEB_DIRECTORY), and
# transformers 4's slow CLIP tokenizer cleans text with ftfy where it is installed (5.x's fast one does not).
OPTIONAL = frozenset(
    {"pydantic", "pydantic-core", "pydantic-settings", "python-dotenv", "annotated-types", "typing-inspection"}
    | {"ftfy", "wcwidth"}
)
PARTS = ("exactness", "floor", "speed", "memory", "tiled")  # what gpu_checks measures, in this order
DEVICE_COMMAND = "PYTHONUNBUFFERED=1 python3 scripts/host.py gpu --out $OUT"
DEVICE_CALL = f'run(command="{DEVICE_COMMAND}", carry=[".gpu"], timeout_s=600)'


def normalized(name: str) -> str:
    """A distribution's name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_plan(imported: dict[str, str]) -> list[str]:
    """Pins (``name==version``, the versions the host imported) of the distributions the checks import that the
    GPU image lacks and that are neither stubbed, optional, nor replaced by an alternative the image has."""
    image = DEVICE_IMAGE | NOT_CARRIED | OPTIONAL
    plan = []
    for name, version in sorted(imported.items()):
        key = normalized(name)
        if key in image or ALTERNATIVES.get(key) in image:
            continue
        plan.append(f"{key}=={version}")
    return plan


def tree_member(root: str) -> Callable[[tarfile.TarInfo], tarfile.TarInfo | None]:
    """A tarfile filter that leaves out TREE_EXCLUDED and byte code, keeping paths relative to ``root``."""
    excluded = {f"{root}/{path}" for path in TREE_EXCLUDED}

    def keep(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if member.name in excluded or "__pycache__" in member.name.split("/") or member.name.endswith(".pyc"):
            return None
        member.uid = member.gid = 0
        member.uname = member.gname = ""
        return member

    return keep


def archive_tree(comfyui: Path, archive: Path, mode: str) -> None:
    """ComfyUI's tree as ``archive`` (``mode``: "w:xz" to carry, "w" for the dry run's quick round trip)."""
    with tarfile.open(archive, mode) as tar:
        tar.add(comfyui, arcname="ComfyUI", filter=tree_member("ComfyUI"))


def git_paths(*args: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", *args], cwd=PACK_ROOT, capture_output=True, check=True)
    return [PACK_ROOT / name for name in listed.stdout.decode().split("\0") if name]


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def tree_bytes() -> int:
    """What travels besides the carry: tracked files and untracked ones that git does not ignore."""
    paths = git_paths() + git_paths("--others", "--exclude-standard")
    shared = PACK_ROOT / "shared"
    return sum(path.stat().st_size for path in paths if path.is_file()) + (
        folder_bytes(shared) if shared.is_dir() else 0
    )


def download_wheels(python: Path, pins: list[str], folder: Path) -> None:
    """Wheels for the GPU machine's Python 3.12 on x86-64 Linux, without their dependencies (each is planned)."""
    platforms = [option for platform in WHEEL_PLATFORMS for option in ("--platform", platform)]
    command = [str(python), "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps"]
    command += ["--only-binary=:all:", "--python-version", DEVICE_PYTHON, "--implementation", "cp", *platforms]
    subprocess.run([*command, "-d", str(folder), *pins], check=True)


def imported_distributions(python: Path, comfyui: Path) -> dict[str, str]:
    """The distributions (name: version) that the checks import, listed by gpu_checks in ``python``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, worker_path()))}
    with tempfile.TemporaryDirectory() as work:
        command = [str(python), "-m", "img2img_host.gpu_checks", "--imports-only", "--comfyui", str(comfyui)]
        listed = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, check=True)
    return json.loads(listed.stdout.strip().splitlines()[-1])


def prepare() -> int:
    """Fill .gpu/ with what the device run needs, and say what travels; 1 if it is over the carry limit."""
    with phase("host build"):
        host = build()
    shutil.rmtree(PAYLOAD, ignore_errors=True)
    (PAYLOAD / "wheels").mkdir(parents=True)
    with phase("the distributions the checks import"):
        imported = imported_distributions(host.python, host.comfyui)
    plan = wheel_plan(imported)
    with phase(f"wheels for Python {DEVICE_PYTHON}: {', '.join(plan) or 'none'}"):
        if plan:
            download_wheels(host.python, plan, PAYLOAD / "wheels")
    with phase(f"ComfyUI {COMFYUI_VERSION} tree as {TREE_ARCHIVE}"):
        archive_tree(host.comfyui, PAYLOAD / TREE_ARCHIVE, "w:xz")
    manifest = {"comfyui": COMFYUI_VERSION, "imported": imported, "wheels": plan, "made": time.strftime("%F %T")}
    (PAYLOAD / "payload.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return report_travel()


def report_travel() -> int:
    mib = 2**20
    payload, tree = folder_bytes(PAYLOAD), tree_bytes()
    for path in sorted(PAYLOAD.rglob("*")):
        if path.is_file():
            log(f"  {path.relative_to(PACK_ROOT)}: {path.stat().st_size / mib:.2f} MiB")
    total = payload + tree
    log(f"travels: working tree {tree / mib:.2f} MiB + .gpu {payload / mib:.2f} MiB = {total / mib:.2f} MiB "
        f"of {CARRY_LIMIT / mib:.0f} MiB")  # fmt: skip
    if total > CARRY_LIMIT:
        log("over the device tool's limit: trim .gpu (TREE_EXCLUDED) or the working tree")
        return 1
    log(f"on the device: {DEVICE_CALL}")
    return 0


@dataclass(frozen=True)
class Stage:
    """A ComfyUI tree unpacked for one run, and the folders its Python needs on its path."""

    work: Path
    comfyui: Path
    path: tuple[Path, ...]


def worker_path() -> list[Path]:
    # gpu_checks is img2img_host's; it reuses the bench's measuring helpers and the checkpoint generator.
    return [PACK_ROOT / "scripts", PACK_ROOT / "bench"]


def unpack(archive: Path, work: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    comfyui = work / "ComfyUI"
    for folder in ("models/checkpoints", "input", "output", "temp", "user"):
        (comfyui / folder).mkdir(parents=True, exist_ok=True)
    (comfyui / "custom_nodes" / PACK_DIR_NAME).symlink_to(PACK_ROOT, target_is_directory=True)
    return comfyui


def install_wheels(wheels: list[Path], target: Path) -> None:
    """The carried wheels into a folder of their own: --no-deps and --no-index, so nothing of the image moves."""
    command = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index"]
    command += ["--no-deps", "--no-compile", "--no-cache-dir", "--target", str(target)]
    subprocess.run([*command, *map(str, wheels)], check=True)


def av_stub(folder: Path) -> Path | None:
    """Where PyAV is missing, a stub with the names ComfyUI's video types import; calling it raises."""
    if importlib.util.find_spec("av") is not None:
        return None
    package = folder / "av"
    (package / "subtitles").mkdir(parents=True)
    (package / "__init__.py").write_text(
        '"""A stand-in for PyAV, which these checks never call (gpu.py, NOT_CARRIED)."""\n\n\n'
        "def open(*args, **kwargs):\n    raise RuntimeError('PyAV is not installed here: a stub stands in')\n",
        encoding="utf-8",
    )
    (package / "container.py").write_text("class InputContainer:\n    pass\n", encoding="utf-8")
    (package / "subtitles" / "__init__.py").write_text("", encoding="utf-8")
    (package / "subtitles" / "stream.py").write_text("class SubtitleStream:\n    pass\n", encoding="utf-8")
    return folder


def stage_device(work: Path) -> Stage:
    """The carried payload, unpacked and installed, and the full-shape SD1.5 checkpoint made; kept in ``work``
    for a second call on the same machine (a rerun of what failed), which skips this while the payload is the
    same."""
    if not (PAYLOAD / TREE_ARCHIVE).exists():
        raise SystemExit(f"no {PAYLOAD / TREE_ARCHIVE}: run `python3 scripts/host.py gpu --prepare` and carry .gpu")
    marker, payload = work / "staged.json", (PAYLOAD / "payload.json").read_text(encoding="utf-8")
    stub = work / "stub" if (work / "stub").is_dir() else None
    if marker.exists() and marker.read_text(encoding="utf-8") == payload:
        log(f"staged already in {work}")
        return Stage(work, work / "ComfyUI", (work / "wheels", *([stub] if stub else []), *worker_path()))
    shutil.rmtree(work, ignore_errors=True)
    with phase("unpack ComfyUI"):
        comfyui = unpack(PAYLOAD / TREE_ARCHIVE, work)
    wheels = sorted((PAYLOAD / "wheels").glob("*.whl"))
    with phase(f"install {len(wheels)} wheels"):
        if wheels:
            install_wheels(wheels, work / "wheels")
    stub = av_stub(work / "stub")
    stage = Stage(work, comfyui, (work / "wheels", *([stub] if stub else []), *worker_path()))
    with phase("full-shape SD1.5 checkpoint, random weights"):
        generator = PACK_ROOT / "scripts" / "make_test_checkpoint.py"
        out = comfyui / "models" / "checkpoints" / SD15_CHECKPOINT
        command = [sys.executable, str(generator), "--comfyui", str(comfyui), "--out", str(out), "--shape", "sd15"]
        subprocess.run(command, env=stage_env(stage), check=True)
    marker.write_text(payload, encoding="utf-8")
    return stage


def stage_dry(work: Path) -> tuple[Stage, Path]:
    """The host's tree through the same archive and unpacking, with the host's test checkpoint linked in."""
    host = default_host()
    if not host.checkpoint.exists():
        raise SystemExit(f"no ComfyUI host at {host.root}: run `python3 scripts/host.py build` first")
    with phase("archive and unpack the host's ComfyUI"):
        archive_tree(host.comfyui, work / "ComfyUI.tar", "w")
        comfyui = unpack(work / "ComfyUI.tar", work)
        (work / "ComfyUI.tar").unlink()
    (comfyui / "models" / "checkpoints" / host.checkpoint.name).symlink_to(host.checkpoint)
    return Stage(work, comfyui, tuple(worker_path())), host.python


def stage_env(stage: Stage) -> dict[str, str]:
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, stage.path), *inherited])}


def run_checks(python: Path, stage: Stage, options: argparse.Namespace, checkpoint: str, seconds: float) -> int:
    """gpu_checks in a child process, its output shown and kept in DIR/gpu.log; killed past its deadline with a
    minute's grace (the figures of the parts done are written as each ends)."""
    command = [str(python), "-m", "img2img_host.gpu_checks", "--comfyui", str(stage.comfyui), "--out", str(options.out)]
    command += ["--checkpoint", checkpoint, "--profile", "dry" if options.dry_run else "gpu"]
    command += ["--parts", options.parts, "--deadline-s", f"{seconds:.0f}"]
    with open(options.out / "gpu.log", "a", encoding="utf-8") as kept:
        # The stage's folder as the working directory: the pack's root would put its nodes/ before ComfyUI's.
        child = subprocess.Popen(command, cwd=stage.work, env=stage_env(stage), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)  # fmt: skip
        timer = threading.Timer(seconds + 60, child.kill)
        timer.start()
        for line in child.stdout:
            print(line, end="", flush=True)
            kept.write(line)
        code = child.wait()
        timer.cancel()
        if code < 0:
            log(f"the checks were stopped ({code}): past their deadline and its minute of grace")
        return code


def run(options: argparse.Namespace) -> int:
    started = time.monotonic()
    options.out = options.out.resolve()
    options.out.mkdir(parents=True, exist_ok=True)
    budget = options.budget or (DRY_BUDGET_S if options.dry_run else DEVICE_BUDGET_S)
    with tempfile.TemporaryDirectory(prefix="img2img-gpu-") as folder:
        if options.dry_run:
            stage, python = stage_dry(Path(folder))
            checkpoint = default_host().checkpoint.name
        else:
            stage, python, checkpoint = stage_device(DEVICE_STAGE), Path(sys.executable), SD15_CHECKPOINT
        left = budget - (time.monotonic() - started)
        log(f"set-up: {time.monotonic() - started:.1f} s; the checks get {left:.0f} s")
        code = run_checks(python, stage, options, checkpoint, left)
    log(f"total: {time.monotonic() - started:.1f} s; figures in {options.out}")
    return code


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="host.py gpu", description="The pack on CUDA, in one call: exactness against core, speed, memory, tiles."
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--prepare", action="store_true", help="fill .gpu/ here, for the device to carry")
    which.add_argument("--dry-run", action="store_true", help="the checks on this CPU, small and fast")
    parser.add_argument("--out", type=Path, help="where figures.json, figures.md and gpu.log go")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    parser.add_argument("--budget", type=float, help="seconds for set-up and checks (480; dry run 300)")
    options = parser.parse_args(argv)
    if unknown := set(options.parts.split(",")) - set(PARTS):
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))}")
    if options.prepare:
        return prepare()
    if options.out is None:
        parser.error("--out is required, except with --prepare")
    return run(options)
