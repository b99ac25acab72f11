"""Rebuild the trace data shipped in ipa/workloads/data from the full trace.

    python -m ipa.workloads.build_data PATH/TO/twitter-trace.csv.xz [--out DIR]

Writes the paper patterns' windows (damped per-second rates, ``second,rps``) and the 10-second
maxima of the whole damped trace (``trace-peaks-10s.csv.xz``, ``second,peak_rps``) that the
LSTM predictor is trained and evaluated on. The output is deterministic: rerunning it on the same
trace reproduces the committed files byte for byte.
"""
from __future__ import annotations

import argparse
import lzma
from pathlib import Path

import numpy as np
import pandas as pd

from ipa.workloads.patterns import DAMPING, PATTERN_WINDOWS, window_file

PEAK_BLOCK_S = 10
PEAKS_FILE = "trace-peaks-10s.csv.xz"
DEFAULT_OUT = Path(__file__).parent / "data"


def damped_trace(path: Path) -> pd.Series:
    """Damped per-second rates indexed by trace second (integer division by 8, which reproduces
    the request totals of fact 33 exactly, e.g. bursty 14,437)."""
    df = pd.read_csv(path)
    if list(df.columns[:2]) != ["second", "tweets"]:
        raise SystemExit(f"{path}: expected columns second,tweets; got {','.join(df.columns)}")
    return pd.Series(df["tweets"].to_numpy() // DAMPING, index=df["second"].to_numpy())


def contiguous_runs(seconds: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of consecutive seconds."""
    breaks = np.flatnonzero(np.diff(seconds) != 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(seconds, breaks)]


def ten_second_peaks(trace: pd.Series) -> pd.DataFrame:
    """Maxima of consecutive 10-s blocks inside each contiguous run of the trace (a trailing
    partial block is dropped, so every peak covers a full 10 s)."""
    parts = []
    for start, end in contiguous_runs(trace.index.to_numpy()):
        n = (end - start) // PEAK_BLOCK_S
        values = trace.loc[start:start + n * PEAK_BLOCK_S - 1].to_numpy().reshape(n, PEAK_BLOCK_S)
        parts.append(pd.DataFrame({"second": start + PEAK_BLOCK_S * np.arange(n),
                                   "peak_rps": values.max(axis=1)}))
    return pd.concat(parts, ignore_index=True)


def write_csv_xz(df: pd.DataFrame, path: Path) -> None:
    # lzma directly (not pandas' compression=) so the bytes do not depend on the pandas version.
    data = df.to_csv(index=False, lineterminator="\n").encode()
    with lzma.open(path, "wb", preset=9 | lzma.PRESET_EXTREME) as f:
        f.write(data)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace", type=Path, help="twitter-trace.csv.xz (columns second,tweets)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    trace = damped_trace(args.trace)
    args.out.mkdir(parents=True, exist_ok=True)
    for start, end in sorted({w for windows in PATTERN_WINDOWS.values() for w in windows}):
        window = trace.loc[start:end - 1]
        if len(window) != end - start:
            raise SystemExit(f"{args.trace}: seconds {start}..{end - 1} are not all in the trace")
        df = pd.DataFrame({"second": window.index, "rps": window.to_numpy()})
        df.to_csv(args.out / window_file(start, end), index=False, lineterminator="\n")
        print(f"{window_file(start, end)}: {len(df)} s, {df.rps.min()}-{df.rps.max()} RPS, mean {df.rps.mean():.2f}")
    peaks = ten_second_peaks(trace)
    write_csv_xz(peaks, args.out / PEAKS_FILE)
    print(f"{PEAKS_FILE}: {len(peaks)} peaks, {(args.out / PEAKS_FILE).stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
