"""User traces: a CSV of ``second,rps`` rows, one per second, contiguous and increasing."""
from __future__ import annotations

import csv
import io
import lzma
import math
from pathlib import Path

import numpy as np

from ipa.errors import ConfigError
from ipa.workloads.workload import Workload

COLUMNS = ("second", "rps")


def _open_text(path: Path):
    if path.suffix == ".xz":
        return io.TextIOWrapper(lzma.open(path), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_trace_csv(path: str | Path) -> tuple[int, np.ndarray]:
    """(first second, per-second rates) of a ``second,rps`` CSV, checked row by row.

    Other columns are ignored. Every error names the file, the line and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"trace file {path}: no such file")
    try:
        with _open_text(path) as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ConfigError(f"trace file {path}: missing column(s) {', '.join(missing)} "
                                  f"(header is {','.join(header) or 'empty'}; expected second,rps)")
            reader.fieldnames = header
            first, rates = None, []
            for row in reader:
                line = reader.line_num
                where = f"trace file {path}, line {line}"
                try:
                    second = int(str(row["second"]).strip())
                except ValueError:
                    raise ConfigError(f"{where}: second {row['second']!r} is not an integer") from None
                try:
                    rps = float(str(row["rps"]).strip())
                except ValueError:
                    raise ConfigError(f"{where}: rps {row['rps']!r} is not a number") from None
                if not math.isfinite(rps) or rps < 0:
                    raise ConfigError(f"{where}: rps {rps!r} must be a finite number >= 0")
                if first is None:
                    first = second
                expected = first + len(rates)
                if second != expected:
                    problem = ("a gap" if second > expected else
                               "a duplicate second" if second == expected - 1 else "unsorted seconds")
                    raise ConfigError(f"{where}: second {second} follows {expected - 1} ({problem}); "
                                      "rows must be consecutive seconds in increasing order")
                rates.append(rps)
    except (OSError, lzma.LZMAError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"trace file {path}: cannot be read as CSV ({e})") from None
    if not rates:
        raise ConfigError(f"trace file {path}: no rows after the header")
    return first, np.array(rates, dtype=float)


def load_trace(path: str | Path) -> Workload:
    """A user trace as a Workload: its first second becomes second 0."""
    path = Path(path)
    first, rates = read_trace_csv(path)
    return Workload(path.stem.removesuffix(".csv"), rates,
                    f"user trace {path} (seconds {first}..{first + len(rates) - 1}, renumbered from 0)")
