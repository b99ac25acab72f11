"""ipa.analysis on small synthetic run folders (test data written here, not measurements)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ipa.analysis import RunFolderError, figures, read_run, summary_table, write_summary
from ipa.analysis.runs import latency_samples, require, select


def write_run(root: Path, *, backend="sim", pipeline="video", workload="bursty", duration=60, policy="ipa",
              predictor="max", weights="default", seed=0, pas=0.5, cores=4.0, late_every=0, requests=False,
              dropped=0, complete=True, **summary_overrides) -> Path:
    """A run folder in the workflow's layout, with self-consistent made-up numbers."""
    folder = root / backend / pipeline / workload / f"{duration}s" / policy / predictor / weights / f"seed{seed}"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    seconds = np.arange(duration)
    arrivals = rng.integers(3, 9, size=duration)
    late = np.array([1 if late_every and s % late_every == 0 else 0 for s in seconds])
    late = np.minimum(late, arrivals)
    ts = pd.DataFrame({
        "second": seconds, "arrivals": arrivals, "completed": arrivals - late, "completed_late": late,
        "dropped": 0, "failed": 0, "latency_p50_s": 0.5, "latency_p99_s": 0.9 + 0.1 * (seconds % 3),
        "pas": pas, "cores": cores, "configuration": "{}",
    })
    ts.to_csv(folder / "timeseries.csv", index=False)
    sent, n_late = int(arrivals.sum()), int(late.sum())
    if requests:
        def status(i):
            return "late" if i < n_late else "dropped" if i < n_late + dropped else "ok"
        rows = [{"id": i, "intended_s": i * 0.1, "sent_s": i * 0.1, "done_s": i * 0.1 + 0.3, "status": status(i),
                 "latency_s": "" if status(i) == "dropped" else 0.3 + (i % 7) * 0.1, "detail": ""}
                for i in range(sent)]
        pd.DataFrame(rows).to_csv(folder / "requests.csv", index=False)
    summary = {
        "requests_sent": sent, "requests_completed": sent - dropped, "requests_on_time": sent - n_late - dropped,
        "requests_late": n_late, "requests_dropped": dropped, "requests_failed": 0,
        "sla_violation_rate": (n_late + dropped) / sent, "unanswered_rate": dropped / sent,
        "drop_rate": dropped / sent, "pas_mean": pas,
        "cost_cores_mean": cores,
        "latency_p50_s": 0.5, "latency_p99_s": 1.1, "decision_time_p50_s": 0.01, "decision_time_p99_s": 0.02,
        "decisions": duration // 10, "infeasible_decisions": 0,
        "params": {"pipeline": pipeline, "workload": workload, "policy": policy, "predictor": predictor,
                   "backend": backend, "seed": seed, "sla_s": 2.0, "drop_limit_s": 4.0, "duration_s": duration,
                   "interval_s": 10, "alpha": 2.0, "beta": 1.0, "gamma": 1e-6},
        "versions": {}, "git_revision": "test", "complete": complete,
    }
    summary.update(summary_overrides)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_summary_row_has_keys_counts_and_the_weights_label_from_the_layout(tmp_path):
    folder = write_run(tmp_path, weights="cost", late_every=5, pas=0.42)
    row = read_run(folder)
    assert (row["backend"], row["pipeline"], row["workload"], row["policy"], row["predictor"]) == \
        ("sim", "video", "bursty", "ipa", "max")
    assert row["weights"] == "cost" and row["duration_s"] == 60 and row["seed"] == 0
    assert row["violations"] == row["requests_late"] == 12  # seconds 0, 5, ..., 55
    assert row["pas_mean"] == 0.42


def test_write_summary_is_sorted_and_round_trips(tmp_path):
    runs = [write_run(tmp_path, policy=p, workload=w) for p in ("rim", "ipa") for w in ("steady-low", "bursty")]
    out = tmp_path / "summary.csv"
    table = write_summary([r / "summary.json" for r in runs], out)
    back = pd.read_csv(out)
    assert len(back) == 4
    assert list(back["workload"]) == ["bursty", "bursty", "steady-low", "steady-low"]
    assert list(back["policy"]) == ["ipa", "rim", "ipa", "rim"]
    assert list(back.columns) == list(table.columns)


def test_incomplete_or_missing_run_folders_are_errors_naming_the_folder(tmp_path):
    partial = write_run(tmp_path, complete=False)
    with pytest.raises(RunFolderError, match="partial"):
        read_run(partial)
    (partial / "summary.json").unlink()
    with pytest.raises(RunFolderError, match="did not finish") as e:
        summary_table([partial])
    assert str(partial) in str(e.value)


def test_requests_that_do_not_add_up_are_an_error(tmp_path):
    folder = write_run(tmp_path, requests_dropped=3)  # sent no longer equals completed + dropped + failed
    with pytest.raises(RunFolderError, match="do not add up"):
        read_run(folder)


def test_select_and_require(tmp_path):
    table = summary_table([write_run(tmp_path, policy=p) for p in ("ipa", "rim")])
    assert list(select(table, {"policy": ["rim"], "backend": "sim"})["policy"]) == ["rim"]
    require(table, "x", policy=["ipa", "rim"])
    with pytest.raises(RunFolderError, match="fa2-low"):
        require(table, "x", policy=["ipa", "fa2-low"])


def test_latency_samples_prefer_per_request_records(tmp_path):
    plain = write_run(tmp_path, seed=1)
    samples, kind = latency_samples(plain)
    assert kind == "per-second p99" and len(samples) == 60
    detailed = write_run(tmp_path, seed=2, requests=True, dropped=5)
    samples, kind = latency_samples(detailed)
    row = read_run(detailed)
    # one sample per request sent; the dropped ones are NaN (never answered), not left out
    assert kind == "per request" and len(samples) == row["requests_sent"]
    assert samples.notna().sum() == row["requests_completed"] and samples.isna().sum() == 5


def test_identical_groups_names_only_series_equal_point_for_point():
    nan = float("nan")
    series = {"a": [1, 2, nan], "b": [1, 2, nan], "c": [1, 2, 3], "d": [1, 2.000001, nan], "e": [1, 2, 3]}
    assert figures.identical_groups(series) == [["a", "b"], ["c", "e"]]
    assert figures.identical_groups({"a": [0, 0], "b": [0]}) == []


def test_ecdf_counts_unanswered_requests_in_the_denominator():
    x, y = figures.ecdf(pd.Series([0.3, float("nan"), 0.1, 0.2]))
    assert x == [0.1, 0.2, 0.3] and y == [0.25, 0.5, 0.75]


@pytest.fixture
def matrix(tmp_path):
    """Two pipelines x two workloads x two policies, plus sweep, ablation and live twins."""
    root = tmp_path / "runs"
    for p in ("video", "nlp"):
        for w in ("bursty", "steady-low"):
            for x, pas, cores in (("ipa", 0.5, 4), ("fa2-low", 0.4, 3)):
                write_run(root, pipeline=p, workload=w, policy=x, pas=pas, cores=cores, late_every=7)
        for g, pas, cores in (("accuracy", 0.6, 9), ("cost", 0.3, 2)):
            write_run(root, pipeline=p, weights=g, pas=pas, cores=cores)
        write_run(root, pipeline=p, predictor="reactive", late_every=3)
    for backend in ("sim", "local"):
        write_run(root, backend=backend, duration=30, requests=backend == "local")
    table = summary_table(sorted(f.parent for f in root.rglob("summary.json")))
    return table


MAIN = {"backend": "sim", "duration_s": 60, "predictor": "max", "weights": "default"}


@pytest.mark.parametrize("name, draw", [
    ("timeseries", lambda t: figures.timeseries_figure(t, "video", MAIN)),
    ("summary_bars", lambda t: figures.summary_bars_figure(t, MAIN)),
    ("latency_cdf", lambda t: figures.latency_cdf_figure(t, {**MAIN, "workload": "bursty"})),
    ("preference_sweep", lambda t: figures.preference_sweep_figure(
        t, {"backend": "sim", "policy": "ipa", "workload": "bursty"}, ["accuracy", "cost"])),
    ("predictor_ablation", lambda t: figures.predictor_ablation_figure(
        t, {"backend": "sim", "duration_s": 60, "weights": "default", "policy": "ipa", "workload": "bursty"},
        ["reactive", "max"])),
    ("fidelity", lambda t: figures.fidelity_figure(t, {"duration_s": 30}, "local")),
])
def test_each_figure_draws_from_the_table_and_saves_png_and_pdf(matrix, tmp_path, name, draw):
    fig = draw(matrix)
    png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
    figures.save(fig, png, pdf)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"


def test_timeseries_figure_plots_each_policy_from_the_run_folders(matrix):
    fig = figures.timeseries_figure(matrix, "video", MAIN)
    # 4 metrics (PAS, cores, late-or-unanswered, unanswered) x 2 workloads panels; the PAS panel
    # holds one line per policy at the runs' PAS x 100
    assert len(fig.axes) == 8
    pas_lines = {round(float(np.mean(line.get_ydata())), 6) for line in fig.axes[0].get_lines()
                 if len(line.get_ydata())}
    assert pas_lines == {50.0, 40.0}


def test_timeseries_policies_keep_distinct_styles_and_coinciding_ones_are_named(tmp_path):
    root = tmp_path / "runs"
    # static repeats ipa's numbers exactly (same seed, PAS, cores): its line lies on ipa's
    for policy, pas, cores in (("ipa", 0.5, 4), ("fa2-low", 0.4, 3), ("static", 0.5, 4)):
        write_run(root, policy=policy, pas=pas, cores=cores, late_every=7)
    table = summary_table(sorted(f.parent for f in root.rglob("summary.json")))
    fig = figures.timeseries_figure(table, "video", MAIN)
    pas_ax, cores_ax = fig.axes[0], fig.axes[1]
    lines = [line for line in pas_ax.get_lines() if len(line.get_ydata())]
    assert len(lines) == 3
    assert len({(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines}) == 3
    assert len({line.get_marker() for line in lines}) == 3  # apart even in greyscale
    notes = [t.get_text() for t in pas_ax.texts]
    assert notes == ["identical: ipa = static"]
    assert cores_ax.get_yscale() == "log"


def test_a_long_identical_note_is_wrapped_inside_its_panel(tmp_path):
    root = tmp_path / "runs"
    # eight policies with the same numbers: the note names all of them and, on one line, would
    # run on over the neighbouring panel
    # (fa2-low lower, so the others' line runs along the top of the panel, under the note)
    policies = ("ipa", "fa2-high", "rim", "static", "oracle", "hpa", "ray-serve", "ipa-plus")
    for policy in policies + ("fa2-low",):
        write_run(root, policy=policy, predictor="oracle" if policy == "oracle" else "max",
                  pas=0.4 if policy == "fa2-low" else 0.5)
    table = summary_table(sorted(f.parent for f in root.rglob("summary.json")))
    fig = figures.timeseries_figure(table, "video", {k: v for k, v in MAIN.items() if k != "predictor"})
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    (note,) = ax.texts
    assert all(p in note.get_text() for p in policies) and "\n" in note.get_text()
    box, panel = note.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert panel.x0 <= box.x0 and box.x1 <= panel.x1, (box, panel)
    # and it sits above the data: the highest point of every line is drawn below the note
    top = max(float(np.nanmax(line.get_ydata())) for line in ax.get_lines() if len(line.get_ydata()))
    assert ax.transData.transform((0, top))[1] < box.y0


def test_latency_cdf_is_per_request_and_stops_short_by_the_unanswered_share(tmp_path):
    root = tmp_path / "runs"
    folders = {policy: write_run(root, policy=policy, requests=True, dropped=d, late_every=4)
               for policy, d in (("ipa", 0), ("fa2-low", 30))}
    write_run(root, pipeline="nlp", policy="ipa", requests=True)
    write_run(root, pipeline="nlp", policy="fa2-low", requests=True)
    table = summary_table(sorted(f.parent for f in root.rglob("summary.json")))
    fig = figures.latency_cdf_figure(table, MAIN)
    video = next(ax for ax in fig.axes if ax.get_title() == "video")
    curves = {line.get_label(): line for line in video.get_lines() if not line.get_label().startswith("_")}
    assert set(curves) == {"ipa", "fa2-low"}
    for policy, folder in folders.items():
        r = pd.read_csv(folder / "requests.csv")
        answered = r[r["status"].isin(["ok", "late"])]
        line = curves[policy]
        assert max(line.get_xdata()) == pytest.approx(answered["latency_s"].max())
        assert line.get_ydata()[-1] == pytest.approx(len(answered) / len(r))
    assert curves["fa2-low"].get_ydata()[-1] < 1.0 == curves["ipa"].get_ydata()[-1]
    assert "per request" in fig.texts[0].get_text()  # the x label says what the samples are


def test_summary_bars_put_cores_on_a_log_axis_and_rates_from_0_to_100(matrix):
    fig = figures.summary_bars_figure(matrix, MAIN)
    scales = [ax.get_yscale() for ax in fig.axes]
    # rows: PAS, cores, late-or-unanswered, unanswered; two workload columns each
    assert scales == ["linear"] * 2 + ["log"] * 2 + ["symlog"] * 4
    late, unanswered = fig.axes[4:6], fig.axes[6:8]
    assert all(ax.get_ylim() == (0, 100) for ax in late)
    # nothing went unanswered in the fixture: that row says so on a plain 0..1 axis
    assert all(ax.get_ylim() == (0, 1) and "all 0" in [t.get_text() for t in ax.texts] for ax in unanswered)


def test_violation_figures_show_both_metrics_from_the_table(matrix):
    # every run of the fixture answers all its requests: the paper's metric is 0 everywhere, the
    # late-or-unanswered rate is the fixture's 1-in-3 (reactive) and 1-in-7 (max) late seconds
    where = {"backend": "sim", "duration_s": 60, "weights": "default", "policy": "ipa", "workload": "bursty"}
    fig = figures.predictor_ablation_figure(matrix, where, ["reactive", "max"])
    late_axes, unanswered_axes = fig.axes[0], fig.axes[1]
    assert "late or unanswered" in late_axes.get_title() and "unanswered, the paper" in unanswered_axes.get_title()
    heights = sorted(round(p.get_height(), 3) for p in late_axes.patches if p.get_height() > 0)
    rows = select(matrix, {**where, "predictor": ["reactive", "max"]})
    assert heights == sorted(round(100 * r, 3) for r in rows["sla_violation_rate"])
    assert all(p.get_height() == 0 for p in unanswered_axes.patches)
    # the all-zero panel says so and gets a readable axis; the panel with late requests does not
    labels = lambda ax: [t.get_text() for t in ax.texts]
    assert "all 0" in labels(unanswered_axes) and unanswered_axes.get_ylim() == (0, 1)
    assert "all 0" not in labels(late_axes)
    bars = figures.summary_bars_figure(matrix, MAIN)
    assert len(bars.axes) == 4 * 2  # PAS, cores, two violation rates x 2 workloads


def test_a_figure_whose_runs_are_missing_says_so(matrix):
    with pytest.raises(RunFolderError, match="no matching run"):
        figures.summary_bars_figure(matrix, {**MAIN, "pipeline": "sum-qa"})
    with pytest.raises(RunFolderError, match="ewma"):
        figures.predictor_ablation_figure(matrix, {"backend": "sim", "policy": "ipa", "workload": "bursty",
                                                   "weights": "default"}, ["reactive", "ewma"])


def test_fidelity_needs_a_simulated_twin_for_every_live_run(tmp_path):
    root = tmp_path / "runs"
    write_run(root, backend="local", duration=30)
    table = summary_table([f.parent for f in root.rglob("summary.json")])
    with pytest.raises(RunFolderError, match="no simulated twin"):
        figures.fidelity_figure(table, {"duration_s": 30}, "local")


def test_decision_time_figure(tmp_path):
    bench = pd.DataFrame([{"stages": s, "variants": v, "solver": solver, "solve_time_s": 0.001 * s * v * k}
                          for s in (1, 2, 3) for v in (1, 2) for solver in ("cbc", "highs") for k in (1, 3)])
    fig = figures.decision_time_figure(bench)
    figures.save(fig, tmp_path / "d.png", tmp_path / "d.pdf")
    assert (tmp_path / "d.png").stat().st_size > 1000
    assert [ax.get_title() for ax in fig.axes] == ["solver: cbc", "solver: highs"]
    for ax in fig.axes:
        assert ax.get_yscale() == "log"
        lines = [line for line in ax.get_lines() if len(line.get_xdata()) == 3]
        assert len(lines) == 2  # one per variant count
        # each point is the mean of its two solves (1x and 3x): 2 ms x stages x variants
        got = sorted(tuple(np.round(line.get_ydata(), 9)) for line in lines)
        assert got == [tuple(0.002 * s * v for s in (1, 2, 3)) for v in (1, 2)]


def test_load_patterns_draw_one_panel_per_workload_from_its_rates():
    rates = pd.DataFrame([{"workload": w, "second": t, "rate": r * (t % 5 + 1)}
                          for w, r in (("bursty", 2), ("steady-low", 1)) for t in range(30)])
    fig = figures.load_patterns_figure(rates)
    assert [ax.get_title() for ax in fig.axes] == ["bursty", "steady-low"]
    for ax, r in zip(fig.axes, (2, 1)):
        (line,) = [line for line in ax.get_lines() if len(line.get_xdata())]
        assert list(line.get_ydata()) == [r * (t % 5 + 1) for t in range(30)]


def test_preference_plane_names_coinciding_preferences_and_flags_late_baselines(tmp_path):
    root = tmp_path / "runs"
    for weights, pas, cores in (("accuracy", 0.6, 9), ("balance", 0.3, 2), ("cost", 0.3, 2)):
        write_run(root, policy="ipa", weights=weights, pas=pas, cores=cores)
    write_run(root, policy="fa2-low", pas=0.2, cores=1, late_every=2)  # half its seconds late
    write_run(root, policy="fa2-high", pas=0.7, cores=12)
    table = summary_table(sorted(f.parent for f in root.rglob("summary.json")))
    where = {"backend": "sim", "policy": "ipa", "workload": "bursty", "pipeline": "video"}
    fig = figures.preference_sweep_figure(table, where, ["accuracy", "balance", "cost"], ["fa2-low", "fa2-high"])
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "same point: balance = cost" in texts
    late_share = 100 * read_run(next(root.rglob("fa2-low/**/seed0")))["sla_violation_rate"]
    assert f"fa2-low ({late_share:.0f} % late)" in texts and "fa2-high" in texts
    # three preference points (the two that coincide both drawn) and two baselines
    offsets = [tuple(c.get_offsets()[0]) for c in ax.collections]
    assert sorted(offsets) == sorted([(9, 60), (2, 30), (2, 30), (1, 20), (12, 70)])


def test_fidelity_panel_with_no_violation_on_either_side_says_so(matrix):
    fig = figures.fidelity_figure(matrix, {"duration_s": 30}, "local")
    late = next(ax for ax in fig.axes if ax.get_title() == "late or unanswered (%)")
    assert "all 0" in [t.get_text() for t in late.texts] and late.get_xlim() == (0, 1)


def test_fidelity_labels_tell_apart_twins_a_few_per_cent_apart(tmp_path):
    # the measured case: p99 1.1137 s simulated against 1.1709 s live (4.9 %)
    root = tmp_path / "runs"
    write_run(root, backend="sim", duration=30, latency_p99_s=1.1137)
    write_run(root, backend="local", duration=30, latency_p99_s=1.1709)
    table = summary_table(sorted(f.parent for f in root.rglob("summary.json")))
    fig = figures.fidelity_figure(table, {"duration_s": 30}, "local")
    p99 = next(ax for ax in fig.axes if ax.get_title() == "p99 latency (s)")
    labels = sorted(t.get_text() for t in p99.texts)
    assert labels == ["1.11", "1.17"], labels


def test_pareto_plane_places_each_policy_and_workload_and_draws_the_sweep_in_knob_order(tmp_path):
    root = tmp_path / "runs"
    write_run(root, policy="ipa", pas=0.5, cores=4, late_every=5)
    write_run(root, policy="oracle", predictor="oracle", pas=0.52, cores=5)
    write_run(root, policy="hpa", pas=0.4, cores=8, late_every=2)
    write_run(root, policy="hpa", workload="steady-low", pas=0.4, cores=3)
    for policy, workload in (("ipa", "steady-low"), ("oracle", "steady-low")):
        write_run(root, policy=policy, workload=workload, predictor="oracle" if policy == "oracle" else "max",
                  pas=0.45, cores=2)
    sweep = {"hpa-target-utilisation-0p9": ("hpa", "target_utilisation", 0.9),
             "hpa-target-utilisation-0p5": ("hpa", "target_utilisation", 0.5)}
    for tag, cores in (("hpa-target-utilisation-0p5", 12), ("hpa-target-utilisation-0p9", 6)):
        write_run(root, policy="hpa", weights=tag, pas=0.4, cores=cores)
    table = summary_table(sorted(f.parent for f in root.rglob("summary.json")))
    where = {"backend": "sim", "predictor": ["max", "oracle"], "weights": "default", "pipeline": ["video"],
             "workload": ["bursty", "steady-low"], "policy": ["ipa", "oracle", "hpa"]}
    fig = figures.pareto_figure(table, where, {"where": {"backend": "sim", "predictor": "max", "workload": "bursty"},
                                                "settings": sweep})
    ax = fig.axes[0]
    points = {}
    for c in ax.collections:
        for xy, size in zip(c.get_offsets(), c.get_sizes() if len(c.get_sizes()) > 1 else
                            [c.get_sizes()[0]] * len(c.get_offsets())):
            points.setdefault((float(xy[0]), round(float(xy[1]), 6)), []).append((float(size), c))
    # the six matrix runs at (cores, PAS x 100) and the two sweep settings
    for cores, pas in ((4, 50), (5, 52), (8, 40), (3, 40), (2, 45), (12, 40), (6, 40)):
        assert (cores, pas) in points, (cores, pas, sorted(points))
    # marker area grows with the late share: hpa (half its seconds late) > ipa (1 in 5) > oracle (none)
    late = {run: read_run(next(root.rglob(f"{run}/*/default/seed0")))["sla_violation_rate"]
            for run in ("bursty/60s/hpa", "bursty/60s/ipa")}
    assert late["bursty/60s/hpa"] > late["bursty/60s/ipa"] > 0
    assert points[(8, 40.0)][0][0] > points[(4, 50.0)][0][0] > points[(5, 52.0)][0][0]
    # the oracle is ringed in black, the others are not
    oracle = points[(5, 52.0)][0][1]
    assert tuple(oracle.get_edgecolors()[0][:3]) == (0.0, 0.0, 0.0)
    assert len(points[(4, 50.0)][0][1].get_edgecolors()) == 0
    # the sweep joins its settings in knob order (0.5 -> 0.9) and labels them with the knob value
    curve = [line for line in ax.get_lines() if len(line.get_xdata()) == 2]
    assert [list(line.get_xdata()) for line in curve] == [[12, 6]]
    assert {"0.5", "0.9"} <= {t.get_text() for t in ax.texts}
