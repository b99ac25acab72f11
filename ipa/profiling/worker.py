"""Measure one profile key in this process and write its file (``ipa profile`` runs one per key)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ipa.profiling.worker")
    p.add_argument("key")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--options", default="{}", help="MeasureOptions as JSON")
    p.add_argument("--command", default="")
    args = p.parse_args(argv)

    from ipa.pipelines.catalogue import load_catalogue
    from ipa.profiling.plan import select_targets
    from ipa.profiling.runner import MeasureOptions, measure_and_write

    by_key = {t.key: t for t in select_targets(load_catalogue())}
    if args.key not in by_key:
        print(f"worker: unknown profile key {args.key!r}", file=sys.stderr)
        return 2
    measure_and_write(by_key[args.key], args.json, MeasureOptions.from_json(args.options), args.command,
                      isolated=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
