"""Lists of numbers typed into a text widget, such as the sweep's ``0.2, 0.4, 0.6``."""

from __future__ import annotations

import math

# Each value is a whole run (the sweep: strengths × seeds runs): a list's length bounds the job a text can ask for.
MAX_VALUES = 32


def parse_numbers(text: str, name: str, kind: type = float) -> list:
    """``"0.2, 0.4,0.6"`` → [0.2, 0.4, 0.6]; a clear ValueError naming the input otherwise."""
    values = []
    parts = text.replace(";", ",").split(",")
    if sum(1 for part in parts if part.strip()) > MAX_VALUES:
        raise ValueError(f"{name}: at most {MAX_VALUES} values, got {len(parts)}")
    for part in parts:
        if not part.strip():
            continue
        try:
            value = kind(part.strip())
        except ValueError:
            raise ValueError(f"{name}: {part.strip()!r} is not a {kind.__name__} (expected e.g. '0.2, 0.4')") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: {part.strip()!r} is not a finite number")
        values.append(value)
    if not values:
        raise ValueError(f"{name}: no values in {text!r}")
    return values
