"""Training the LSTM predictor (needs torch): ``ipa predictor train``.

The model is the one ipa/predictors/lstm.py runs in numpy (same gate layout, ReLU activation),
trained as the paper did (fact 24): Adam, mean squared error, 30 epochs, batch 64, L1 1e-5 on
the input kernel, on the samples of days 0-14 of the damped trace. Inputs and targets are
divided by the largest training peak so the ReLU cell works in [0, ~1]. Seeded: the same seed
and torch version give the same weights.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ipa.errors import ConfigError
from ipa.predictors import lstm as lstm_np
from ipa.predictors.evaluate import TRAIN_END_S, Samples, evaluate, training_samples, unseen_samples

TORCH_MISSING = "the lstm predictor needs torch: pip install 'ipa-bench[torch]'"


def import_torch():
    try:
        import torch
    except ImportError:
        raise ConfigError(f"training {TORCH_MISSING}") from None
    return torch


def torch_model(units: int = lstm_np.UNITS, activation: str = "relu"):
    """A torch module with the numpy model's exact parameter layout."""
    torch = import_torch()
    nn = torch.nn
    act = {"relu": torch.relu, "tanh": torch.tanh}[activation]

    class LstmRegressor(nn.Module):
        def __init__(self):
            super().__init__()
            self.kernel = nn.Parameter(torch.empty(4 * units, 1))
            self.recurrent = nn.Parameter(torch.empty(4 * units, units))
            self.bias = nn.Parameter(torch.zeros(4 * units))
            self.dense_w = nn.Parameter(torch.empty(units))
            self.dense_b = nn.Parameter(torch.zeros(()))
            # Keras' defaults, which the paper's model used: Glorot kernel, orthogonal
            # recurrent weights, forget-gate bias 1.
            nn.init.xavier_uniform_(self.kernel)
            for k in range(4):
                nn.init.orthogonal_(self.recurrent.data[k * units:(k + 1) * units])
            with torch.no_grad():
                self.bias[units:2 * units] = 1.0
            nn.init.uniform_(self.dense_w, -(6 / (units + 1)) ** 0.5, (6 / (units + 1)) ** 0.5)

        def forward(self, x):  # x: (n, steps)
            h = x.new_zeros(x.shape[0], units)
            c = torch.zeros_like(h)
            for t in range(x.shape[1]):
                z = x[:, t:t + 1] * self.kernel[:, 0] + h @ self.recurrent.T + self.bias
                i, f, g, o = z.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * act(g)
                h = torch.sigmoid(o) * act(c)
            return h @ self.dense_w + self.dense_b

        def export(self) -> dict:
            return {k: v.detach().double().numpy() for k, v in self.named_parameters()}

        def load(self, weights: dict) -> "LstmRegressor":
            with torch.no_grad():
                for k, v in self.named_parameters():
                    v.copy_(torch.as_tensor(np.asarray(weights[k]), dtype=v.dtype))
            return self

    return LstmRegressor()


def train(epochs: int = 30, batch: int = 64, seed: int = 0, lr: float = 1e-3, l1: float = 1e-5,
          samples: Samples | None = None, log=print) -> tuple[dict, dict]:
    """(weights, metadata) of a freshly trained model; ``samples`` default to days 0-14."""
    torch = import_torch()
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # 25 units: threads cost more than they bring
    data = training_samples() if samples is None else samples
    scale = float(data.x.max())
    x = torch.tensor(data.x / scale, dtype=torch.float32)
    y = torch.tensor(data.y / scale, dtype=torch.float32)
    model = torch_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            loss = torch.mean((model(x[idx]) - y[idx]) ** 2)
            opt.zero_grad()
            (loss + l1 * model.kernel.abs().sum()).backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {epoch}/{epochs}: mse {total / len(x):.6f} (scaled), {time.perf_counter() - t0:.0f} s")
    weights = model.export()
    meta = {"format": lstm_np.FORMAT, "inputs": data.x.shape[1], "units": lstm_np.UNITS,
            "activation": "relu", "scale": scale,
            "training": {"epochs": epochs, "batch": batch, "seed": seed, "optimizer": f"Adam lr={lr}",
                         "loss": "MSE", "l1_kernel": l1, "samples": int(len(x)),
                         "trace_seconds": [0, TRAIN_END_S - 1] if samples is None else None,
                         "data": ("ipa/workloads/data/trace-peaks-10s.csv.xz (10-s maxima, counts // 8)"
                                  if samples is None else "samples given by the caller"),
                         "seconds": round(time.perf_counter() - t0, 1),
                         "torch": torch.__version__}}
    return weights, meta


def write_weights(weights: dict, meta: dict, path: str | Path) -> dict:
    """Write the weights file and return its metadata, completed with the SMAPE on unseen days."""
    path = Path(path)
    doc = dict(meta)
    doc["weights"] = {k: np.asarray(v).tolist() for k, v in weights.items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(doc))
    # Score what was written (the float64 round trip through JSON), then publish it.
    doc["unseen_days"] = evaluate(lstm_np.Lstm(tmp), unseen_samples())
    tmp.write_text(json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    tmp.replace(path)
    return {k: v for k, v in doc.items() if k != "weights"}
