"""The figures, drawn with seaborn from what the runs wrote (results/), never from typed-in numbers.

Each ``*_figure`` function takes tables and returns a matplotlib Figure; ``save`` writes it as
PNG and PDF. The selection of runs (which backend, duration, predictor...) is an argument, so
the workflow decides what a figure shows and this module only draws it.
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ipa.analysis.runs import RunFolderError, latency_samples, read_timeseries, require, select  # noqa: E402

POLICY_ORDER = ("ipa", "fa2-low", "fa2-high", "rim", "static", "oracle", "hpa", "ray-serve", "ipa-plus")
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


def _bar_values(ax, horizontal: bool = False) -> list[float]:
    return [abs(b.get_width() if horizontal else b.get_height()) for b in ax.patches if hasattr(b, "get_height")]


def _label_empty_panels(g, horizontal: bool = False) -> None:
    """A bar panel whose values are all zero says so; when no panel sharing its value axis has a
    bar either, the axis becomes 0..1 instead of an empty -0.05..0.05."""
    for ax in g.axes.flat:
        values = _bar_values(ax, horizontal)
        if values and max(values) == 0:
            ax.text(0.5, 0.5, "all 0", transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.4")
            shared = (ax.get_shared_x_axes() if horizontal else ax.get_shared_y_axes()).get_siblings(ax)
            if not any(max(_bar_values(a, horizontal), default=0) > 0 for a in shared):
                (ax.set_xlim if horizontal else ax.set_ylim)(0, 1)


def _label_bars(g, fmt: str = "{:.2g}") -> None:
    """Each bar's value at its end: a zero bar is otherwise indistinguishable from a missing one."""
    for ax in g.axes.flat:
        for bars in ax.containers:
            ax.bar_label(bars, labels=[fmt.format(v) for v in bars.datavalues], fontsize=6, padding=1.5,
                         color="0.25")


def _label_rows_and_columns(g, rows: Sequence[str], cols: Sequence[str]) -> None:
    """Column names above the top row, row names as the y label of the first column. Seaborn's
    margin titles are rotated text outside the axes: long ones (the metric names) make
    tight_layout squash every panel to a sliver."""
    for (row, col), ax in g.axes_dict.items():
        ax.set_title(col if row == rows[0] else "")
        ax.set_ylabel(row if col == cols[0] else "")
    g.tight_layout()  # FacetGrid's: keeps room for the legend outside the panels


def _plain_log_axis(ax, which: str = "y") -> None:
    """A log axis labelled 2, 5, 10, 20 ..., not 2x10^0 (mathtext ticks collide on short panels)."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


# --- the four load patterns ---------------------------------------------------------------------
def load_patterns_figure(rates: pd.DataFrame) -> plt.Figure:
    """``rates``: long table ``workload, second, rate``."""
    order = list(dict.fromkeys(rates["workload"]))
    g = sns.relplot(data=rates, x="second", y="rate", row="workload", row_order=order, kind="line",
                    height=1.6, aspect=4.5, linewidth=0.8, facet_kws={"sharey": True})
    g.set_axis_labels("time (s)", "trace requests / s")  # each pipeline runs them x its load scale
    g.set_titles(row_template="{row_name}")
    return g.figure


# --- per pipeline time series -----------------------------------------------------------------
def _binned(ts: pd.DataFrame) -> pd.DataFrame:
    b = ts.assign(t=(ts["second"] // BIN_S) * BIN_S).groupby("t", as_index=False)
    return b.agg(pas=("pas", "mean"), cores=("cores", "mean"), violations=("violations", "sum"),
                 unanswered=("unanswered", "sum"))


def identical_groups(series: Mapping[str, Sequence[float]]) -> list[list[str]]:
    """Names whose series are equal point for point (NaN equal to NaN), in groups of two or more,
    in the order given: lines that coincide hide each other, so the figure names them."""
    groups: list[list[str]] = []
    for name, values in series.items():
        v = pd.Series(values, dtype=float).reset_index(drop=True)
        for group in groups:
            w = pd.Series(series[group[0]], dtype=float).reset_index(drop=True)
            if len(v) == len(w) and ((v - w).abs().le(1e-9 * (1 + w.abs())) | (v.isna() & w.isna())).all():
                group.append(name)
                break
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]


NOTE_FONTSIZE = 6
NOTE_CHAR_WIDTH = 0.62  # a character's mean width in ems (DejaVu Sans), with a margin


def _note_identical(ax, long: pd.DataFrame, order: Sequence[str]) -> int:
    """Name the policies whose lines coincide in this panel; returns the note's line count."""
    wide = long.pivot_table(index="t", columns="policy", values="value", dropna=False)
    groups = identical_groups({p: wide[p] for p in order if p in wide})
    if groups:
        # wrapped to the panel's width: a long list would run on over the next panel
        char_px = NOTE_FONTSIZE * NOTE_CHAR_WIDTH * ax.figure.dpi / 72
        width = max(20, int(0.97 * ax.get_window_extent().width / char_px))
        note = textwrap.fill("identical: " + "; ".join(" = ".join(g) for g in groups), width=width,
                             break_long_words=False, break_on_hyphens=False)
        ax.text(0.01, 0.97, note, transform=ax.transAxes, ha="left", va="top", fontsize=NOTE_FONTSIZE, color="0.3",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})
        return note.count("\n") + 1
    return 0


def _headroom(ax, share: float) -> None:
    """Raise the top of the y axis so the top ``share`` of the panel is free (for a note over
    the data, which would otherwise hide the highest line)."""
    bottom, top = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(bottom, top * (top / bottom) ** (share / (1 - share)))
    else:
        ax.set_ylim(bottom, top + (top - bottom) * share / (1 - share))


def timeseries_figure(summary: pd.DataFrame, pipeline: str, where: Mapping[str, object]) -> plt.Figure:
    """PAS, cores and SLA violations over time, one column per workload, one line per policy.

    Each policy has its own colour, dash and marker, so that a line drawn over another stays
    visible; a panel where policies coincide exactly says which. Cores are on a log axis: one
    policy's peak (FA2-high's) would otherwise flatten the others into a line.
    """
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
    labels = {"pas": "PAS (x100)", "cores": "cores (log)", "violations": f"late or unanswered\nper {BIN_S} s",
              "unanswered": f"unanswered (paper's)\nper {BIN_S} s"}
    long["metric"] = long["metric"].map(labels)
    order = _order(long["policy"], POLICY_ORDER)
    workloads = _keys(where, "workload", rows)
    n_points = max(1, long["t"].nunique())
    g = sns.relplot(data=long, x="t", y="value", hue="policy", style="policy", row="metric", col="workload",
                    row_order=list(labels.values()), col_order=workloads, hue_order=order, style_order=order,
                    markers=True, dashes=True, kind="line", linewidth=0.9, markersize=3.5,
                    height=1.9, aspect=1.5, facet_kws={"sharey": "row"})
    g.set_xlabels("time (s)")
    step = max(len(order), n_points // 10)
    note_lines: dict[str, int] = {}
    for (metric, workload), ax in g.axes_dict.items():
        # markers staggered per policy: where lines coincide, each still shows its own marks
        for i, line in enumerate(ax.get_lines()[:len(order)]):
            line.set_markevery((i * step // len(order), step))
        if metric == labels["cores"]:
            _plain_log_axis(ax)
        note_lines[metric] = max(note_lines.get(metric, 0),
                                 _note_identical(ax, long[(long["metric"] == metric) & (long["workload"] == workload)],
                                                 order))
    for metric, lines in note_lines.items():
        if lines:  # the row shares its y axis: raised once, for its longest note
            _headroom(g.axes_dict[(metric, workloads[0])], 0.05 + 0.1 * lines)
    _label_rows_and_columns(g, list(labels.values()), workloads)
    g.figure.suptitle(f"{pipeline}", y=1.02)
    return g.figure


# --- summary bars -------------------------------------------------------------------------------
# Two violation metrics, named apart (README): late or unanswered (this project's, stricter) and
# unanswered only (the paper's: no complete response, fact 36).
VIOLATION_METRICS = {"sla_violation_rate": ("late or unanswered (%)", 100.0),
                     "unanswered_rate": ("unanswered, the paper's (%)", 100.0)}
SUMMARY_METRICS = {"pas_mean": ("PAS (x100)", 100.0), "cost_cores_mean": ("cores (mean, log)", 1.0),
                   **VIOLATION_METRICS}


def _symlog_percent_axis(ax) -> None:
    """Rates from 0 to 100 % where 0.5 % and 75 % both matter: linear below 1 %, log above."""
    ax.set_yscale("symlog", linthresh=1.0, linscale=0.5)
    ax.set_ylim(0, 100)
    ax.yaxis.set_major_locator(FixedLocator([0, 1, 10, 100]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def summary_bars_figure(summary: pd.DataFrame, where: Mapping[str, object]) -> plt.Figure:
    """PAS, cores and both violation rates per pipeline and policy, one column per workload.
    Cores span two orders of magnitude between pipelines (log axis); violation rates span
    0.1 % to 100 % between policies (linear to 1 %, log above)."""
    rows = _nonempty(select(summary, where), "summary bars")
    require(rows, "summary bars", **{c: _expected(where, c, rows) for c in ("pipeline", "workload", "policy")})
    long = rows.melt(id_vars=["pipeline", "workload", "policy", "seed"], value_vars=list(SUMMARY_METRICS),
                     var_name="metric", value_name="value")
    long["value"] *= long["metric"].map({k: s for k, (_, s) in SUMMARY_METRICS.items()})
    long["metric"] = long["metric"].map({k: label for k, (label, _) in SUMMARY_METRICS.items()})
    metrics = [label for label, _ in SUMMARY_METRICS.values()]
    workloads = _keys(where, "workload", rows)
    g = sns.catplot(data=long, x="pipeline", y="value", hue="policy", row="metric", col="workload",
                    kind="bar", row_order=metrics, col_order=workloads, order=_keys(where, "pipeline", rows),
                    hue_order=_order(long["policy"], POLICY_ORDER), errorbar=("pi", 100),
                    height=2.2, aspect=1.4, sharey="row")
    g.set_axis_labels("", "")
    g.tick_params(axis="x", rotation=30)
    for (metric, _), ax in g.axes_dict.items():
        if metric == SUMMARY_METRICS["cost_cores_mean"][0]:
            _plain_log_axis(ax)
        elif metric in {label for label, _ in VIOLATION_METRICS.values()}:
            _symlog_percent_axis(ax)
    _label_empty_panels(g)
    _label_rows_and_columns(g, metrics, workloads)
    return g.figure


# --- latency CDFs ---------------------------------------------------------------------------------
def ecdf(samples: pd.Series) -> tuple[list[float], list[float]]:
    """Sorted finite values and, at each, the fraction of *all* samples at or below it (NaN
    samples count in the denominator: never answered, so never within any latency)."""
    values = np.sort(samples.dropna().to_numpy(dtype=float))
    return values.tolist(), (np.arange(1, len(values) + 1) / len(samples)).tolist()


def latency_cdf_figure(summary: pd.DataFrame, where: Mapping[str, object]) -> plt.Figure:
    """One panel per pipeline: the CDF of end-to-end latency under each policy, SLA marked.
    Per request where the run folders hold requests.csv: the curve ends below 1 by the share of
    requests never answered."""
    rows = _nonempty(select(summary, where), "latency CDF")
    require(rows, "latency CDF", **{c: _expected(where, c, rows) for c in ("pipeline", "policy")})
    rows = rows[rows["seed"] == rows["seed"].min()]
    pipelines = _keys(where, "pipeline", rows)
    order = _order(rows["policy"], POLICY_ORDER)
    colours = dict(zip(order, sns.color_palette(n_colors=len(order))))
    dashes = dict(zip(order, ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1))] * 3))
    ncols = min(3, len(pipelines))
    nrows = -(-len(pipelines) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.6 * nrows), squeeze=False)
    kinds = set()
    for ax, pipeline in zip(axes.flat, pipelines):
        for run in rows[rows["pipeline"] == pipeline].sort_values("policy", key=lambda c: c.map(order.index)).itertuples():
            samples, kind = latency_samples(run.run_dir)
            kinds.add(kind)
            x, y = ecdf(samples)
            ax.step(x, y, where="post", color=colours[run.policy], linestyle=dashes[run.policy], linewidth=1.1,
                    label=run.policy)
        sla = rows.loc[rows["pipeline"] == pipeline, "sla_s"].iloc[0]
        ax.axvline(sla, color="black", linestyle="--", linewidth=0.8)
        ax.text(sla, 0.03, " SLA", fontsize=7)
        ax.set_title(pipeline)
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    for ax in list(axes.flat)[len(pipelines):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction of requests" if kinds == {"per request"} else "fraction")
    fig.supxlabel(f"end-to-end latency (s, {' / '.join(sorted(kinds))})", fontsize=9)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="policy", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


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
    g.legend.set_title("variants\nper stage")
    g.set_titles(col_template="solver: {col_name}")
    g.tight_layout()  # after the log axis and titles changed, so the legend keeps clear of the panels
    return g.figure


# --- objective preference on the Pareto plane ---------------------------------------------------
PREFERENCE_MARKERS = ("o", "X", "s", "D", "^", "v")


def preference_sweep_figure(summary: pd.DataFrame, where: Mapping[str, object], preferences: Sequence[str],
                            references: Sequence[str] = ()) -> plt.Figure:
    """Mean cores against mean PAS of IPA under each preference, one panel per pipeline, the
    points joined in order of cost so the trade-off the weights select reads as a curve. The
    ``references`` policies (run with default weights on the same workload) are grey landmarks.
    Preferences that land on the same point are named: a hidden marker is not a missing run."""
    rows = _nonempty(select(summary, {**where, "weights": list(preferences)}), "preference sweep")
    require(rows, "preference sweep", pipeline=_expected(where, "pipeline", rows), weights=preferences)
    data = rows.groupby(["pipeline", "weights"], as_index=False)[["pas_mean", "cost_cores_mean"]].mean()
    refs = pd.DataFrame(columns=["pipeline", "policy", "pas_mean", "cost_cores_mean", "sla_violation_rate"])
    if references:
        ref_rows = select(summary, {**where, "policy": list(references), "weights": "default"})
        require(ref_rows, "preference sweep references", pipeline=_expected(where, "pipeline", rows),
                policy=references)
        refs = ref_rows.groupby(["pipeline", "policy"], as_index=False)[
            ["pas_mean", "cost_cores_mean", "sla_violation_rate"]].mean()
    pipelines = _keys(where, "pipeline", rows)
    colours = dict(zip(preferences, sns.color_palette(n_colors=len(preferences))))
    markers = dict(zip(preferences, PREFERENCE_MARKERS))
    ncols = min(3, len(pipelines) + 1)
    nrows = -(-(len(pipelines) + 1) // ncols)  # one slot for the legend
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
    for ax, pipeline in zip(axes.flat, pipelines):
        mine = data[data["pipeline"] == pipeline].sort_values("cost_cores_mean")
        ax.plot(mine["cost_cores_mean"], mine["pas_mean"] * 100, color="0.6", linewidth=0.8, zorder=1)
        for i, point in enumerate(mine.itertuples()):
            # later points drawn smaller, so one that lands on another leaves a ring around it
            ax.scatter(point.cost_cores_mean, point.pas_mean * 100, s=110 - 30 * i, marker=markers[point.weights],
                       color=colours[point.weights], edgecolor="white", linewidth=0.6, zorder=2 + i,
                       label=point.weights)
        mine_refs = refs[refs["pipeline"] == pipeline].sort_values(["pas_mean", "cost_cores_mean"])
        for j, ref in enumerate(mine_refs.itertuples()):
            ax.scatter(ref.cost_cores_mean, ref.pas_mean * 100, s=25, marker="P", color="0.45", zorder=1)
            # a cheap point that misses the SLA is not a better trade-off: the label says so
            late = f" ({100 * ref.sla_violation_rate:.0f} % late)" if ref.sla_violation_rate >= 0.01 else ""
            # labels of neighbouring landmarks alternate above and below their points
            ax.annotate(ref.policy + late, (ref.cost_cores_mean, ref.pas_mean * 100),
                        xytext=(3, 3 if j % 2 == 0 else -8), textcoords="offset points", fontsize=6, color="0.35")
        groups = identical_groups({w: [x, y] for w, x, y in zip(mine["weights"], mine["cost_cores_mean"],
                                                                 mine["pas_mean"])})
        if groups:
            ax.text(0.98, 0.03, "same point: " + "; ".join(" = ".join(g) for g in groups), transform=ax.transAxes,
                    ha="right", va="bottom", fontsize=6, color="0.3")
        _plain_log_axis(ax, "x")
        ax.margins(0.15)
        ax.set_title(pipeline, fontsize=9)
        ax.set_xlabel("cores (mean, log)", fontsize=8)
        ax.set_ylabel("PAS (x100)", fontsize=8)
        ax.tick_params(labelsize=7)
    slots = list(axes.flat)
    for ax in slots[len(pipelines):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], linestyle="", marker=markers[w], color=colours[w], markersize=7, label=w)
               for w in preferences]
    if len(refs):
        handles.append(plt.Line2D([], [], linestyle="", marker="P", color="0.45", markersize=5,
                                  label="baselines (default weights)"))
    slots[len(pipelines)].legend(handles=handles, title="priority", loc="center", frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


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
    _label_bars(g)
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
    _label_bars(g, "{:.3g}")  # the twins differ by a few per cent: two digits would hide it
    _label_empty_panels(g, horizontal=True)
    return g.figure


# --- where each policy sits: the Pareto plane per pipeline ----------------------------------------
WORKLOAD_MARKERS = ("o", "s", "^", "D", "v", "P")
BOUND = "oracle"  # IPA given the true peak: the bound the forecasting policies are measured against


def policy_colours(policies: Sequence[str]) -> dict[str, tuple]:
    """One colour per policy, fixed by its place in POLICY_ORDER, so a policy keeps its colour
    whichever others a figure shows."""
    known = list(POLICY_ORDER) + sorted(p for p in policies if p not in POLICY_ORDER)
    # tab10 without its grey (kept for the workload and size keys), then more hues if needed
    palette = [c for i, c in enumerate(sns.color_palette("tab10", 10)) if i != 7]
    palette += sns.color_palette("husl", max(0, len(known) - len(palette)))
    return dict(zip(known, palette))


def marker_area(violation_rate: float) -> float:
    """Marker area (pt^2) of a late-or-unanswered rate in [0, 1]: 0 % is a small dot, 100 % large."""
    return 12.0 + 250.0 * float(violation_rate)


def pareto_figure(summary: pd.DataFrame, where: Mapping[str, object], sweep: Mapping | None = None) -> plt.Figure:
    """Per pipeline, mean PAS against mean cores: one point per policy (colour) and workload
    (marker), its area the late-or-unanswered rate. The oracle's points are ringed in black.
    ``sweep`` (``where`` and ``settings``: tag -> (policy, option, value)) adds each autoscaler's
    knob values on the sweep's workload, joined in knob order and labelled with the value."""
    rows = _nonempty(select(summary, where), "pareto")
    require(rows, "pareto", **{c: _expected(where, c, rows) for c in ("pipeline", "workload", "policy")})
    keys = ["pipeline", "workload", "policy"]
    data = rows.groupby(keys, as_index=False)[["pas_mean", "cost_cores_mean", "sla_violation_rate"]].mean()
    sweep_rows = pd.DataFrame(columns=["pipeline", "weights", "pas_mean", "cost_cores_mean", "sla_violation_rate"])
    settings = dict((sweep or {}).get("settings") or {})
    if settings:
        found = select(summary, {**sweep["where"], "weights": list(settings)})
        require(found, "pareto sweep", pipeline=_expected(sweep["where"], "pipeline", found), weights=list(settings))
        sweep_rows = found.groupby(["pipeline", "weights"], as_index=False)[
            ["pas_mean", "cost_cores_mean", "sla_violation_rate"]].mean()
    pipelines = _keys(where, "pipeline", rows)
    policies = _order(data["policy"], POLICY_ORDER)
    workloads = _keys(where, "workload", rows)
    colours = policy_colours(policies)
    markers = dict(zip(workloads, WORKLOAD_MARKERS * 2))
    ncols = min(3, len(pipelines) + 1)
    nrows = -(-(len(pipelines) + 1) // ncols)  # one slot for the legend
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols, 2.9 * nrows), squeeze=False)
    for ax, pipeline in zip(axes.flat, pipelines):
        mine = data[data["pipeline"] == pipeline]
        for policy in sorted({v[0] for v in settings.values()}):
            tags = sorted((t for t, v in settings.items() if v[0] == policy), key=lambda t: settings[t][2])
            curve = sweep_rows[(sweep_rows["pipeline"] == pipeline) & sweep_rows["weights"].isin(tags)]
            curve = curve.set_index("weights").reindex(tags).dropna(subset=["pas_mean"])
            if curve.empty:
                continue
            ax.plot(curve["cost_cores_mean"], curve["pas_mean"] * 100, color=colours[policy], linewidth=0.7,
                    alpha=0.6, zorder=1)
            ax.scatter(curve["cost_cores_mean"], curve["pas_mean"] * 100, s=[marker_area(v) for v in
                       curve["sla_violation_rate"]], color=colours[policy], alpha=0.35, marker="o", zorder=1)
            for tag, row in curve.iterrows():
                ax.annotate(f"{settings[tag][2]:g}", (row["cost_cores_mean"], row["pas_mean"] * 100), fontsize=5.5,
                            color=colours[policy], xytext=(2, -6), textcoords="offset points")
        for r in mine.itertuples(index=False):
            ax.scatter(r.cost_cores_mean, r.pas_mean * 100, s=marker_area(r.sla_violation_rate),
                       color=colours[r.policy], marker=markers[r.workload], alpha=0.8, zorder=3,
                       edgecolors="black" if r.policy == BOUND else "none", linewidths=1.0)
        _plain_log_axis(ax, "x")
        ax.margins(x=0.08, y=0.12)  # the largest markers sit inside the panel
        ax.set_title(pipeline, fontsize=9)
        ax.set_xlabel("cores (mean, log)", fontsize=8)
        ax.set_ylabel("PAS (x100)", fontsize=8)
        ax.tick_params(labelsize=7)
    slots = list(axes.flat)
    for ax in slots[len(pipelines):]:
        ax.axis("off")
    legend = slots[len(pipelines)]
    handles = [plt.Line2D([], [], linestyle="", marker="o", color=colours[p], markeredgecolor="black" if p == BOUND else
                          colours[p], label=p + (" (true peak)" if p == BOUND else "")) for p in policies]
    handles += [plt.Line2D([], [], linestyle="", marker=markers[w], color="0.4", label=w) for w in workloads]
    handles += [plt.Line2D([], [], linestyle="", marker="o", color="0.6", markersize=math.sqrt(marker_area(v)),
                           label=f"{100 * v:g} % late or unanswered") for v in (0.0, 0.1, 0.5)]
    if settings:
        knobs = sorted({(v[0], v[1]) for v in settings.values()})
        handles.append(plt.Line2D([], [], color="0.5", linewidth=0.7, label="sweep: " + "; ".join(
            f"{p} {o}" for p, o in knobs)))
    legend.legend(handles=handles, loc="center", fontsize=7, frameon=False, labelspacing=1.1)
    fig.tight_layout()
    return fig
