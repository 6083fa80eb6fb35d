"""What the Comfy registry and ComfyUI-Manager need from the pack's files."""

import re

import tomllib
from PIL import Image

from pack_under_test import PACK_ROOT

PYPROJECT = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
RUNTIME = {"torch", "safetensors", "numpy", "pillow"}  # the pack's, installed by Manager from requirements.txt
COMMAND = {"requests", "websocket-client", "tqdm"}  # the img2img command's: the wheel's dependencies
# Registry metadata, not something to install beside ComfyUI: the frontend versions the plan line is tested on.
FRONTEND = "comfyui-frontend-package"


def requirement_names(lines: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower() for line in lines if line.strip()}


def test_project_fields_the_registry_requires():
    project = PYPROJECT["project"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-_]{0,99}", project["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert len(project["description"]) > 20
    assert (PACK_ROOT / project["license"]["file"]).is_file()
    assert project["urls"]["Repository"].startswith("https://")
    assert project["urls"]["Issues"] == project["urls"]["Repository"] + "/issues"
    assert requirement_names(project["dependencies"]) == COMMAND | {FRONTEND}
    assert f"{FRONTEND}>=1.32.9" in project["dependencies"]


def test_classifiers_are_those_the_registry_reads():
    """comfy-cli keeps operating systems and GPUs only from these spellings; any other drops the whole list."""
    systems = {"POSIX :: Linux", "Microsoft :: Windows", "MacOS"}
    gpus = {"GPU :: NVIDIA CUDA", "GPU :: AMD ROCm", "GPU :: Intel Arc", "GPU :: Apple Metal"}
    expected = {f"Operating System :: {name}" for name in systems} | {f"Environment :: {name}" for name in gpus}
    assert set(PYPROJECT["project"]["classifiers"]) == expected


def test_tool_comfy_section_is_complete():
    comfy = PYPROJECT["tool"]["comfy"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", comfy["PublisherId"])
    assert comfy["DisplayName"]
    assert comfy["Icon"].startswith("https://") and comfy["Icon"].endswith("/icon.png")
    assert comfy["requires-comfyui"] == ">=0.3.75"
    # `includes` would add whole folders from the disk (__pycache__ too) to what git tracks.
    assert "includes" not in comfy


def test_the_icon_is_a_square_png():
    with Image.open(PACK_ROOT / "icon.png") as icon:
        assert icon.format == "PNG" and icon.width == icon.height >= 128


def test_requirements_txt_holds_the_packs_runtime_and_pyproject_the_commands():
    """ComfyUI-Manager pip-installs each line of requirements.txt (not the frontend: that stays ComfyUI's); it
    reads the file with the platform's default encoding, so the file is ASCII. The command's wheel needs none of
    the pack's runtime (no torch)."""
    text = (PACK_ROOT / "requirements.txt").read_bytes().decode("ascii")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert requirement_names(lines) == RUNTIME
    assert not requirement_names(PYPROJECT["project"]["dependencies"]) & RUNTIME


def test_no_install_script_and_nothing_networked_or_path_changing_in_the_pack():
    assert not (PACK_ROOT / "install.py").exists()
    sources = [PACK_ROOT / "__init__.py", *(PACK_ROOT / "nodes").rglob("*.py")]
    for source in sources:
        text = source.read_text(encoding="utf-8")
        for forbidden in ("sys.path", "urllib", "requests", "subprocess", "pip install", "huggingface"):
            assert forbidden not in text, f"{source.relative_to(PACK_ROOT)} mentions {forbidden}"
