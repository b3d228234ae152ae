"""Atomic file writing: a file is written to a temporary name beside its target, then renamed."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error remove it.

    The temporary name keeps the target's suffixes (``.nii.gz``, ``.dcm``) so writers that pick a format by
    extension behave the same. An interrupted run leaves the old file (or none), never a half-written one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def remove_stale_temporaries(root: str | os.PathLike) -> int:
    """Delete the temporary files that :func:`atomic_path` leaves when a process is killed (SIGKILL, power loss)
    under ``root``; a resumed run calls it first so that its outputs are those of an uninterrupted run."""
    removed = 0
    for tmp in Path(root).rglob(".*.tmp*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_csv_atomic(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` as CSV (columns: ``columns`` or the first row's keys; lists and dicts as JSON), atomically.
    No rows and no columns give an empty file."""
    import csv
    import io
    import json

    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    buf = io.StringIO()
    if cols:
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: json.dumps(r.get(c)) if isinstance(r.get(c), list | dict) else r.get(c) for c in cols})
    return write_text_atomic(path, buf.getvalue())


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
