"""The figures, drawn with seaborn from what the runs wrote (results/), never from typed-in numbers.

Each ``*_figure`` function takes tables and returns a matplotlib Figure; ``save`` writes it as
PNG and PDF. The selection of runs (which backend, duration, predictor...) is an argument, so
the workflow decides what a figure shows and this module only draws it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ipa.analysis.runs import RunFolderError, latency_samples, read_timeseries, require, select  # noqa: E402

POLICY_ORDER = ("ipa", "fa2-low", "fa2-high", "rim", "static")
BIN_S = 10  # time series are shown per adaptation interval: per-second lines are unreadable

sns.set_theme(context="paper", style="whitegrid")


def save(fig: plt.Figure, png: str | Path, pdf: str | Path) -> None:
    for path in (png, pdf):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=150, bbox_inches="tight")
    # No creation date: the same results give the same PDF.
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)


def _order(values: Sequence[str], preferred: Sequence[str]) -> list[str]:
    present = list(dict.fromkeys(values))
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def _expected(where: Mapping[str, object], column: str, rows: pd.DataFrame) -> list:
    """What the selection asks for in ``column`` (every listed value), else what the table has."""
    listed = where.get(column)
    if isinstance(listed, (list, tuple)):
        return list(listed)
    return [listed] if listed is not None else list(dict.fromkeys(rows[column]))


def _keys(where: Mapping[str, object], column: str, rows: pd.DataFrame) -> list:
    """The order of a facet: as the config lists it when it does, else as the table has it."""
    listed = where.get(column)
    present = list(dict.fromkeys(rows[column]))
    if isinstance(listed, (list, tuple)):
        return [v for v in listed if v in present]
    return present


def _nonempty(rows: pd.DataFrame, what: str) -> pd.DataFrame:
    if rows.empty:
        raise RunFolderError(f"{what}: no matching run in results/summary.csv")
    return rows


def _label_empty_panels(g) -> None:
    """A bar panel whose values are all zero says so, instead of drawing an empty -0.05..0.05 axis."""
    for ax in g.axes.flat:
        heights = [abs(b.get_height()) for b in ax.patches if hasattr(b, "get_height")]
        if heights and max(heights) == 0:
            ax.set_ylim(0, 1)
            ax.text(0.5, 0.5, "all 0", transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.4")


# --- the four load patterns ---------------------------------------------------------------------
def load_patterns_figure(rates: pd.DataFrame) -> plt.Figure:
    """``rates``: long table ``workload, second, rate``."""
    order = list(dict.fromkeys(rates["workload"]))
    g = sns.relplot(data=rates, x="second", y="rate", row="workload", row_order=order, kind="line",
                    height=1.6, aspect=4.5, linewidth=0.8, facet_kws={"sharey": True})
    g.set_axis_labels("time (s)", "requests / s")
    g.set_titles(row_template="{row_name}")
    return g.figure


# --- per pipeline time series -----------------------------------------------------------------
def _binned(ts: pd.DataFrame) -> pd.DataFrame:
    b = ts.assign(t=(ts["second"] // BIN_S) * BIN_S).groupby("t", as_index=False)
    return b.agg(pas=("pas", "mean"), cores=("cores", "mean"), violations=("violations", "sum"),
                 unanswered=("unanswered", "sum"))


def timeseries_figure(summary: pd.DataFrame, pipeline: str, where: Mapping[str, object]) -> plt.Figure:
    """PAS, cores and SLA violations over time, one column per workload, one line per policy."""
    rows = _nonempty(select(summary, {**where, "pipeline": pipeline}), f"timeseries of {pipeline}")
    require(rows, f"timeseries of {pipeline}", workload=_expected(where, "workload", rows),
            policy=_expected(where, "policy", rows))
    rows = rows[rows["seed"] == rows["seed"].min()]
    frames = []
    for run in rows.itertuples(index=False):
        b = _binned(read_timeseries(run.run_dir))
        frames.append(b.assign(workload=run.workload, policy=run.policy))
    data = pd.concat(frames, ignore_index=True)
    data["pas"] *= 100
    long = data.melt(id_vars=["t", "workload", "policy"], value_vars=["pas", "cores", "violations", "unanswered"],
                     var_name="metric", value_name="value")
    labels = {"pas": "PAS (x100)", "cores": "cores", "violations": f"late or unanswered / {BIN_S} s",
              "unanswered": f"unanswered (paper's) / {BIN_S} s"}
    long["metric"] = long["metric"].map(labels)
    g = sns.relplot(data=long, x="t", y="value", hue="policy", row="metric", col="workload",
                    row_order=list(labels.values()), col_order=_keys(where, "workload", rows),
                    hue_order=_order(long["policy"], POLICY_ORDER), kind="line", linewidth=0.9,
                    height=1.9, aspect=1.5, facet_kws={"sharey": "row", "margin_titles": True})
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    g.set_axis_labels("time (s)", "")
    g.figure.suptitle(f"{pipeline}", y=1.02)
    return g.figure


# --- summary bars -------------------------------------------------------------------------------
# Two violation metrics, named apart (README): late or unanswered (this project's, stricter) and
# unanswered only (the paper's: no complete response, fact 36).
VIOLATION_METRICS = {"sla_violation_rate": ("late or unanswered (%)", 100.0),
                     "unanswered_rate": ("unanswered, the paper's (%)", 100.0)}
SUMMARY_METRICS = {"pas_mean": ("PAS (x100)", 100.0), "cost_cores_mean": ("cores (mean)", 1.0),
                   **VIOLATION_METRICS}


def summary_bars_figure(summary: pd.DataFrame, where: Mapping[str, object]) -> plt.Figure:
    rows = _nonempty(select(summary, where), "summary bars")
    require(rows, "summary bars", **{c: _expected(where, c, rows) for c in ("pipeline", "workload", "policy")})
    long = rows.melt(id_vars=["pipeline", "workload", "policy", "seed"], value_vars=list(SUMMARY_METRICS),
                     var_name="metric", value_name="value")
    long["value"] *= long["metric"].map({k: s for k, (_, s) in SUMMARY_METRICS.items()})
    long["metric"] = long["metric"].map({k: label for k, (label, _) in SUMMARY_METRICS.items()})
    g = sns.catplot(data=long, x="pipeline", y="value", hue="policy", row="metric", col="workload",
                    kind="bar", row_order=[label for label, _ in SUMMARY_METRICS.values()],
                    col_order=_keys(where, "workload", rows), order=_keys(where, "pipeline", rows),
                    hue_order=_order(long["policy"], POLICY_ORDER), errorbar=("pi", 100),
                    height=2.2, aspect=1.4, sharey=False, margin_titles=True)
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    g.set_axis_labels("", "")
    g.tick_params(axis="x", rotation=30)
    _label_empty_panels(g)
    return g.figure


# --- latency CDFs ---------------------------------------------------------------------------------
def latency_cdf_figure(summary: pd.DataFrame, where: Mapping[str, object]) -> plt.Figure:
    """One panel per pipeline: the CDF of end-to-end latency under each policy, SLA marked."""
    rows = _nonempty(select(summary, where), "latency CDF")
    require(rows, "latency CDF", **{c: _expected(where, c, rows) for c in ("pipeline", "policy")})
    rows = rows[rows["seed"] == rows["seed"].min()]
    frames, kinds = [], set()
    for run in rows.itertuples(index=False):
        samples, kind = latency_samples(run.run_dir)
        kinds.add(kind)
        frames.append(pd.DataFrame({"latency_s": samples.to_numpy(), "pipeline": run.pipeline,
                                    "policy": run.policy}))
    data = pd.concat(frames, ignore_index=True)
    pipelines = _keys(where, "pipeline", rows)
    g = sns.displot(data=data, x="latency_s", hue="policy", col="pipeline", col_order=pipelines,
                    hue_order=_order(data["policy"], POLICY_ORDER), kind="ecdf", height=2.4, aspect=1.1,
                    facet_kws={"sharex": False})
    for pipeline, ax in zip(pipelines, g.axes.flat):
        sla = rows.loc[rows["pipeline"] == pipeline, "sla_s"].iloc[0]
        ax.axvline(sla, color="black", linestyle="--", linewidth=0.8)
        ax.text(sla, 0.03, " SLA", fontsize=7)
    g.set_titles(col_template="{col_name}")
    g.set_axis_labels(f"end-to-end latency (s, {' / '.join(sorted(kinds))})", "fraction")
    return g.figure


# --- decision time vs pipeline size ------------------------------------------------------------
def decision_time_figure(bench: pd.DataFrame) -> plt.Figure:
    """``bench``: one row per solve with ``stages``, ``variants``, ``solver``, ``solve_time_s``."""
    data = bench.assign(variants=bench["variants"].astype(str))
    g = sns.relplot(data=data, x="stages", y="solve_time_s", hue="variants", col="solver", kind="line",
                    marker="o", errorbar=("pi", 100), height=2.8, aspect=1.2,
                    hue_order=sorted(data["variants"].unique(), key=int))
    g.set(yscale="log")
    for ax in g.axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    g.set_axis_labels("pipeline stages", "decision time (s)")
    g.legend.set_title("variants / stage")
    g.set_titles(col_template="solver: {col_name}")
    return g.figure


# --- objective preference on the Pareto plane ---------------------------------------------------
def preference_sweep_figure(summary: pd.DataFrame, where: Mapping[str, object],
                            preferences: Sequence[str]) -> plt.Figure:
    rows = _nonempty(select(summary, {**where, "weights": list(preferences)}), "preference sweep")
    require(rows, "preference sweep", pipeline=_expected(where, "pipeline", rows), weights=preferences)
    data = rows.groupby(["pipeline", "weights"], as_index=False)[["pas_mean", "cost_cores_mean"]].mean()
    data["PAS (x100)"] = data["pas_mean"] * 100
    pipelines = _keys(where, "pipeline", rows)
    g = sns.relplot(data=data, x="cost_cores_mean", y="PAS (x100)", hue="weights", style="weights",
                    col="pipeline", col_order=pipelines, hue_order=list(preferences), style_order=list(preferences),
                    s=70, height=2.4, aspect=1.0, facet_kws={"sharex": False, "sharey": False})
    g.set_axis_labels("cores (mean)", "PAS (x100)")
    g.set_titles(col_template="{col_name}")
    g.legend.set_title("priority")
    return g.figure


# --- predictor ablation -------------------------------------------------------------------------
def predictor_ablation_figure(summary: pd.DataFrame, where: Mapping[str, object],
                              predictors: Sequence[str]) -> plt.Figure:
    rows = _nonempty(select(summary, {**where, "predictor": list(predictors)}), "predictor ablation")
    require(rows, "predictor ablation", pipeline=_expected(where, "pipeline", rows), predictor=predictors)
    long = rows.melt(id_vars=["pipeline", "predictor", "seed"], value_vars=list(VIOLATION_METRICS),
                     var_name="metric", value_name="value")
    long["value"] *= long["metric"].map({k: s for k, (_, s) in VIOLATION_METRICS.items()})
    long["metric"] = long["metric"].map({k: label for k, (label, _) in VIOLATION_METRICS.items()})
    g = sns.catplot(data=long, x="pipeline", y="value", hue="predictor", hue_order=list(predictors),
                    row="metric", row_order=[label for label, _ in VIOLATION_METRICS.values()],
                    order=_keys(where, "pipeline", rows), sharey=False,
                    kind="bar", errorbar=("pi", 100), height=2.4, aspect=2.2)
    g.set_titles(row_template="{row_name}")
    g.set_axis_labels("", "% of requests sent")
    _label_empty_panels(g)
    return g.figure


# --- sim vs live fidelity -----------------------------------------------------------------------
FIDELITY_METRICS = {"pas_mean": "PAS (x100)", "cost_cores_mean": "cores (mean)",
                    "sla_violation_rate": "late or unanswered (%)", "unanswered_rate": "unanswered, the paper's (%)",
                    "latency_p99_s": "p99 latency (s)"}


def fidelity_figure(summary: pd.DataFrame, where: Mapping[str, object], live_backend: str) -> plt.Figure:
    """Each live run next to its simulated twin (same pipeline, workload, policy, seed, duration)."""
    rows = _nonempty(select(summary, {**where, "backend": ["sim", live_backend]}), "fidelity")
    keys = ["pipeline", "workload", "policy", "seed"]
    live = rows[rows["backend"] == live_backend]
    sim = rows[rows["backend"] == "sim"]
    pairs = live[keys].merge(sim[keys], on=keys)
    if len(pairs) < len(live):
        raise RunFolderError(f"fidelity: {len(live) - len(pairs)} live run(s) have no simulated twin")
    rows = rows.merge(pairs, on=keys)
    rows = rows.assign(run=rows["pipeline"] + " / " + rows["workload"] + " / " + rows["policy"],
                       pas_mean=rows["pas_mean"] * 100, sla_violation_rate=rows["sla_violation_rate"] * 100,
                       unanswered_rate=rows["unanswered_rate"] * 100)
    long = rows.melt(id_vars=["run", "backend", "seed"], value_vars=list(FIDELITY_METRICS),
                     var_name="metric", value_name="value")
    long["metric"] = long["metric"].map(FIDELITY_METRICS)
    g = sns.catplot(data=long, y="run", x="value", hue="backend", col="metric",
                    col_order=list(FIDELITY_METRICS.values()), hue_order=["sim", live_backend], kind="bar",
                    errorbar=("pi", 100), sharex=False, height=2.6, aspect=1.0)
    g.set_titles(col_template="{col_name}")
    g.set_axis_labels("", "")
    return g.figure
