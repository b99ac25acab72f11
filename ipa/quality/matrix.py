"""The reference matrix: pipelines x workloads x policies on the simulator, with fixed seeds.

Every cell is one ``ipa.runs.execute`` of a ``RunSpec`` on ``sim`` (the paper's LSTM predictor,
CBC, seed 0, the whole 1200-s workload), so a cell here is exactly the run ``ipa run`` makes
with the same names. Cells run in-process, over a pool of worker processes when ``workers > 1``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ipa.errors import ConfigError
from ipa.optimizer.solver import DEFAULT_SOLVER
from ipa.runs.experiment import DEFAULT_PREDICTOR, RunSpec, execute

# The reference pipelines in the paper's order; which of them a reference file holds is up to
# whoever refreshes it (only profiled pipelines can run).
REFERENCE_PIPELINES = ("video", "audio-qa", "audio-sent", "sum-qa", "nlp")
SEED = 0
SOLVER = DEFAULT_SOLVER
METRICS = ("pas_mean", "cost_cores_mean", "sla_violation_rate", "unanswered_rate", "latency_p99_s")


def matrix_workloads() -> tuple[str, ...]:
    from ipa.workloads import WORKLOADS
    return tuple(WORKLOADS)


def matrix_policies() -> tuple[str, ...]:
    """The paper's policies: the gate guards the reproduction; the oracle and the autoscalers
    are compared in the workflow's figures, not gated (yet)."""
    from ipa.policies import PAPER_POLICIES
    return tuple(PAPER_POLICIES)


@dataclass(frozen=True)
class CatalogueFiles:
    """Where the pipelines come from: ``None`` everywhere is the packaged catalogue and profiles;
    tests and users with their own catalogue name their files (as ``ipa run --*-file`` does)."""

    pipelines: Path | None = None
    variants: Path | None = None
    profiles: Path | None = None

    def load(self, name: str):
        from ipa.pipelines import load_catalogue, load_pipeline

        for what, path in (("pipelines", self.pipelines), ("variants", self.variants), ("profiles", self.profiles)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{what} file {path}: no such file")
        catalogue = load_catalogue(self.pipelines, self.variants) if (self.pipelines or self.variants) else None
        return load_pipeline(name, catalogue=catalogue, profiles_path=self.profiles)


@dataclass(frozen=True, order=True)
class Cell:
    pipeline: str
    workload: str
    policy: str

    def __str__(self) -> str:
        return f"{self.pipeline}/{self.workload}/{self.policy}"

    def spec(self) -> RunSpec:
        return RunSpec(pipeline=self.pipeline, policy=self.policy, workload=self.workload,
                       predictor=DEFAULT_PREDICTOR, backend="sim", seed=SEED, solver=SOLVER)


@dataclass(frozen=True)
class CellResult:
    cell: Cell
    metrics: dict[str, float]
    requests_sent: int
    pipeline_sha256: str
    folder: Path
    wall_s: float = field(compare=False)


def cells_for(pipelines: Iterable[str], workloads: Sequence[str] | None = None,
              policies: Sequence[str] | None = None) -> list[Cell]:
    workloads = matrix_workloads() if workloads is None else tuple(workloads)
    policies = matrix_policies() if policies is None else tuple(policies)
    return [Cell(p, w, q) for p in pipelines for w in workloads for q in policies]


_pipelines: dict[tuple[CatalogueFiles, str], Any] = {}


def _pipeline(files: CatalogueFiles, name: str):
    """One load per pipeline per process: the matrix runs 20 cells of each."""
    if (files, name) not in _pipelines:
        _pipelines[(files, name)] = files.load(name)
    return _pipelines[(files, name)]


def _run_cell(job: tuple[Cell, CatalogueFiles, Path, Callable | None]) -> CellResult:
    cell, files, out_root, make_predictor = job
    folder = out_root / cell.pipeline / cell.workload / cell.policy
    started = time.perf_counter()
    summary = execute(cell.spec(), folder, pipeline=_pipeline(files, cell.pipeline), force=True,
                      predictor=make_predictor() if make_predictor is not None else None,
                      argv=["ipa quality", str(cell)])
    return CellResult(cell, {m: float(summary[m]) for m in METRICS}, int(summary["requests_sent"]),
                      summary["params"]["pipeline_sha256"], folder, time.perf_counter() - started)


def run_matrix(cells: Sequence[Cell], out_root: str | Path, *, files: CatalogueFiles = CatalogueFiles(),
               workers: int = 2, make_predictor: Callable[[], Any] | None = None,
               progress: Callable[[CellResult, int, int], None] | None = None) -> list[CellResult]:
    """Run every cell into ``out_root/<pipeline>/<workload>/<policy>`` and return the results in
    the order of ``cells``. ``make_predictor`` (a picklable zero-argument callable) replaces the
    matrix's predictor in every cell: the way to try a deliberately different adapter."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    out_root = Path(out_root)
    for name in sorted({c.pipeline for c in cells}):
        _pipeline(files, name)  # a missing profile or bad file fails here, before any run
    jobs = [(c, files, out_root, make_predictor) for c in cells]
    results: list[CellResult] = []
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(_run_cell(job))
            if progress:
                progress(results[-1], len(results), len(jobs))
        return results
    # spawn, not fork: HiGHS keeps a thread pool, and a process forked after its parent solved
    # with HiGHS deadlocks in its first solve (seen under pytest). Workers load the pipelines anew.
    ctx = get_context("spawn")
    with ctx.Pool(min(workers, len(jobs))) as pool:
        for r in pool.imap(_run_cell, jobs, chunksize=1):
            results.append(r)
            if progress:
                progress(r, len(results), len(jobs))
    return results


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))
