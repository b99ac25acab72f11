"""The paper's LSTM load predictor (fact 24), run in numpy.

12 inputs (the last 2 minutes as 10-s peaks, divided by ``scale``) -> one LSTM layer of 25 units
with ReLU as cell and output activation (as the paper's Keras model) -> Dense(1) -> times
``scale`` = the peak of the next 20 s. Training needs torch (``ipa predictor train``,
ipa/predictors/train.py); inference here is a dozen small matrix products in numpy, so running
the predictor needs neither torch nor its start-up time.

Until 12 peaks (2 minutes) of history exist it answers as the backup ``max`` predictor (fact 25).
"""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from ipa.errors import ConfigError
from ipa.predictors.base import PEAK_BLOCK_S, PeakPredictor, ten_second_peaks
from ipa.predictors.simple import MaxWindow

FORMAT = "ipa-lstm-v1"
INPUTS = 12
UNITS = 25
WEIGHTS_FILE = "lstm.json"


def default_weights_path() -> Path:
    return Path(str(resources.files("ipa.predictors") / "data" / WEIGHTS_FILE))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free form of 1 / (1 + exp(-x))


_ACTIVATIONS = {"relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh}


def lstm_forward(x: np.ndarray, w: dict, activation: str = "relu") -> np.ndarray:
    """Outputs for inputs ``x`` of shape (n, steps) (already scaled): shape (n,).

    ``w``: ``kernel`` (4U, 1), ``recurrent`` (4U, U), ``bias`` (4U,), gates stacked in the order
    input, forget, cell, output; ``dense_w`` (U,), ``dense_b`` scalar.
    """
    act = _ACTIVATIONS[activation]
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    kernel, recurrent, bias = w["kernel"][:, 0], w["recurrent"], w["bias"]
    units = recurrent.shape[1]
    h = np.zeros((x.shape[0], units))
    c = np.zeros_like(h)
    for t in range(x.shape[1]):
        z = x[:, t:t + 1] * kernel + h @ recurrent.T + bias
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * act(g)
        h = _sigmoid(o) * act(c)
    return h @ w["dense_w"] + w["dense_b"]


def load_weights(path: str | Path | None = None) -> tuple[dict, dict]:
    """(weights as float64 arrays, metadata) from a weights file written by ``ipa predictor train``."""
    path = Path(path) if path else default_weights_path()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"LSTM weights {path} not found; train them with `ipa predictor train`") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"LSTM weights {path} cannot be read: {e}") from None
    if doc.get("format") != FORMAT:
        raise ConfigError(f"LSTM weights {path}: format {doc.get('format')!r}, expected {FORMAT!r}")
    w = {k: np.asarray(v, dtype=np.float64) for k, v in doc["weights"].items()}
    units, inputs = doc["units"], doc["inputs"]
    shapes = {"kernel": (4 * units, 1), "recurrent": (4 * units, units), "bias": (4 * units,),
              "dense_w": (units,), "dense_b": ()}
    for k, shape in shapes.items():
        if k not in w or w[k].shape != shape:
            raise ConfigError(f"LSTM weights {path}: {k} has shape {getattr(w.get(k), 'shape', None)}, expected {shape}")
    meta = {k: v for k, v in doc.items() if k != "weights"}
    if inputs < 1 or not meta.get("scale", 0) > 0:
        raise ConfigError(f"LSTM weights {path}: inputs and scale must be positive")
    return w, meta


class Lstm(PeakPredictor):
    """LSTM over the last 12 10-s peaks; ``max`` over the window until 12 peaks exist."""

    name = "lstm"

    def __init__(self, weights: str | Path | None = None):
        self.weights, self.meta = load_weights(weights)
        self.inputs = int(self.meta["inputs"])
        self.scale = float(self.meta["scale"])
        self.activation = self.meta.get("activation", "relu")
        self.backup = MaxWindow(window_s=PEAK_BLOCK_S * self.inputs)

    def predict(self, arrivals_per_s: Sequence[float]) -> float:
        # 12 full 10-s blocks, not 11 and a fraction: the model never saw partial peaks
        if len(arrivals_per_s) < PEAK_BLOCK_S * self.inputs:
            return self.backup.predict(arrivals_per_s)
        return self.predict_peaks(ten_second_peaks(arrivals_per_s[-PEAK_BLOCK_S * self.inputs:]))

    def predict_peaks(self, peaks: Sequence[float]) -> float:
        if len(peaks) < self.inputs:
            return self.backup.predict_peaks(peaks)
        return float(self.predict_many(np.asarray(peaks, dtype=float)[None, -self.inputs:])[0])

    def predict_many(self, windows: np.ndarray) -> np.ndarray:
        """Predictions for many histories at once: ``windows`` (n, inputs) of 10-s peaks."""
        y = lstm_forward(np.asarray(windows, dtype=float) / self.scale, self.weights, self.activation)
        return np.maximum(y * self.scale, 0.0)  # a rate is never negative
