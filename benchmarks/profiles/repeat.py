"""Repeatability of the reference profiles: measure two keys again and compare the medians.

    python benchmarks/profiles/repeat.py            # ResNet-50 (vision) and S2T-small (seq2seq)
    python benchmarks/profiles/repeat.py --keys KEY [KEY ...]

Each key is measured afresh with `ipa profile`'s defaults into a temporary folder; every
(batch, threads) median is compared with the committed one. The load average before and after
is printed: the comparison means something only on a quiet machine. Exit status 1 when a
median differs by more than 10 %.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ipa.pipelines.catalogue import slug  # noqa: E402
from ipa.pipelines.profiles import default_measurement_dir  # noqa: E402

KEYS = ("microsoft/resnet-50@image-224x224", "facebook/s2t-small-librispeech-asr@audio-10s-gen40")
LIMIT = 0.10


def medians(path: Path) -> dict[tuple[int, int], float]:
    doc = json.loads(path.read_text())
    return {(m["batch"], m["threads"]): m["latency_p50_s"] for m in doc["measurements"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", nargs="+", default=list(KEYS))
    args = p.parse_args(argv)
    worst = 0.0
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="ipa-repeat-") as tmp:
        out = Path(tmp) / "profiles"
        for key in args.keys:
            variant = key.split("@")[0]
            env = dict(os.environ, HF_HUB_OFFLINE="1")
            subprocess.run([sys.executable, "-m", "ipa.cli", "profile", "--out", str(out), "--variant", variant],
                           check=True, env=env, stdout=subprocess.DEVNULL)
            committed = medians(default_measurement_dir() / f"{slug(key)}.json")
            again = medians(out / f"{slug(key)}.json")
            print(f"{key}")
            print(f"  {'batch':>5} {'threads':>7} {'committed':>10} {'again':>10} {'change':>8}")
            for cell in sorted(committed):
                if cell not in again:
                    continue
                change = again[cell] / committed[cell] - 1
                worst = max(worst, abs(change))
                print(f"  {cell[0]:>5} {cell[1]:>7} {committed[cell] * 1e3:>8.1f}ms {again[cell] * 1e3:>8.1f}ms "
                      f"{change:>+8.1%}")
    print(f"load average after: {os.getloadavg()}")
    print(f"largest change {worst:.1%} (limit {LIMIT:.0%})")
    return 0 if worst <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
