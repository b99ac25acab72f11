"""Output paths are checked for writability before any work starts, so a bad `--out` costs nothing.

The check writes and removes a probe file: permission bits alone do not say whether a file
system accepts writes (read-only mounts, /proc, a full disk's quotas all pass ``os.access``).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ipa.errors import ConfigError


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def require_writable_dir(path: str | Path, flag: str = "--out") -> None:
    """``path`` is, or can be created as, a folder this process can write files into.

    The probe goes into ``path`` or, when it does not exist yet, into its nearest existing
    ancestor: a folder that accepts a file accepts a subfolder. Nothing is created, so checks
    running concurrently on siblings (the quality matrix's workers) cannot trip over each
    other's half-made parents."""
    path = Path(path)
    existing = _first_existing(path.absolute())
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path}: {existing} is not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"{flag} {path} cannot be written ({e.strerror or e}); choose a writable folder") from None


def require_writable_file(path: str | Path, flag: str = "--out") -> None:
    """``path`` can be (re)written: its folder accepts files and an existing file is writable."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; it must name a file")
    require_writable_dir(path.parent, flag=f"{flag} {path}: folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {path} exists and is not writable")


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` so that a reader (a concurrent job, a crash's survivor) sees
    the old file or the whole new one, never half of one: written beside it, flushed to disk,
    then renamed over it. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
