"""A replica's start to ready, measured on the serving code itself.

What a new replica pays before it serves, on a cluster where each replica is its own process (a
pod): the interpreter starts, imports torch and transformers, builds the architecture, runs one
warm-up batch, and only then reports ready. The profiler's in-process build-and-load time misses
the first two, which on a small machine are most of it, so the adapter and the simulator would
expect a replica seconds before it exists. Here the real stage server (``ipa.serving.stage`` in
``real`` mode, one replica at batch 1 on one core) is started as a fresh process and
``/v2/health/ready`` polled until it answers 200: the same code path a live run starts.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from ipa.configuration import StageConfig
from ipa.processes import Child, free_port, python_argv, wait_http
from ipa.serving.spec import StageSpec, write_json

POLL_TIMEOUT_S = 600.0  # a large model on a loaded 2-core machine: minutes, not hours

METHOD = ("wall time from spawning `python -m ipa.serving.stage` (real mode, the variant's full-size "
          "architecture with random init, one replica, batch 1, 1 core) to its first 200 on "
          "/v2/health/ready, which it answers after the build and one warm-up batch: interpreter start, "
          "imports, build, warm-up; median of the repeats, run one after another on an otherwise idle "
          "machine (see loadavg)")


def measure_start_to_ready(spec: StageSpec, variant: str, work_dir: Path, repeats: int = 3,
                           log: Callable[[str], None] = print) -> dict:
    """Start the stage server for ``variant`` ``repeats`` times; returns the samples and median."""
    spec.variant(variant)  # a clear error for a variant the stage does not have
    work_dir = Path(work_dir)
    spec_path = write_json(spec, work_dir / f"stage-{spec.name}.json")
    config = json.dumps(asdict(StageConfig(variant, 1, 1, 1)))
    samples = []
    for r in range(repeats):
        port = free_port()
        child = Child(f"ready-{r}", python_argv("ipa.serving.stage", "--spec", str(spec_path), "--config", config,
                                                "--port", str(port)),
                      work_dir / f"stage-{spec.name}-{r}.log", env={"HF_HUB_OFFLINE": "1"})
        t0 = time.perf_counter()
        child.start()
        try:
            wait_http(f"http://127.0.0.1:{port}/v2/health/ready", child, timeout_s=POLL_TIMEOUT_S)
            samples.append(time.perf_counter() - t0)
        finally:
            child.stop()
        log(f"  start to ready {samples[-1]:.2f} s")
    return {"samples_s": [round(s, 4) for s in samples], "median_s": statistics.median(samples),
            "method": METHOD}
