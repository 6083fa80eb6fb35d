"""The README stays the five-minute page, and the documentation's links lead somewhere.

README.md and docs/*.md are read on GitHub, where a relative link opens the file it names. The help pages
(js/docs/<node id>.md) are read in ComfyUI's node help panel, which fetches them from
/extensions/comfyui-img2img/docs/ but opens a link relative to the app's own address: there, only absolute
links work, and those into this repository must name a file it has.
"""

from __future__ import annotations

import ast
import re
import urllib.parse
from pathlib import Path

import pytest

from pack_under_test import PACK_ROOT

README = PACK_ROOT / "README.md"
README_MAX_BYTES = 12 * 1024
DOCS = sorted((PACK_ROOT / "docs").glob("*.md"))
HELP_PAGES = PACK_ROOT / "js" / "docs"
# The repository's address on GitHub (pyproject.toml's Repository URL): help pages link to files by it.
REPOSITORY_FILES = "https://github.com/comfyui-img2img/comfyui-img2img/blob/main/"
# [text](target) and ![alt](target), the target up to a space (a title may follow) or the closing bracket.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def links(page: Path) -> list[str]:
    return LINK.findall(CODE.sub("", page.read_text(encoding="utf-8")))


def is_absolute(target: str) -> bool:
    return bool(urllib.parse.urlsplit(target).scheme) or target.startswith("#")


def node_ids() -> list[str]:
    """The keys of NODE_CLASS_MAPPINGS in __init__.py, read without importing it (it imports ComfyUI)."""
    tree = ast.parse((PACK_ROOT / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "NODE_CLASS_MAPPINGS" for t in node.targets):
            return [ast.literal_eval(key) for key in node.value.keys]
    raise AssertionError("no NODE_CLASS_MAPPINGS in __init__.py")


def test_the_readme_is_a_five_minute_page():
    size = README.stat().st_size
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes, over {README_MAX_BYTES}: move detail into docs/"


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda page: page.relative_to(PACK_ROOT).as_posix())
def test_every_relative_link_points_to_a_file(page):
    missing = []
    for target in links(page):
        if is_absolute(target):
            continue
        path = urllib.parse.unquote(target.split("#")[0])
        if not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.name} links to files that do not exist: {missing}"


def test_the_link_check_sees_links_and_skips_code():
    sample = PACK_ROOT / "docs" / "development.md"
    text = '[a](docs/x.md) ![b](pic.png "t") `[c](not/a/link.md)` [d](https://x.org/y) [e](#part)'
    found = LINK.findall(CODE.sub("", text))
    assert found == ["docs/x.md", "pic.png", "https://x.org/y", "#part"]
    assert [t for t in found if not is_absolute(t)] == ["docs/x.md", "pic.png"]
    assert links(sample), "development.md has links: the pattern must find them"


def test_every_node_has_a_help_page_and_a_readme_row():
    readme = README.read_text(encoding="utf-8")
    ids = node_ids()
    assert len(ids) >= 11
    without_page = [node for node in ids if not (HELP_PAGES / f"{node}.md").is_file()]
    assert not without_page, f"no help page js/docs/<id>.md for {without_page} (docs/development.md: adding a node)"
    without_row = [node for node in ids if f"(js/docs/{node}.md) | `{node}` |" not in readme]
    assert not without_row, f"no row in README's node table for {without_row}"
    strays = sorted({page.stem for page in HELP_PAGES.glob("*.md")} - set(ids))
    assert not strays, f"help pages for no node: {strays}"


@pytest.mark.parametrize("node", node_ids())
def test_each_help_page_has_the_common_layout_and_only_absolute_links(node):
    page = HELP_PAGES / f"{node}.md"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# ") and f"`{node}`" in text.split("\n\n")[1], "a title, then the id"
    for section in ("## Inputs", "## Outputs", "## Example"):
        assert f"\n{section}\n" in text, f"{node}.md has no {section}"
    relative = [target for target in links(page) if not is_absolute(target)]
    assert not relative, f"the help panel opens these relative to the app's address, not the page's: {relative}"
    for target in links(page):
        if target.startswith(REPOSITORY_FILES):
            path = urllib.parse.unquote(target[len(REPOSITORY_FILES) :].split("#")[0])
            assert (PACK_ROOT / path).exists(), f"{node}.md links to {path}, which the repository does not have"
