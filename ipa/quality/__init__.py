"""Quality gates: a committed reference of adaptation quality, the regression check against it,
and the cross-policy properties the paper reports.

    ipa quality check                         # re-run the reference's cells, compare, exit 1 on a regression
    ipa quality refresh [--pipelines video]   # re-run and rewrite the reference (review the diff)

``check`` runs exactly the cells the reference holds; ``refresh`` replaces the rows of the
pipelines it runs and keeps the others.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ipa.errors import ConfigError, ProfileMissing
from ipa.quality.matrix import (METRICS, REFERENCE_PIPELINES, CatalogueFiles, Cell, CellResult, cells_for,
                                default_workers, run_matrix)
from ipa.quality.properties import SLA_FLOOR, SLA_SLACK, against_reference, check_properties, sla_bound
from ipa.quality.reference import (REFERENCE_FILE, TOLERANCES, Difference, ReferenceRow, Tolerance, compare,
                                   format_table, merge, read_reference, rows_from_results, write_reference)


@dataclass(frozen=True)
class CheckResult:
    differences: list[Difference]
    property_problems: list[str]  # properties the reference holds and the matrix now breaks
    results: list[CellResult]
    wall_s: float
    known_departures: list[str] = ()  # properties the reference itself breaks, still broken

    @property
    def passed(self) -> bool:
        return not self.differences and not self.property_problems

    def report(self) -> str:
        cells = len(self.results)
        lines = []
        if self.differences:
            moved = len({d.cell for d in self.differences})
            lines.append(f"adaptation quality moved beyond the tolerances in {moved} of {cells} cells:")
            lines.append(format_table(self.differences))
        if self.property_problems:
            lines.append(f"cross-policy properties violated ({len(self.property_problems)}):")
            lines.extend(f"  {p}" for p in self.property_problems)
        if not lines:
            lines.append(f"adaptation quality: {cells} cells within the tolerances, cross-policy properties hold"
                         + (" where the reference's do" if self.known_departures else ""))
        if self.known_departures:
            lines.append(f"known departures: the reference itself breaks these ({len(self.known_departures)}):")
            lines.extend(f"  {p}" for p in self.known_departures)
        lines.append(f"({cells} runs in {self.wall_s:.1f} s)")
        return "\n".join(lines)


def check(reference_path: str | Path = REFERENCE_FILE, *, out_root: str | Path | None = None,
          files: CatalogueFiles = CatalogueFiles(), workers: int | None = None,
          make_predictor: Callable | None = None, progress: Callable | None = None) -> CheckResult:
    """Re-run every cell of the reference and compare. Run folders go under ``out_root`` (a
    temporary folder, removed afterwards, when None)."""
    import time

    reference = read_reference(reference_path)
    if not reference:
        raise ConfigError(f"reference file {reference_path} holds no cells; run `ipa quality refresh`")
    cells = sorted(r.cell for r in reference)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ipa-quality-") as tmp:
        results = run_matrix(cells, Path(out_root) if out_root is not None else Path(tmp), files=files,
                             workers=workers or default_workers(), make_predictor=make_predictor, progress=progress)
    current = rows_from_results(results)
    broken, known = against_reference(reference, current)
    return CheckResult(compare(reference, current), broken, results, time.perf_counter() - started, known)


def profiled_pipelines(files: CatalogueFiles = CatalogueFiles(),
                       names: Sequence[str] = REFERENCE_PIPELINES) -> tuple[list[str], dict[str, str]]:
    """(the names whose profiles are complete, {name: why not} for the others)."""
    ready, missing = [], {}
    for name in names:
        try:
            files.load(name)
            ready.append(name)
        except ProfileMissing as e:
            missing[name] = str(e)
    return ready, missing


def refresh(pipelines: Sequence[str], reference_path: str | Path = REFERENCE_FILE, *,
            out_root: str | Path | None = None, files: CatalogueFiles = CatalogueFiles(),
            workers: int | None = None, progress: Callable | None = None) -> list[ReferenceRow]:
    """Run the full matrix of ``pipelines`` and write their rows into the reference (rows of
    other pipelines are kept). Returns the rows written for ``pipelines``."""
    if not pipelines:
        raise ConfigError("no pipeline to refresh")
    old = read_reference(reference_path) if Path(reference_path).exists() else []
    with tempfile.TemporaryDirectory(prefix="ipa-quality-") as tmp:
        results = run_matrix(cells_for(pipelines), Path(out_root) if out_root is not None else Path(tmp),
                             files=files, workers=workers or default_workers(), progress=progress)
    new = rows_from_results(results)
    write_reference(merge(old, new), reference_path)
    return new


__all__ = ["METRICS", "REFERENCE_FILE", "REFERENCE_PIPELINES", "SLA_FLOOR", "SLA_SLACK", "TOLERANCES",
           "CatalogueFiles", "Cell", "CellResult", "CheckResult", "Difference", "ReferenceRow", "Tolerance",
           "cells_for", "check", "check_properties", "compare", "format_table", "profiled_pipelines",
           "read_reference", "refresh", "rows_from_results", "run_matrix", "sla_bound", "write_reference"]
