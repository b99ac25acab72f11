"""Measure one profile key in this process and write its file (``ipa profile`` runs one per key)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ipa.profiling.worker")
    p.add_argument("key")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--retries", type=int, default=1)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--max-wait", type=float, default=None)
    p.add_argument("--command", default="")
    args = p.parse_args(argv)

    from ipa.pipelines.catalogue import load_catalogue
    from ipa.profiling.plan import select_targets
    from ipa.profiling.runner import measure_target, write_json

    by_key = {t.key: t for t in select_targets(load_catalogue())}
    if args.key not in by_key:
        print(f"worker: unknown profile key {args.key!r}", file=sys.stderr)
        return 2
    doc = measure_target(by_key[args.key], reps=args.reps, quick=args.quick, retries=args.retries,
                         max_wait_s=args.max_wait, command=args.command)
    doc["provenance"]["isolated"] = True
    write_json(doc, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
