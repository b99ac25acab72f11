"""Repeatability of the reference profiles: measure two keys again and compare the medians.

    python benchmarks/profiles/repeat.py            # ResNet-50 (vision) and S2T-small (seq2seq)
    python benchmarks/profiles/repeat.py --keys KEY [KEY ...]

Each key is measured afresh with `ipa profile`'s defaults into a temporary folder; every
(batch, threads) median is compared with the committed one. The load average before and after
is printed: the comparison means something only on a quiet machine, and only on the same kind
of host. Each file records its host (CPU model, vector extensions, a fixed 1-thread speed probe:
`ipa.profiling.host`); when the hosts differ the script says so and also prints every change
divided by the probe ratio, which estimates how much of it the host explains. Exit status 1
when a raw median differs by more than 10 %, or when the hosts differ.
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
from ipa.pipelines.profiles import REPEATABILITY_LIMIT, default_measurement_dir  # noqa: E402
from ipa.profiling.host import probe_ratio  # noqa: E402

KEYS = ("microsoft/resnet-50@image-224x224", "facebook/s2t-small-librispeech-asr@audio-10s-gen40")
LIMIT = REPEATABILITY_LIMIT


def medians(doc: dict) -> dict[tuple[int, int], float]:
    return {(m["batch"], m["threads"]): m["latency_p50_s"] for m in doc["measurements"]}


def host(doc: dict) -> tuple[str, tuple[str, ...]]:
    machine = doc["provenance"]["machine"]
    return machine.get("cpu_model", "?"), tuple(machine.get("isa") or ())


def describe(doc: dict) -> str:
    cpu, isa = host(doc)
    probe = doc["provenance"].get("speed_probe")
    return f"{cpu} [{' '.join(isa) or 'isa not recorded'}], probe {'not recorded' if not probe else probe}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", nargs="+", default=list(KEYS))
    args = p.parse_args(argv)
    worst, hosts_differ = 0.0, False
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="ipa-repeat-") as tmp:
        out = Path(tmp) / "profiles"
        for key in args.keys:
            variant = key.split("@")[0]
            env = dict(os.environ, HF_HUB_OFFLINE="1")
            subprocess.run([sys.executable, "-m", "ipa.cli", "profile", "--out", str(out), "--variant", variant],
                           check=True, env=env, stdout=subprocess.DEVNULL)
            committed_doc = json.loads((default_measurement_dir() / f"{slug(key)}.json").read_text())
            again_doc = json.loads((out / f"{slug(key)}.json").read_text())
            committed, again = medians(committed_doc), medians(again_doc)
            ratio = probe_ratio(again_doc["provenance"].get("speed_probe"), committed_doc["provenance"].get("speed_probe"))
            differ = host(committed_doc) != host(again_doc)
            hosts_differ |= differ
            print(f"{key}")
            print(f"  committed on {describe(committed_doc)}")
            print(f"  again on     {describe(again_doc)}")
            if differ:
                print("  HOSTS DIFFER: the raw change measures the host as much as the profiler"
                      + (f"; probe ratio {ratio:.3f} (adjusted = again / ratio)" if ratio else ""))
            print(f"  {'batch':>5} {'threads':>7} {'committed':>10} {'again':>10} {'change':>8}"
                  + (f" {'adjusted':>9}" if differ and ratio else ""))
            for cell in sorted(committed):
                if cell not in again:
                    continue
                change = again[cell] / committed[cell] - 1
                worst = max(worst, abs(change))
                print(f"  {cell[0]:>5} {cell[1]:>7} {committed[cell] * 1e3:>8.1f}ms {again[cell] * 1e3:>8.1f}ms "
                      f"{change:>+8.1%}" + (f" {again[cell] / ratio / committed[cell] - 1:>+9.1%}" if differ and ratio else ""))
    print(f"load average after: {os.getloadavg()}")
    print(f"largest change {worst:.1%} (limit {LIMIT:.0%})"
          + ("; the hosts differ, so this is not a repeatability verdict" if hosts_differ else ""))
    return 0 if worst <= LIMIT and not hosts_differ else 1


if __name__ == "__main__":
    sys.exit(main())
