"""What the Comfy registry and ComfyUI-Manager need from the pack's files."""

import re

import tomllib
from PIL import Image

from pack_under_test import PACK_ROOT

PYPROJECT = tomllib.loads((PACK_ROOT / "pyproject.toml").read_text())
RUNTIME = {"torch", "safetensors", "numpy", "pillow"}


def requirement_names(lines: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower() for line in lines if line.strip()}


def test_project_fields_the_registry_requires():
    project = PYPROJECT["project"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-_]{0,99}", project["name"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"])
    assert len(project["description"]) > 20
    assert (PACK_ROOT / project["license"]["file"]).is_file()
    assert project["urls"]["Repository"].startswith("https://")
    assert requirement_names(project["dependencies"]) == RUNTIME


def test_tool_comfy_section_is_complete():
    comfy = PYPROJECT["tool"]["comfy"]
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", comfy["PublisherId"])
    assert comfy["DisplayName"]
    assert comfy["Icon"].startswith("https://") and comfy["Icon"].endswith("/icon.png")
    for folder in comfy["includes"]:
        assert (PACK_ROOT / folder).is_dir(), folder


def test_the_icon_is_a_square_png():
    with Image.open(PACK_ROOT / "icon.png") as icon:
        assert icon.format == "PNG" and icon.width == icon.height >= 128


def test_requirements_txt_matches_pyproject():
    lines = [line for line in (PACK_ROOT / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert requirement_names(lines) == requirement_names(PYPROJECT["project"]["dependencies"])


def test_no_install_script_and_nothing_networked_or_path_changing_in_the_pack():
    assert not (PACK_ROOT / "install.py").exists()
    sources = [PACK_ROOT / "__init__.py", *(PACK_ROOT / "nodes").rglob("*.py")]
    for source in sources:
        text = source.read_text()
        for forbidden in ("sys.path", "urllib", "requests", "subprocess", "pip install", "huggingface"):
            assert forbidden not in text, f"{source.relative_to(PACK_ROOT)} mentions {forbidden}"
