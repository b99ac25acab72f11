"""How latency scales with cores above the measured thread counts: one Amdahl curve per family.

``L(c) = T * A_s(c)`` with ``A_s(c) = s + (1 - s) / c``: a serial fraction ``s`` that no core
count shortens, and a parallel part that divides perfectly. Where a key is measured at few
thread counts (1 and 2 on a 2-core machine), one ratio per cell is noise, so ``s`` is *shared*
by an architecture family (CNN, detection transformer, encoder, encoder-decoder generation)
and bounded to [S_MIN, S_MAX]. It is fitted, in log space, to the family's published multi-core
curves (``data/scaling_points.csv``) where there are any, since they are the only evidence about
the range the model extrapolates to (2 -> 16 cores); a family without published points is
fitted to its own measured curves (1 -> 2 threads here), a weaker basis that the provenance of
each row names (``source=measured`` or ``published`` in ``scaling.json``). Published points are
taken only from PyTorch eager CPU runs on inputs of the shapes profiled here, on one socket
(docs/profiles.md says which sources were left out and why).

A modelled row is anchored on the key's own measurement at the largest measured core count
below it, ``L(c) = L(c_m) * A_s(c) / A_s(c_m)``, so a measured row always wins, every
statistic scales by the same ratio, and the invariants (batch monotone, speedup <= core ratio)
hold by construction whenever the anchors satisfy them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ipa.errors import CatalogueError
from ipa.pipelines.catalogue import csv_rows

S_MIN, S_MAX = 0.01, 0.95
GRID = 0.001
# A family with no published multi-core point of its own borrows the published curves of one
# whose work it shares: RT-DETR's cost is mostly convolution (ResNet backbone and the CCFM
# fusion blocks at 640x640), so it scales as the CNNs do. The 1->2-thread measurements of this
# VM are a weak basis (on the encoders, the one family with both, they predict 2.1x the
# published 4-core latency: benchmarks/scaling), so they decide s only where nothing else can.
PROXY = {"detection-transformer": "cnn"}
POINT_COLUMNS = ("family", "model", "batch", "cores", "latency_s", "source")


def amdahl(s: float, cores: float) -> float:
    return s + (1.0 - s) / cores


Curve = Sequence[tuple[int, float]]  # (cores, latency) of one model at one batch


@dataclass(frozen=True)
class PublishedPoint:
    family: str
    model: str
    batch: int
    cores: int
    latency_s: float
    source: str


def read_points(path: Path) -> list[PublishedPoint]:
    points = []
    for row_no, raw in csv_rows(path, POINT_COLUMNS):
        try:
            p = PublishedPoint(raw["family"].strip(), raw["model"].strip(), int(raw["batch"]), int(raw["cores"]),
                               float(raw["latency_s"]), raw["source"].strip())
        except (TypeError, ValueError) as e:
            raise CatalogueError(f"{path}, row {row_no}: {e}") from None
        if p.cores < 1 or p.batch < 1 or not (p.latency_s > 0 and math.isfinite(p.latency_s)):
            raise CatalogueError(f"{path}, row {row_no}: batch and cores must be >= 1 and latency positive")
        points.append(p)
    return points


def published_curves(points: Iterable[PublishedPoint]) -> dict[tuple[str, str, int], list[tuple[int, float]]]:
    """Published points grouped into curves: (family, model, batch) -> [(cores, latency)]."""
    curves: dict[tuple[str, str, int], list[tuple[int, float]]] = {}
    for p in points:
        curves.setdefault((p.family, p.model, p.batch), []).append((p.cores, p.latency_s))
    return {k: sorted(v) for k, v in curves.items()}


def curve_sse(s: float, curve: Curve) -> float:
    """Squared log error of the best-scaled Amdahl curve with serial fraction ``s``."""
    logs = [math.log(lat) - math.log(amdahl(s, c)) for c, lat in curve]
    mean = sum(logs) / len(logs)
    return sum((x - mean) ** 2 for x in logs)


def fit_serial_fraction(curves: Sequence[Curve]) -> float:
    """The shared ``s`` in [S_MIN, S_MAX] minimising the squared log error over ``curves``, each
    curve with its own free scale ``T`` (grid search: the error is not convex in ``s``)."""
    curves = [c for c in curves if len(c) >= 2]
    if not curves:
        raise ValueError("no curve with two core counts to fit")
    best, best_err = S_MIN, math.inf
    for i in range(int(round((S_MAX - S_MIN) / GRID)) + 1):
        s = S_MIN + i * GRID
        err = sum(curve_sse(s, c) for c in curves)
        if err < best_err:
            best, best_err = s, err
    return round(best, 6)


def predict(curve: Curve, s: float, cores: int) -> float:
    """Latency at ``cores`` from the curve's point at the fewest cores (the anchor a published
    validation starts from: its 1-core figure)."""
    c0, l0 = min(curve)
    return l0 * amdahl(s, cores) / amdahl(s, c0)


@dataclass(frozen=True)
class FamilyFit:
    family: str
    serial_fraction: float
    basis: str  # "published" or "measured": which curves decided s
    measured_curves: int
    published_curves: int

    @property
    def description(self) -> str:
        return f"amdahl family={self.family} s={self.serial_fraction:.3f} basis={self.basis}"


def choose_curves(measured: Sequence[Curve], published: Sequence[Curve]) -> tuple[str, list]:
    published = [c for c in published if len(c) >= 2]
    if published:
        return "published", published
    return "measured", [c for c in measured if len(c) >= 2]


def fit_families(measured: Mapping[str, Sequence[Curve]],
                 published: Mapping[str, Sequence[Curve]]) -> dict[str, FamilyFit]:
    """One fit per family that has any curve (published points first, else measured keys)."""
    fits = {}
    for family in sorted(set(measured) | set(published)):
        m = [c for c in measured.get(family, ()) if len(c) >= 2]
        own = [c for c in published.get(family, ()) if len(c) >= 2]
        proxy = PROXY.get(family)
        borrowed = [c for c in published.get(proxy, ()) if len(c) >= 2] if proxy and not own else []
        basis, curves = choose_curves(m, own or borrowed)
        if not curves:
            continue
        if borrowed and basis == "published":
            basis = f"published:{proxy}"
        fits[family] = FamilyFit(family, fit_serial_fraction(curves), basis, len(m), len(own or borrowed))
    return fits


def validation(points: Iterable[PublishedPoint], measured: Mapping[str, Sequence[Curve]]) -> list[dict]:
    """The model's error on every published point past its curve's first core count, two ways:
    ``fit``: the family calibrated as the profiles are (every curve of it); ``held_out``: the
    family calibrated without that point's curve (the other published curves, else the
    measured ones), so the second is a prediction the point had no part in."""
    curves = published_curves(points)
    by_family: dict[str, dict] = {}
    for (family, model, batch), curve in curves.items():
        by_family.setdefault(family, {})[(model, batch)] = curve
    rows = []
    for family, fam_curves in sorted(by_family.items()):
        fam_measured = measured.get(family, ())
        _, all_curves = choose_curves(fam_measured, list(fam_curves.values()))
        s_all = fit_serial_fraction(all_curves)
        for (model, batch), curve in sorted(fam_curves.items()):
            basis, rest = choose_curves(fam_measured, [c for k, c in fam_curves.items() if k != (model, batch)])
            s_out = fit_serial_fraction(rest) if rest else float("nan")
            c0 = min(curve)[0]
            for cores, lat in curve:
                if cores == c0:
                    continue
                fit = predict(curve, s_all, cores)
                held = predict(curve, s_out, cores) if rest else float("nan")
                rows.append({"family": family, "model": model, "batch": batch, "from_cores": c0, "cores": cores,
                             "published_s": lat, "fit_s": fit, "fit_error": fit / lat - 1,
                             "held_out_s": held, "held_out_error": held / lat - 1, "held_out_basis": basis if rest else "none",
                             "s_fit": s_all, "s_held_out": s_out})
    return rows
