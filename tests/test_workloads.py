"""Workloads: the shipped paper windows, synthetic patterns, user traces and open-loop send times."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ipa.errors import ConfigError
from ipa.workloads import PATTERN_WINDOWS, WORKLOADS, Workload, load_trace, load_workload

# The full trace is not shipped (ipa/workloads/data/README.md says where it comes from).
TRACE = Path(os.environ.get("IPA_TWITTER_TRACE", "twitter-trace.csv.xz"))


# Fact 33 (docs/facts.md): RPS range, mean and total requests after damping by 8.
@pytest.mark.parametrize("name,lo,hi,mean,total", [
    ("bursty", 3, 34, 12.0, 14_437),
    ("steady-low", 3, 8, 5.1, 6_067),
    ("steady-high", 23, 34, 28.8, 34_606),
    ("fluctuating", 3, 34, 16.5, 19_837),
])
def test_paper_patterns_match_the_published_stats(name, lo, hi, mean, total):
    w = load_workload(name)
    assert w.duration_s == 1200
    assert (w.rates.min(), w.rates.max()) == (lo, hi)
    assert round(w.rates.mean(), 1) == mean
    assert w.rates.sum() == total
    for start, end in PATTERN_WINDOWS[name]:  # the provenance names the trace seconds it replays
        assert f"{start:,}-{end:,}" in w.provenance


def test_patterns_are_assembled_from_their_windows():
    high = load_workload("steady-high").rates
    np.testing.assert_array_equal(high[:600], high[600:])
    # fluctuating's first half is seconds 1,301,400-1,302,000, i.e. seconds 240..839 of bursty
    np.testing.assert_array_equal(load_workload("fluctuating").rates[:600], load_workload("bursty").rates[240:840])
    assert set(WORKLOADS) == set(PATTERN_WINDOWS)


def test_a_paper_pattern_can_be_cut_shorter_but_not_longer():
    assert load_workload("bursty", duration=60).duration_s == 60
    np.testing.assert_array_equal(load_workload("bursty", duration=60).rates, load_workload("bursty").rates[:60])
    with pytest.raises(ConfigError, match="1200 s"):
        load_workload("bursty", duration=1201)


@pytest.mark.skipif(not TRACE.exists(), reason="the full trace is not here: set IPA_TWITTER_TRACE to its path")
def test_shipped_data_is_what_the_build_script_makes_from_the_trace(tmp_path):
    from ipa.workloads import build_data

    build_data.main([str(TRACE), "--out", str(tmp_path)])
    shipped = Path(build_data.__file__).parent / "data"
    built = sorted(p.name for p in tmp_path.iterdir())
    assert built == sorted(p.name for p in shipped.iterdir() if p.name.startswith("trace-"))
    for name in built:
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes(), name


def test_ten_second_peaks_stay_inside_contiguous_runs():
    import pandas as pd
    from ipa.workloads.build_data import ten_second_peaks

    seconds = np.r_[0:25, 100:120]  # a run of 25 s (two full blocks) and a run of 20 s
    trace = pd.Series(np.arange(len(seconds)), index=seconds)
    peaks = ten_second_peaks(trace)
    assert peaks["second"].tolist() == [0, 10, 100, 110]
    assert peaks["peak_rps"].tolist() == [9, 19, 34, 44]


# --- send times -----------------------------------------------------------------------------

def test_send_times_are_deterministic_per_seed_and_differ_across_seeds():
    w = load_workload("bursty")
    a, b, c = w.send_times(7), w.send_times(7), w.send_times(8)
    np.testing.assert_array_equal(a, b)
    assert len(a) == len(c) == 14_437  # integer rates: the count never depends on the seed
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("arrivals", ["poisson", "uniform"])
def test_each_second_gets_exactly_its_count(arrivals):
    w = load_workload("fluctuating")
    t = w.send_times(3, arrivals)
    assert np.all(np.diff(t) >= 0) and t[0] >= 0 and t[-1] < w.duration_s
    per_second = np.bincount(np.floor(t).astype(int), minlength=w.duration_s)
    np.testing.assert_array_equal(per_second, w.rates)


def test_uniform_arrivals_are_evenly_spaced():
    t = Workload("four", np.array([4.0, 0.0, 2.0]), "test").send_times(0, "uniform")
    np.testing.assert_allclose(t, [0, 0.25, 0.5, 0.75, 2.0, 2.5])


def test_poisson_offsets_look_uniform_within_the_second():
    t = load_workload("constant-50", duration=200).send_times(1)
    offsets = t - np.floor(t)
    # 10,000 uniform offsets: each tenth of the second holds ~1,000 (sd ~30)
    hist = np.histogram(offsets, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(hist - 1000) < 150), hist
    # and the process is not the evenly spaced one
    assert not np.allclose(t, load_workload("constant-50", duration=200).send_times(1, "uniform"))


def test_fractional_rates_are_rounded_stochastically_without_bias():
    w = load_workload("constant-2.5", duration=4000)
    counts = np.bincount(np.floor(w.send_times(5)).astype(int), minlength=4000)
    assert set(np.unique(counts)) == {2, 3}
    assert abs(counts.sum() - 10_000) < 5 * np.sqrt(4000 * 0.25)  # binomial, 5 sd


def test_unknown_arrival_process_is_an_error():
    with pytest.raises(ConfigError, match="poisson, uniform"):
        load_workload("constant-1", duration=5).send_times(0, "gamma")


def test_window_cuts_and_renumbers():
    w = load_workload("bursty")
    cut = w.window(100, 50)
    assert cut.duration_s == 50
    np.testing.assert_array_equal(cut.rates, w.rates[100:150])
    assert "bursty" in cut.provenance
    for start, dur in [(-1, 10), (1190, 11), (0, 0)]:
        with pytest.raises(ConfigError, match="not inside"):
            w.window(start, dur)


def test_workloads_are_immutable_and_validated():
    w = load_workload("constant-3", duration=10)
    with pytest.raises(ValueError):
        w.rates[0] = 5
    with pytest.raises(ConfigError, match="second 1"):
        Workload("bad", np.array([1.0, -1.0]), "test")


# --- synthetic patterns ------------------------------------------------------------------------

def test_synthetic_patterns_follow_their_names():
    assert np.all(load_workload("constant-10").rates == 10) and load_workload("constant-10").duration_s == 1200
    step = load_workload("step-5-20", duration=100).rates
    assert np.all(step[:50] == 5) and np.all(step[50:] == 20)
    ramp = load_workload("ramp-0-30", duration=301).rates
    assert (ramp[0], ramp[150], ramp[-1]) == (0, 15, 30)
    sine = load_workload("sine-15-10-300", duration=600).rates
    assert sine.min() == pytest.approx(5) and sine.max() == pytest.approx(25)
    assert sine.mean() == pytest.approx(15)
    np.testing.assert_allclose(sine[:300], sine[300:], atol=1e-9)


@pytest.mark.parametrize("name,message", [
    ("sine-5-10-60", "amplitude 10 exceeds the mean 5"),
    ("sine-5-1-0", "period must be > 0"),
    ("nope", "known: bursty, steady-low, steady-high, fluctuating"),
    ("constant-", "unknown workload"),
    ("step-1", "unknown workload"),
])
def test_bad_workload_names(name, message):
    with pytest.raises(ConfigError, match=message):
        load_workload(name)


def test_bad_duration():
    with pytest.raises(ConfigError, match="positive whole number"):
        load_workload("constant-1", duration=0)


# --- user traces -------------------------------------------------------------------------------

def write(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_user_trace_is_renumbered_from_zero(tmp_path):
    w = load_trace(write(tmp_path, "second,rps,note\n100,1.5,a\n101,0,b\n102,7,c\n"))
    np.testing.assert_array_equal(w.rates, [1.5, 0, 7])
    assert "100..102" in w.provenance and w.name == "t"


@pytest.mark.parametrize("text,message", [
    ("sec,rps\n0,1\n", "missing column.*second"),
    ("second,rate\n0,1\n", "missing column.*rps"),
    ("", "missing column"),
    ("second,rps\n", "no rows"),
    ("second,rps\n0,1\n1,-2\n", "line 3: rps -2.0 must be a finite number >= 0"),
    ("second,rps\n0,abc\n", "line 2: rps 'abc' is not a number"),
    ("second,rps\n0,nan\n", "line 2: rps nan must be"),
    ("second,rps\n0,\n", "line 2: rps '' is not a number"),
    ("second,rps\n0.5,1\n", "line 2: second '0.5' is not an integer"),
    ("second,rps\n0,1\n1,1\n3,1\n", r"line 4: second 3 follows 1 \(a gap\)"),
    ("second,rps\n0,1\n1,1\n1,1\n", r"line 4: second 1 follows 1 \(a duplicate second\)"),
    ("second,rps\n5,1\n6,1\n2,1\n", r"line 4: second 2 follows 6 \(unsorted seconds\)"),
])
def test_bad_trace_files_name_file_line_and_problem(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as e:
        load_trace(p)
    assert str(p) in str(e.value)


def test_missing_and_unreadable_trace_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_trace(tmp_path / "absent.csv")
    p = tmp_path / "binary.csv"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=str(p)):
        load_trace(p)


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_lists_and_shows_workloads(capsys, tmp_path):
    from ipa.cli import main

    assert main(["workloads", "list"]) == 0
    out = capsys.readouterr().out
    assert "bursty" in out and "14,437" in out and "constant-R" in out
    assert main(["workloads", "show", "step-1-3", "--duration", "4", "--csv"]) == 0
    assert capsys.readouterr().out == "second,rps\n0,1\n1,1\n2,3\n3,3\n"
    bad = write(tmp_path, "second,rps\n0,1\n0,1\n")
    assert main(["workloads", "show", "--trace", str(bad)]) == 2
    assert "duplicate second" in capsys.readouterr().err
