"""`ipa predictor train`: train the LSTM load predictor; `ipa predictor evaluate`: SMAPE on unseen days."""
from __future__ import annotations

import json

from ipa.errors import ConfigError
from ipa.outputs import require_writable_file
from ipa.predictors import PREDICTORS, make_predictor


def add_parser(sub) -> None:
    p = sub.add_parser("predictor", help="train the LSTM load predictor, or evaluate the predictors")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = actions.add_parser("train", help="train the LSTM on days 0-14 of the shipped trace (needs torch)")
    t.add_argument("--epochs", type=int, default=30, help="training epochs (default 30, as the paper)")
    t.add_argument("--batch", type=int, default=64, help="batch size (default 64, as the paper)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", default=None, help="weights file to write (default: the packaged ipa/predictors/data/lstm.json)")
    t.set_defaults(func=run_train)
    e = actions.add_parser("evaluate", help="SMAPE of predictors on trace days the LSTM never saw")
    e.add_argument("--predictor", action="append", choices=PREDICTORS, default=None,
                   help="predictor to evaluate (repeatable; default: all)")
    e.add_argument("--weights", default=None, help="LSTM weights file (default: the packaged one)")
    e.add_argument("--alpha", type=float, default=None, help="ewma smoothing factor (default 0.5)")
    e.add_argument("--json", action="store_true", help="machine-readable output")
    e.set_defaults(func=run_evaluate)


def run_train(args) -> int:
    from ipa.predictors import lstm, train

    if args.epochs < 1 or args.batch < 1:
        raise ConfigError("--epochs and --batch must be >= 1")
    out = args.out or lstm.default_weights_path()
    require_writable_file(out)
    weights, meta = train.train(epochs=args.epochs, batch=args.batch, seed=args.seed)
    meta = train.write_weights(weights, meta, out)
    u = meta["unseen_days"]
    print(f"wrote {out}: {meta['training']['epochs']} epochs, seed {meta['training']['seed']}, "
          f"{meta['training']['seconds']} s; SMAPE on unseen days {u['smape_pct']:.2f}% ({u['samples']} samples)")
    return 0


def run_evaluate(args) -> int:
    from ipa.predictors.evaluate import evaluate, unseen_samples

    samples = unseen_samples()
    rows = []
    for name in args.predictor or PREDICTORS:
        options = {}
        if name == "lstm" and args.weights:
            options["weights"] = args.weights
        if name == "ewma" and args.alpha is not None:
            options["alpha"] = args.alpha
        rows.append(evaluate(make_predictor(name, **options), samples))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{samples.y.size} samples: 2 min of 10-s peaks -> peak of the next 20 s, trace seconds "
          f">= 1,209,600 (days the LSTM never saw)")
    print(f"{'predictor':<10} {'SMAPE %':>8} {'MAE req/s':>10} {'under %':>8} {'max under':>10}")
    for r in rows:
        print(f"{r['predictor']:<10} {r['smape_pct']:>8.2f} {r['mae_rps']:>10.2f} {r['under_pct']:>8.1f} {r['max_under_rps']:>10.1f}")
    return 0
