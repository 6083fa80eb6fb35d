"""Fixtures of the install tests (tests/pack_install.py says how the fresh ComfyUI trees are made)."""

from __future__ import annotations

import pytest

from pack_install import make_fresh_host


@pytest.fixture
def fresh_host(comfy_host, tmp_path):
    """A ComfyUI of its own, with nothing in custom_nodes/ but core's examples."""
    return make_fresh_host(comfy_host, tmp_path / "host")
