"""Shapes of the code a newcomer reads: functions short enough to read at once."""

import ast

import pytest

from pack_under_test import PACK_ROOT

MAX_FUNCTION_LINES = 45


@pytest.mark.parametrize("folder", ["nodes", "cli"])
def test_every_function_fits_in_45_lines(folder):
    too_long = []
    for path in sorted((PACK_ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACK_ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not too_long, too_long
