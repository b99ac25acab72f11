"""Load scale: validation, what it scales, and the calibration search."""
from __future__ import annotations

import numpy as np
import pytest

from ipa.calibration import find_scale
from ipa.errors import CatalogueError, ConfigError
from ipa.pipelines import load_catalogue
from ipa.predictors import make_predictor
from ipa.predictors.base import in_trace_units
from ipa.workloads import load_workload


@pytest.mark.parametrize("value", [0, -0.5])
def test_a_zero_or_negative_load_scale_is_refused_naming_the_key(tiny_files, value):
    pipelines, variants, _ = tiny_files
    with pytest.raises(CatalogueError, match=r"tiny-video.*'load_scale' must be > 0"):
        load_catalogue(pipelines, variants, overrides={"tiny-video": {"load_scale": value}})


@pytest.mark.parametrize("value", [0, -1])
def test_a_zero_or_negative_baseline_threshold_is_refused_naming_the_key(tiny_files, value):
    pipelines, variants, _ = tiny_files
    with pytest.raises(CatalogueError, match=r"tiny-video.*'baseline_threshold_rps' must be > 0"):
        load_catalogue(pipelines, variants, overrides={"tiny-video": {"baseline_threshold_rps": value}})


def test_a_zero_accuracy_weight_is_refused_naming_the_key(tiny_files):
    pipelines, variants, _ = tiny_files
    with pytest.raises(CatalogueError, match="'alpha' must be > 0"):
        load_catalogue(pipelines, variants, overrides={"tiny-audio": {"alpha": 0}})
    with pytest.raises(CatalogueError, match="'beta' must be a finite non-negative number"):
        load_catalogue(pipelines, variants, overrides={"tiny-audio": {"beta": -1}})
    # the paper's NLP accuracy priority prices cores at 0 (fact 40)
    assert load_catalogue(pipelines, variants, overrides={"tiny-audio": {"beta": 0}})


def test_a_missing_load_scale_is_refused_naming_the_key(tiny_files, tmp_path):
    pipelines, variants, _ = tiny_files
    bare = tmp_path / "p.yaml"
    bare.write_text(pipelines.read_text().replace("  load_scale: 1\n", ""))
    with pytest.raises(CatalogueError, match="missing parameter 'load_scale'; `ipa calibrate` computes it"):
        load_catalogue(bare, variants)


def test_every_reference_pipeline_has_a_scale_and_a_calibration_target():
    for name, spec in load_catalogue().pipelines.items():
        assert spec.params["load_scale"] > 0 and spec.params["calibration_cores"] > 0, name


def test_a_scaled_workload_multiplies_every_rate():
    w = load_workload("bursty")
    half = w.scaled(0.5)
    assert np.array_equal(half.rates, w.rates * 0.5) and half.duration_s == w.duration_s
    assert w.scaled(1) is w
    with pytest.raises(ConfigError, match="load scale must be a finite number > 0"):
        w.scaled(0)


def test_the_lstm_sees_trace_units_on_a_scaled_pipeline():
    lstm = make_predictor("lstm")
    history = load_workload("bursty").rates[:120]
    scaled = in_trace_units(lstm, 0.2)
    # the scaled run's history is the trace x 0.2; the forecast is the trace's forecast x 0.2
    assert scaled.predict(history * 0.2) == pytest.approx(lstm.predict(history) * 0.2)
    assert scaled.name == "lstm" and in_trace_units(lstm, 1) is lstm


def test_the_search_finds_a_scale_on_a_proportional_cost():
    cal = find_scale("p", 9.3, lambda k: 40.0 * k, start=1.0)
    assert cal.met and cal.load_scale == pytest.approx(9.3 / 40, rel=0.03)


def test_the_search_reports_how_far_it_missed_on_a_staircase():
    # cost jumps from 4 to 8 cores: no scale gives 6
    cal = find_scale("p", 6.0, lambda k: 4.0 if k < 0.5 else 8.0, start=1.0)
    assert not cal.met
    assert abs(cal.miss) == pytest.approx(1 / 3, rel=1e-6)
    assert len(cal.runs) <= 12


def test_a_bad_target_is_a_clear_error():
    with pytest.raises(ConfigError, match="calibration_cores must be a finite number > 0"):
        find_scale("p", 0.0, lambda k: k)
