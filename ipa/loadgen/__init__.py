"""Open-loop load generation: the Locust replay process (ipa.loadgen.replay) and its driver.

This module never imports Locust (which monkey-patches the interpreter); it starts the replay
as a child process, hands it t0, waits, and turns its per-request log into the run folder's
request records (``ok``, ``late``, ``dropped``, ``failed``, latency from the intended send).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

from ipa.errors import IpaError
from ipa.outputs import write_atomic
from ipa.records import REQUEST_COLUMNS
from ipa.processes import Child, ProcessGroup, python_argv
from ipa.serving.v2 import DROPPED

# the replay's error column for requests left unanswered when it was stopped by a signal
STOPPED_IN_FLIGHT = "no response before the replay was stopped"
STOPPED_UNSENT = "not sent: the replay was stopped"


class LoadGenerator:
    def __init__(self, group: ProcessGroup, folder: Path, url: str, path: str, send_times_s: Sequence[float],
                 input_elements: int, drain_s: float = 30.0):
        self.group, self.folder = group, Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.times = [float(t) for t in send_times_s]
        if any(b < a for a, b in zip(self.times, self.times[1:])):
            raise IpaError("send times must be sorted")
        if input_elements < 1:
            raise IpaError(f"a request needs at least one input element, got {input_elements}")
        self.url, self.path, self.drain_s, self.input_elements = url, path, drain_s, input_elements
        self.out = self.folder / "loadgen_requests.csv"
        self.ready_file = self.folder / "loadgen.ready"
        self.start_file = self.folder / "loadgen.start"
        self.child: Child | None = None
        self.t0: float | None = None

    def launch(self, timeout_s: float = 60.0) -> None:
        for f in (self.out, self.ready_file, self.start_file):
            f.unlink(missing_ok=True)
        times_file = self.folder / "send_times.txt"
        times_file.write_text("".join(f"{t:.6f}\n" for t in self.times))
        self.child = self.group.start("loadgen", python_argv(
            "ipa.loadgen.replay", "--url", self.url, "--path", self.path, "--send-times", str(times_file),
            "--input-elements", str(self.input_elements),
            "--out", str(self.out), "--ready-file", str(self.ready_file), "--start-file", str(self.start_file),
            "--drain-s", str(self.drain_s), "--timeout-s", str(max(10.0, self.drain_s))),
            self.folder / "logs" / "loadgen.log")
        deadline = time.monotonic() + timeout_s
        while not self.ready_file.exists():
            if not self.child.alive():
                raise IpaError(f"the Locust replay exited before it was ready; its log ends:\n{self.child.log_tail()}")
            if time.monotonic() > deadline:
                raise IpaError(f"the Locust replay was not ready within {timeout_s:g}s")
            time.sleep(0.02)

    def start(self, t0: float) -> None:
        """Send request i at wall time t0 + send_times_s[i]."""
        self.t0 = t0
        write_atomic(self.start_file, repr(t0))

    def wait(self) -> Path:
        """Until the replay has sent every request and drained the answers; returns its log."""
        assert self.child is not None and self.t0 is not None
        last = self.times[-1] if self.times else 0.0
        deadline = self.t0 + last + self.drain_s + 30.0
        while self.child.alive() and time.time() < deadline:
            time.sleep(0.1)
        if self.child.alive():
            self.child.stop()
        return self._log()

    def interrupt(self) -> Path:
        """Stop the replay now (the run was cut short); returns its log, which accounts for every
        request sent so far and marks the rest as never sent."""
        assert self.child is not None
        self.child.stop(grace_s=5.0)  # SIGTERM: the replay writes its log and exits (ipa.loadgen.replay)
        return self._log()

    def _log(self) -> Path:
        if not self.out.exists():
            raise IpaError(f"the Locust replay wrote no request log ({self.out}); its log ends:\n"
                           f"{self.child.log_tail()}")
        return self.out


def classify(log_csv: Path, sla_s: float):
    """The load generator's log as request records (pandas DataFrame, REQUEST_COLUMNS)."""
    import pandas as pd

    raw = pd.read_csv(log_csv, dtype={"error": str}, keep_default_na=False)
    for c in ("sent_s", "done_s"):
        raw[c] = pd.to_numeric(raw[c], errors="coerce")
    latency = raw["done_s"] - raw["intended_s"]
    status = []
    detail = []
    for code, err, lat in zip(raw["http_status"], raw["error"], latency):
        if code == 200:
            status.append("ok" if lat <= sla_s else "late")
            detail.append("")
        elif err.startswith(DROPPED):
            status.append("dropped")
            detail.append(err)
        else:
            status.append("failed")
            detail.append(err or f"HTTP {code}")
    return pd.DataFrame({"id": raw["id"], "intended_s": raw["intended_s"], "sent_s": raw["sent_s"],
                         "done_s": raw["done_s"], "status": status, "latency_s": latency, "detail": detail},
                        columns=list(REQUEST_COLUMNS))


def send_lag(requests) -> dict[str, float]:
    """How far actual sends trailed intended ones (a large lag invalidates open-loop timing)."""
    lag = (requests["sent_s"] - requests["intended_s"]).dropna()
    if lag.empty:
        return {"lag_p50_s": math.nan, "lag_p99_s": math.nan, "lag_max_s": math.nan}
    return {"lag_p50_s": float(lag.quantile(0.5)), "lag_p99_s": float(lag.quantile(0.99)),
            "lag_max_s": float(lag.max())}
