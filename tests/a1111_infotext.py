"""An independent reader of AUTOMATIC1111's "parameters" text, written from the format's description only.

The tests check the pack's writer with it, so it shares no code with ``nodes/core/parameters.py``.
"""

from __future__ import annotations

import json
import re

# "Key: value" where the value is a JSON string or runs up to the next ", " / end of line.
VALUE_PAIR = re.compile(r'(?P<key>\w[\w /-]*): (?P<value>"(?:[^"\\]|\\.)*"|[^,"]*)(?P<sep>, |$)')


def read_infotext(text: str) -> tuple[str, str | None, dict[str, str]]:
    """(prompt, negative prompt or None, values) of a text whose last line starts with 'Steps: '."""
    head, _, last = text.rpartition("\n")
    assert last.startswith("Steps: "), last
    values, covered = {}, ""
    for match in VALUE_PAIR.finditer(last):
        raw = match.group("value")
        values[match.group("key")] = json.loads(raw) if raw.startswith('"') else raw
        covered += match.group(0)
    assert covered == last, "the values line holds something that is not a Key: value pair"
    parts = re.split(r"^Negative prompt: ", head, maxsplit=1, flags=re.MULTILINE)
    prompt = parts[0].removesuffix("\n") if len(parts) == 2 else parts[0]
    return prompt, (parts[1] if len(parts) == 2 else None), values
