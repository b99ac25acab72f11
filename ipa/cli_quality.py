"""`ipa quality`: the adaptation-quality regression check and its committed reference.

    ipa quality check                          # exit 0: within tolerances; 1: a regression (table printed)
    ipa quality refresh                        # every profiled reference pipeline
    ipa quality refresh --pipelines video nlp  # only these rows change

The reference (ipa/quality/reference.csv) is one row per pipeline x workload x policy on `sim`
with seed 0; refresh it only when a change in quality is intended, and commit the diff.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ipa.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("quality", help="adaptation-quality regression check against the committed reference",
                       description=__doc__.split("\n\n")[0])
    qsub = p.add_subparsers(dest="quality_command", required=True, metavar="ACTION")
    for name, helptext in (("check", "re-run the reference's cells and compare (exit 1 on a regression)"),
                           ("refresh", "re-run the matrix and rewrite the reference")):
        q = qsub.add_parser(name, help=helptext, description=helptext)
        q.add_argument("--reference", type=Path, default=None, metavar="FILE",
                       help="reference CSV (default: ipa/quality/reference.csv)")
        q.add_argument("--workers", type=int, default=None, help="worker processes (default: min(2, CPUs))")
        q.add_argument("--keep", type=Path, default=None, metavar="DIR",
                       help="keep the run folders under DIR (default: a temporary folder, removed)")
        q.add_argument("--pipelines-file", type=Path, metavar="FILE", help="your own pipelines.yaml")
        q.add_argument("--variants-file", type=Path, metavar="FILE", help="your own variants.csv")
        q.add_argument("--profiles-file", type=Path, metavar="FILE", help="your own profiles.csv")
        q.add_argument("--quiet", action="store_true", help="no progress lines")
        if name == "refresh":
            q.add_argument("--pipelines", nargs="+", metavar="NAME",
                           help="pipelines to re-run (default: every reference pipeline that is profiled)")
        q.set_defaults(func=check if name == "check" else refresh)


def _files(args):
    from ipa.quality import CatalogueFiles
    return CatalogueFiles(args.pipelines_file, args.variants_file, args.profiles_file)


def _reference(args) -> Path:
    from ipa.quality import REFERENCE_FILE
    return args.reference if args.reference is not None else REFERENCE_FILE


def _progress(quiet: bool):
    last = [time.monotonic()]

    def progress(result, done: int, total: int) -> None:
        if quiet or (time.monotonic() - last[0] < 5 and done != total):
            return
        last[0] = time.monotonic()
        print(f"ipa quality: {done}/{total} runs ({result.cell})", file=sys.stderr, flush=True)

    return progress


def _workers(args) -> int | None:
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    return args.workers


def check(args) -> int:
    from ipa import quality

    result = quality.check(_reference(args), out_root=args.keep, files=_files(args), workers=_workers(args),
                           progress=_progress(args.quiet))
    print(result.report())
    if not result.passed:
        print(f"if the change is intended: ipa quality refresh --pipelines "
              f"{' '.join(sorted({d.cell.pipeline for d in result.differences}) or ['...'])} and commit "
              f"{_reference(args)}", file=sys.stderr)
    return 0 if result.passed else 1


def refresh(args) -> int:
    from ipa import quality

    files = _files(args)
    reference = _reference(args)
    if args.pipelines:
        names = list(dict.fromkeys(args.pipelines))
        ready, missing = quality.profiled_pipelines(files, names)
        if missing:
            raise ConfigError("; ".join(f"{n}: {why}" for n, why in missing.items()))
    else:
        names, missing = quality.profiled_pipelines(files)
        for n, why in missing.items():
            print(f"ipa quality: skipping {n} (not profiled yet: {why})", file=sys.stderr)
        if not names:
            raise ConfigError("none of the reference pipelines is profiled yet; run `ipa profile` first")
    old = quality.read_reference(reference) if reference.exists() else []
    started = time.perf_counter()
    new = quality.refresh(names, reference, out_root=args.keep, files=files, workers=_workers(args),
                          progress=_progress(args.quiet))
    wall = time.perf_counter() - started
    changed = quality.compare([r for r in old if r.cell.pipeline in names], new)
    print(f"{reference}: wrote {len(new)} cells of {', '.join(names)} in {wall:.1f} s")
    if changed:
        print("moved beyond the tolerances since the previous reference:")
        print(quality.format_table(changed))
    problems = quality.check_properties(new)
    if problems:
        print("warning: cross-policy properties do not hold in the new reference (`ipa quality check` reports "
              "them as known departures from now on; say why in the README):")
        print("\n".join(f"  {p}" for p in problems))
    return 0
