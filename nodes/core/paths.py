"""File names from users, resolved only inside the folder they are meant for."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_inside(root: str | os.PathLike, name: str, what: str) -> Path:
    """``root / name`` as a real path, refusing names that leave ``root`` (``..``, absolute, links out)."""
    if not name or "\x00" in name:
        raise ValueError(f"{what}: empty or invalid file name {name!r}")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"{what}: {name!r} must be a path inside the folder, without '..' or a leading '/'")
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise ValueError(f"{what}: {name!r} leads outside the folder (through a link)")
    return target
