"""Cross-policy properties of a matrix, as the paper reports them (facts 36-38): in every
(pipeline, workload) cell IPA is at least as accurate as FA2-low, is not dominated by FA2-high
(where it costs more, it is more accurate: FA2-high pins the paper's heavier set, fact 29, not
the most accurate variants, so IPA may buy accuracy beyond it), and keeps its SLA-violation
rate within a bound of FA2-low's.

The SLA bound. FA2-low runs the fastest variants, so it has the most latency headroom of the
adaptive policies (the paper: "FA2-low has the fewest violations", fact 38); IPA trades some of
that headroom for accuracy. IPA's rate must stay <= max(FA2-low's rate, SLA_FLOOR) + SLA_SLACK.
The floor: rates under 1% are a handful of requests at a load step, noise rather than policy.
The slack, 3 points, from the measured matrix: on the synthetic reference (CBC) IPA's largest
excess over max(FA2-low, 1%) is 1.2 points (tiny-video/bursty: 2.20% vs 0.30%); the same matrix
solved by HiGHS, which breaks ties between equally good configurations differently, gives 2.0
points (tiny-video/fluctuating: 3.02% vs 0.34%). 3 points covers both with a point to spare, and
stays far below what under-provisioning does (a predictor halving the load: 54-99% in the
tiny-video cells). The paper's IPA with LSTM violates 0.3-5.6% on bursty (fact 41).

A reference may itself break a property: the matrix measured as it is (the reference pipelines
on the 2026-12-04 profiles break the SLA bound in three cells, README "Quality gates"). The
regression check then holds the matrix to what the reference shows: a property that held must
keep holding, and one the reference breaks is reported as a known departure, not a regression
(``property_failures`` keys each failure by cell and property for that comparison).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from ipa.quality.reference import ReferenceRow

PAS_EPS = 1e-9      # equal PAS (same variants throughout) must pass
CORES_EPS = 1e-9
SLA_FLOOR = 0.01    # 1% of requests
SLA_SLACK = 0.03    # + 3 percentage points


def sla_bound(fa2_low_rate: float) -> float:
    return max(fa2_low_rate, SLA_FLOOR) + SLA_SLACK


def check_properties(rows: Iterable[ReferenceRow]) -> list[str]:
    """Violations of the cross-policy properties, one message per failing (cell, property);
    empty when all hold. Cells lacking one of the three policies are named too."""
    return list(property_failures(rows).values())


def property_failures(rows: Iterable[ReferenceRow]) -> dict[tuple[str, str], str]:
    """``check_properties`` keyed by (cell, property): ``policies``, ``pas``, ``dominated``, ``sla``."""
    by_cell: dict[tuple[str, str], dict[str, ReferenceRow]] = defaultdict(dict)
    for r in rows:
        by_cell[(r.cell.pipeline, r.cell.workload)][r.cell.policy] = r
    problems: dict[tuple[str, str], str] = {}
    for (pipeline, workload), policies in sorted(by_cell.items()):
        where = f"{pipeline}/{workload}"
        missing = [p for p in ("ipa", "fa2-low", "fa2-high") if p not in policies]
        if missing:
            problems[(where, "policies")] = f"{where}: cannot compare, policies {', '.join(missing)} are missing"
            continue
        ipa, low, high = (policies[p].metrics for p in ("ipa", "fa2-low", "fa2-high"))
        if ipa["pas_mean"] < low["pas_mean"] - PAS_EPS:
            problems[(where, "pas")] = f"{where}: IPA's PAS {ipa['pas_mean']:.4f} is below FA2-low's {low['pas_mean']:.4f}"
        if ipa["cost_cores_mean"] > high["cost_cores_mean"] + CORES_EPS and ipa["pas_mean"] <= high["pas_mean"] + PAS_EPS:
            problems[(where, "dominated")] = (f"{where}: IPA's cores {ipa['cost_cores_mean']:.3f} exceed FA2-high's "
                                              f"{high['cost_cores_mean']:.3f} at no more PAS ({ipa['pas_mean']:.4f} <= "
                                              f"{high['pas_mean']:.4f}): FA2-high dominates it")
        bound = sla_bound(low["sla_violation_rate"])
        if ipa["sla_violation_rate"] > bound:
            problems[(where, "sla")] = (f"{where}: IPA's SLA-violation rate {100 * ipa['sla_violation_rate']:.2f}% exceeds "
                                        f"the bound {100 * bound:.2f}% = max(FA2-low's {100 * low['sla_violation_rate']:.2f}%, "
                                        f"{100 * SLA_FLOOR:g}%) + {100 * SLA_SLACK:g} points")
    return problems


def against_reference(reference: Iterable[ReferenceRow], current: Iterable[ReferenceRow]) -> tuple[list[str], list[str]]:
    """(properties the reference holds that ``current`` breaks, properties both break): the first
    fail a regression check, the second are the reference's known departures."""
    known, now = property_failures(reference), property_failures(current)
    return [m for k, m in now.items() if k not in known], [m for k, m in now.items() if k in known]
