"""The command's offline tests again, in a Python whose default text encoding is not UTF-8.

Windows' default is the ANSI code page (cp1252 in western Europe), so a file read or written without
``encoding="utf-8"`` breaks on the first character outside it. Linux's C locale with UTF-8 mode and locale
coercion switched off gives Python an ASCII default, stricter still: every such read or write of non-ASCII
text fails there (test_cli_offline.py has a graph and a manifest with non-ASCII text). File names stay
ASCII in that run: an ASCII file system encoding is Linux's, not Windows', whose file names are Unicode.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pack_under_test import PACK_ROOT

LEGACY_ENCODING = {"PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "LC_ALL": "C", "LANG": "C"}
CHECK_ENCODING = """
import locale, sys
encoding = locale.getpreferredencoding(False)
assert sys.flags.utf8_mode == 0 and encoding.lower().replace("-", "") != "utf8", encoding
print(encoding)
"""


def test_the_offline_tests_pass_with_a_non_utf8_default_encoding(tmp_path, cli_env):
    env = {name: value for name, value in cli_env.items() if not name.startswith(("LC_", "PYTHONIO"))}
    env.update(LEGACY_ENCODING)
    child = [sys.executable, "-c", CHECK_ENCODING]
    encoding = subprocess.run(child, env=env, capture_output=True, text=True, timeout=60)
    assert encoding.returncode == 0, encoding.stderr
    # The same interpreter and environment run pytest, and check the default again before the tests.
    tests = Path(__file__).with_name("test_cli_offline.py")
    code = CHECK_ENCODING + f"import pytest; sys.exit(pytest.main([{str(tests)!r}, '-q', '-p', 'no:cacheprovider']))"
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PACK_ROOT,
        env={**env, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert run.stdout.startswith(encoding.stdout), run.stdout[:200]
    assert " passed" in run.stdout and " failed" not in run.stdout
