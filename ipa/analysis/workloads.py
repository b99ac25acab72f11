"""The trace windows as tables (`second,rate`), for the workflow and the load-pattern figure."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ipa.workloads import load_workload


def workload_frame(name: str) -> pd.DataFrame:
    w = load_workload(name)
    return pd.DataFrame({"second": range(w.duration_s), "rate": w.rates})


def write_workload_csv(name: str, path: str | Path) -> None:
    workload_frame(name).to_csv(path, index=False)


def read_workload_csvs(paths: dict[str, str | Path]) -> pd.DataFrame:
    """Long table `workload, second, rate` from {name: path}."""
    frames = []
    for name, path in paths.items():
        f = pd.read_csv(path)
        f.insert(0, "workload", name)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)
