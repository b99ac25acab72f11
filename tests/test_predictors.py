"""Load predictors: the simple ones on constructed series, the LSTM's backup and its two forwards,
the SMAPE function and the evaluation on unseen trace days."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ipa.errors import ConfigError
from ipa.predictors import PREDICTORS, make_predictor, ten_second_peaks
from ipa.predictors.evaluate import evaluate, make_samples, smape, unseen_samples
from ipa.predictors.lstm import default_weights_path, load_weights, lstm_forward


def test_peaks_are_aligned_to_the_end_of_the_history():
    assert ten_second_peaks(np.arange(25.0)).tolist() == [4, 14, 24]  # oldest block partial
    assert ten_second_peaks(np.arange(20.0)).tolist() == [9, 19]
    assert ten_second_peaks([]).size == 0


def history_with_spike(length=200, base=10.0, spike_at=None, spike=50.0):
    h = np.full(length, base)
    if spike_at is not None:
        h[spike_at] = spike
    return h


def test_reactive_is_the_last_ten_second_peak():
    r = make_predictor("reactive")
    assert r.predict(history_with_spike(spike_at=-5)) == 50       # inside the last 10 s
    assert r.predict(history_with_spike(spike_at=-11)) == 10      # just before it
    assert r.predict([]) == 0


def test_max_looks_back_over_its_window_only():
    m = make_predictor("max")                                     # 120 s by default
    assert m.predict(history_with_spike(spike_at=-120)) == 50
    assert m.predict(history_with_spike(spike_at=-121)) == 10
    assert make_predictor("max", window_s=200).predict(history_with_spike(spike_at=-121)) == 50
    with pytest.raises(ConfigError, match="multiple of 10"):
        make_predictor("max", window_s=15)


def test_ewma_smooths_the_peaks():
    e = make_predictor("ewma", alpha=0.5)
    assert e.predict_peaks([10, 20]) == 15
    assert e.predict_peaks([10, 20, 40]) == pytest.approx(0.5 * 40 + 0.5 * 15)
    # alpha = 1 forgets everything but the last peak: the reactive predictor
    h = np.random.default_rng(0).integers(0, 40, 130).astype(float)
    assert make_predictor("ewma", alpha=1).predict(h) == make_predictor("reactive").predict(h)
    for alpha in (0, 1.5):
        with pytest.raises(ConfigError, match="alpha"):
            make_predictor("ewma", alpha=alpha)


def test_unknown_predictor_and_options():
    with pytest.raises(ConfigError, match="known: reactive, max, ewma, lstm"):
        make_predictor("arima")
    with pytest.raises(ConfigError, match="bad option"):
        make_predictor("reactive", alpha=0.3)


# --- LSTM ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lstm():
    return make_predictor("lstm")


def test_lstm_uses_the_max_backup_until_two_minutes_of_history(lstm):
    rng = np.random.default_rng(1)
    h = rng.integers(0, 40, 200).astype(float)
    for n in (0, 1, 9, 10, 55, 119):
        assert lstm.predict(h[:n]) == make_predictor("max").predict(h[:n]), n
    # from 12 peaks on the model answers: on a rising series it does not just repeat the max
    rising = np.repeat(np.arange(12.0) * 2 + 5, 10)
    assert lstm.predict(rising) != make_predictor("max").predict(rising)


def test_lstm_predicts_about_a_steady_load(lstm):
    for level in (5.0, 10.0, 20.0, 30.0):
        assert lstm.predict(np.full(120, level)) == pytest.approx(level, rel=0.15)


def test_lstm_runs_without_torch():
    # A fresh interpreter where `import torch` fails: nothing on the prediction path may need it.
    code = ("import sys; sys.modules['torch'] = None\n"
            "from ipa.predictors import make_predictor\n"
            "print(make_predictor('lstm').predict([10.0] * 120))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(10, rel=0.15)


def test_training_without_torch_says_what_to_install(monkeypatch, capsys):
    from ipa.cli import main

    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["predictor", "train", "--epochs", "1"]) == 2
    assert "the lstm predictor needs torch: pip install 'ipa-bench[torch]'" in capsys.readouterr().err


def test_bad_weights_files(tmp_path):
    with pytest.raises(ConfigError, match="not found.*ipa predictor train"):
        make_predictor("lstm", weights=tmp_path / "absent.json")
    doc = json.loads(default_weights_path().read_text())
    doc["weights"]["recurrent"] = doc["weights"]["recurrent"][:-1]
    (tmp_path / "short.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="recurrent has shape"):
        make_predictor("lstm", weights=tmp_path / "short.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(ConfigError, match="cannot be read"):
        make_predictor("lstm", weights=tmp_path / "junk.json")


@pytest.mark.torch
def test_numpy_and_torch_forwards_agree_on_the_packaged_weights():
    torch = pytest.importorskip("torch")
    from ipa.predictors.train import torch_model

    w, meta = load_weights()
    model = torch_model(meta["units"], meta["activation"]).double().load(w)
    x = np.random.default_rng(2).uniform(0, 1.2, (256, meta["inputs"]))
    with torch.no_grad():
        expected = model(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(lstm_forward(x, w, meta["activation"]), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.torch
def test_training_learns_and_writes_a_usable_weights_file(tmp_path):
    pytest.importorskip("torch")
    from ipa.predictors.train import train, write_weights

    # A small series whose next peak is easy to learn: a slow sine of 10-s peaks.
    peaks = 20 + 10 * np.sin(np.arange(3000) * 2 * np.pi / 60)
    samples = make_samples(pd.DataFrame({"second": 10 * np.arange(3000), "peak_rps": peaks}))
    weights, meta = train(epochs=4, batch=64, seed=3, samples=samples, log=lambda _: None)
    out = tmp_path / "lstm.json"
    meta = write_weights(weights, meta, out)
    assert meta["training"]["epochs"] == 4 and "smape_pct" in meta["unseen_days"]
    trained = make_predictor("lstm", weights=out)
    naive = evaluate(make_predictor("max"), samples)["smape_pct"]
    assert evaluate(trained, samples)["smape_pct"] < naive
    again, _ = train(epochs=4, batch=64, seed=3, samples=samples, log=lambda _: None)
    for k in weights:  # seeded: the same weights again
        np.testing.assert_array_equal(weights[k], again[k])


# --- SMAPE and evaluation -----------------------------------------------------------------------

def test_smape():
    assert smape([100], [110]) == pytest.approx(100 * 10 / 105)
    assert smape([100, 50], [110, 50]) == pytest.approx(100 * 10 / 105 / 2)
    assert smape([0, 10], [0, 10]) == 0                          # 0/0 terms count as exact
    assert smape([0], [5]) == 200
    assert smape([3, 7], [5, 2]) == smape([5, 2], [3, 7])        # symmetric
    with pytest.raises(ValueError):
        smape([1, 2], [1])


def test_samples_never_straddle_a_gap_and_target_the_next_20_s():
    sec = np.r_[0:200:10, 1000:1150:10]  # 20 peaks, a gap, 15 peaks
    peaks = pd.DataFrame({"second": sec, "peak_rps": np.arange(len(sec), dtype=float)})
    s = make_samples(peaks)
    assert len(s.y) == (20 - 13) + (15 - 13)
    np.testing.assert_array_equal(s.x[0], np.arange(12))
    assert s.y[0] == 13 and s.second[0] == 120            # max of the two peaks after the history
    assert s.second[-1] < 1150 and np.all(s.y - s.x[:, -1] == 2)


def test_every_predictor_is_evaluated_on_unseen_days_and_lstm_beats_the_naive_ones():
    samples = unseen_samples()
    assert samples.second.min() >= 1_209_600 and len(samples.y) > 10_000
    scores = {name: evaluate(make_predictor(name), samples)["smape_pct"] for name in PREDICTORS}
    assert scores["lstm"] < min(scores["reactive"], scores["max"], scores["ewma"]), scores
    # The packaged weights file records the score they get here (it is not stale).
    assert json.loads(default_weights_path().read_text())["unseen_days"]["smape_pct"] == pytest.approx(scores["lstm"])


def test_cli_evaluate_prints_every_predictor(capsys):
    from ipa.cli import main

    assert main(["predictor", "evaluate"]) == 0
    out = capsys.readouterr().out
    for name in PREDICTORS:
        assert f"\n{name} " in out
