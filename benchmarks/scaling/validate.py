"""The multi-core scaling model against every published multi-core point.

    python benchmarks/scaling/validate.py [--figure docs/figures/scaling.png]

Prints, per published point, the latency the family model predicts from the curve's first
point (its 1-core figure, or 2-core where the source has no trustworthy 1-core one) and the
error, two ways: ``fit`` (the family calibrated as the committed profiles are) and
``held out`` (calibrated without that curve: the other published curves of the family, else
this machine's 1->2-thread measurements). Exit status 1 when a ``fit`` error exceeds 25 %.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ipa.pipelines import scaling  # noqa: E402
from ipa.pipelines.profiles import (default_measurement_dir, default_points_path, measured_curves,  # noqa: E402
                                    read_measurement)

LIMIT = 0.25


def _docs(measurement_dir: Path) -> list[dict]:
    return [read_measurement(p) for p in sorted(Path(measurement_dir).glob("*.json"))]


def validation_rows(measurement_dir: Path, points_path: Path) -> list[dict]:
    return scaling.validation(scaling.read_points(points_path), measured_curves(_docs(measurement_dir)))


def draw(measurement_dir: Path, points_path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = _docs(measurement_dir)
    curves = measured_curves(docs)
    points = scaling.read_points(points_path)
    published: dict[str, list] = {}
    for (family, model, batch), curve in scaling.published_curves(points).items():
        published.setdefault(family, []).append((model, curve))
    fits = scaling.fit_families(curves, {f: [c for _, c in v] for f, v in published.items()})
    families = sorted(fits)
    fig, axes = plt.subplots(1, len(families), figsize=(3.6 * len(families), 3.6), sharey=True, squeeze=False)
    cores = [1, 2, 4, 8, 16]
    for ax, family in zip(axes[0], families):
        fit = fits[family]
        s = fit.serial_fraction
        ax.plot(cores, [1 / scaling.amdahl(s, c) for c in cores], "k-", lw=2,
                label=f"model s={s:.3f} ({fit.basis})")
        ax.plot(cores, cores, ":", color="grey", lw=1, label="perfect (core ratio)")
        for i, curve in enumerate(curves.get(family, [])):
            c0, l0 = curve[0]
            ax.plot([c for c, _ in curve], [l0 / lat * c0 ** 0 * scaling.amdahl(s, c0) / scaling.amdahl(s, 1) ** 0
                                           for _, lat in curve], "o", color="tab:blue", alpha=0.35, ms=4,
                    label="measured here (1->2 threads)" if i == 0 else None)
        for model, curve in published.get(family, []):
            c0, l0 = curve[0]
            base = 1 / scaling.amdahl(s, c0)  # place a curve that starts above 1 core on the model
            ax.plot([c for c, _ in curve], [base * l0 / lat for _, lat in curve], "s--", ms=5, label=f"published: {model}")
        if fit.basis.startswith("published:"):
            ax.text(0.04, 0.96, f"no published point: uses {fit.basis.split(':')[1]}'s", transform=ax.transAxes,
                    va="top", fontsize=7)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(cores, [str(c) for c in cores])
        ax.set_yticks(cores, [str(c) for c in cores])
        ax.set_title(family, fontsize=10)
        ax.set_xlabel("cores")
        ax.legend(fontsize=6, loc="lower right")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("speedup over 1 core")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--measurements", type=Path, default=default_measurement_dir())
    p.add_argument("--points", type=Path, default=default_points_path())
    p.add_argument("--figure", type=Path, help="also draw the measured points, fitted curves and published points")
    args = p.parse_args(argv)
    rows = validation_rows(args.measurements, args.points)
    print(f"{'family':<12} {'model':<26} {'cores':>9} {'published':>10} {'fit':>8} {'error':>7} "
          f"{'held out':>9} {'error':>7}  held-out basis")
    for r in rows:
        print(f"{r['family']:<12} {r['model']:<26} {r['from_cores']:>3} -> {r['cores']:<3} {r['published_s'] * 1e3:>8.1f}ms "
              f"{r['fit_s'] * 1e3:>6.1f}ms {r['fit_error']:>+7.1%} {r['held_out_s'] * 1e3:>7.1f}ms "
              f"{r['held_out_error']:>+7.1%}  {r['held_out_basis']} (s={r['s_held_out']:.3f})")
    worst = max(abs(r["fit_error"]) for r in rows)
    held = [abs(r["held_out_error"]) for r in rows if r["held_out_basis"] != "none"]
    print(f"worst fit error {worst:.1%} (limit {LIMIT:.0%}); worst held-out error {max(held):.1%}" if held
          else f"worst fit error {worst:.1%} (limit {LIMIT:.0%})")
    if args.figure:
        draw(args.measurements, args.points, args.figure)
    return 0 if worst <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
