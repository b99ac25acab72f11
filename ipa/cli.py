"""Adapt an ML inference pipeline's model variants, batch sizes and replicas to its load (IPA).

Start with `ipa pipelines` (what can run), `ipa solve` (one decision for a given load) and
`ipa run --backend sim` (one experiment in the simulator); `snakemake --cores N` reproduces every
figure. Each command's --help says more.
"""
# Each subcommand lives in its own module; every user-facing error is an IpaError, printed on one
# line with exit code 2 and no traceback.
from __future__ import annotations

import argparse
import importlib
import sys

from ipa.errors import IpaError

# Each module defines add_parser(subparsers) and sets `func` on its parser.
SUBCOMMAND_MODULES = (
    "ipa.cli_pipelines",
    "ipa.cli_profile",
    "ipa.cli_predictor",
    "ipa.cli_workloads",
    "ipa.cli_solve",
    "ipa.cli_run",
    "ipa.cli_cluster",
    "ipa.cli_serve",
    "ipa.cli_quality",
    "ipa.cli_calibrate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ipa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser




def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except IpaError as e:
        print(f"ipa {args.command}: error: {e}", file=sys.stderr)
        for note in getattr(e, "__notes__", ()):  # where to look next, e.g. a failed run's logs
            print(f"ipa {args.command}: {note}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ipa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
