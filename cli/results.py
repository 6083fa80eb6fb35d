"""The output folder: pictures that never overwrite a file, and the manifest that makes runs resumable.

A manifest line is appended only after its picture is safely on disk, in one write with fsync, so a run
killed at any point leaves complete lines that each name a complete file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path

MANIFEST_NAME = "manifest.jsonl"
MAX_NAME_TRIES = 10_000


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resume_key(sha256: str, seed: int, parameters: Mapping[str, object], mask: str | None = None) -> str:
    """Same content, seed and parameters: the same picture, wherever the input file lies now. ``mask``: the
    input's mask (its file's sha256, or ``alpha``: its own transparency); without one the key is as before
    masks, so that older manifests resume."""
    identity = [sha256, seed, dict(parameters)] + ([] if mask is None else [mask])
    return json.dumps(identity, sort_keys=True)


def _fsync_folder(folder: Path) -> None:
    """Makes a new name in ``folder`` durable. Windows cannot open a folder as a file, and NTFS records
    names in its journal: there it is left out."""
    if os.name == "nt":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_output(folder: Path, stem: str, suffix: str, data: bytes) -> Path:
    """Writes ``stem + suffix`` or, when taken, ``stem_1 + suffix`` and so on; never over an existing file.

    The bytes go to a hidden temporary file first and get their name by a hard link, which fails instead
    of replacing a file that appeared meanwhile (another run into the same folder), so a name never
    shows a partial picture. Where the file system has no hard links (FAT, exFAT, some network shares),
    the name is reserved by an exclusive create and the finished file moved onto it. Img2ImgSaveImage's
    writer (nodes/save_image.py) keeps the same rule in the pack, which ComfyUI loads without this package.
    """
    partial = folder / f".{stem}.{uuid.uuid4().hex[:8]}.partial"
    with open(partial, "xb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    try:
        for number in range(MAX_NAME_TRIES):
            target = folder / (f"{stem}{suffix}" if number == 0 else f"{stem}_{number}{suffix}")
            try:
                _place(partial, target)
            except FileExistsError:
                continue
            _fsync_folder(folder)
            return target
        raise FileExistsError(f"{folder / stem}{suffix} and {MAX_NAME_TRIES - 1} numbered names are all taken")
    finally:
        partial.unlink(missing_ok=True)  # gone when the fallback moved it


def _place(partial: Path, target: Path) -> None:
    """Gives the finished file ``partial`` the name ``target``, which must not exist yet (FileExistsError)."""
    try:
        os.link(partial, target)
    except FileExistsError:
        raise
    except OSError:
        # No hard links here: reserve the name exclusively, then move the finished file onto it; a crash in
        # between leaves an empty file under the name, never a cut-short picture.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        os.replace(partial, target)


def _byte_at(descriptor: int, offset: int) -> bytes:
    """One byte of an open file (os.pread is not on Windows; appends go to the end wherever this seeks)."""
    os.lseek(descriptor, offset, os.SEEK_SET)
    return os.read(descriptor, 1)


class Manifest:
    """``DIR/manifest.jsonl``: one JSON object per finished image; shared by the worker threads."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / MANIFEST_NAME
        self._lock = threading.Lock()
        self._done: set[str] = set()
        self._offset = 0  # bytes of the file read into _done
        self._line = 0

    def done_keys(self) -> set[str]:
        """The resume keys of every whole line so far: read on from where the last call stopped, so that a run
        can ask again before each image whether another run into the same folder has done it meanwhile."""
        if not self.path.exists():
            return set(self._done)
        with open(self.path, "rb") as file:
            file.seek(self._offset)
            data = file.read()
        whole = data[: data.rfind(b"\n") + 1]  # a line still being appended is read next time
        for line in whole.decode("utf-8", errors="replace").splitlines():
            self._line += 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                self._done.add(resume_key(record["sha256"], record["seed"], record["parameters"], record.get("mask")))
            except (ValueError, KeyError, TypeError):
                # Only a crash of the machine mid-append leaves such a line; its image simply runs again.
                print(f"img2img: ignoring unreadable line {self._line} of {self.path}", file=sys.stderr)
        self._offset += len(whole)
        return set(self._done)

    def append(self, record: Mapping[str, object]) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        with self._lock:
            # O_BINARY (Windows only): no newline translation of the bytes written.
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
            descriptor = os.open(self.path, flags, 0o644)
            try:
                size = os.fstat(descriptor).st_size
                if size and _byte_at(descriptor, size - 1) != b"\n":
                    data = b"\n" + data  # a torn last line stays on its own and is ignored on reading
                while data:
                    data = data[os.write(descriptor, data) :]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
