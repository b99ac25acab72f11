"""``ipa profile``: measure the catalogue's model variants on this machine.

Writes one measurement file per profile key (``<out>/<slug>.json``) and reassembles the
profile table (``profiles.csv`` beside ``<out>``) after each key. Resumable: keys with a file
are skipped unless ``--force``. torch and transformers are imported only when measuring.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

from ipa.errors import ConfigError, IpaError
from ipa.outputs import require_writable_dir, require_writable_file

EPILOG = """\
examples:
  ipa profile --list                      targets, cheapest first, and which are done
  ipa profile                             measure every missing key (1-2 h on 2 cores)
  ipa profile --threads 1 2 4 8 16        measure these thread counts (a measured row replaces a modelled one)
  ipa profile --pipeline video            only the video pipeline's stages
  ipa profile --variant microsoft/resnet-18 --force
  ipa profile --quick --out /tmp/q/profiles   tiny configs of the same families (tests)
  ipa profile --start-to-ready            each measured key's replica start to ready (process, imports,
                                          build, warm-up) on the real stage server; the load time runs use
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``profile`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "profile", help="measure latency / memory / load time of the catalogue's variants",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", action="append", metavar="P",
                   help="only the stages of pipeline P (repeatable; default: all pipelines)")
    p.add_argument("--variant", action="append", metavar="NAME",
                   help="only variant NAME, full id or last part (repeatable; default: all)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="measurement directory (default: the package's data/profiles; with --quick a new "
                        "temporary directory)")
    p.add_argument("--csv", type=Path, metavar="FILE",
                   help="assembled profile table (default: profiles.csv beside --out)")
    p.add_argument("--threads", type=int, nargs="+", metavar="N",
                   help="thread counts to measure (default: powers of two up to this machine's cores, at most 16); "
                        "counts above the cores are skipped with a note")
    p.add_argument("--min-reps", type=int, default=None, metavar="N",
                   help="interleaved rounds (one timed call per cell each) before the precision target may stop a "
                        "key (default 5; 3 with --quick)")
    p.add_argument("--max-reps", type=int, default=None, metavar="N",
                   help="at most this many rounds per key (default 25; 5 with --quick)")
    p.add_argument("--retries", type=int, metavar="N",
                   help="re-measure cells flagged as disturbed (drift, spread, other work, a broken invariant) up "
                        "to N times (default 2; 0 with --quick)")
    p.add_argument("--max-wait", type=float, metavar="SECONDS",
                   help="before each round, wait up to SECONDS for other processes to leave the cores free "
                        "(default 10; 0 with --quick)")
    p.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                   help="measure each key in a fresh Python process: clean memory baseline, a crash stays "
                        "confined to its key (default: on; off with --quick)")
    p.add_argument("--redo-suspect", action="store_true",
                   help="also re-measure keys whose file has a cell still flagged as disturbed")
    p.add_argument("--force", action="store_true", help="re-measure keys that already have a file")
    p.add_argument("--quick", action="store_true",
                   help="tiny configs and inputs of the same families (for tests; never the package data "
                        "unless --out names it)")
    p.add_argument("--list", action="store_true", help="print the targets and whether each is done, then exit")
    p.add_argument("--start-to-ready", action="store_true",
                   help="measure only each key's start to ready (a fresh real-mode stage server until it reports "
                        "ready), for keys whose file lacks it (all with --force), and make it their load time")
    p.add_argument("--repeats", type=int, default=3, metavar="N",
                   help="with --start-to-ready: server starts per key, the median is kept (default 3)")
    p.set_defaults(func=cmd_profile)
    return p


def _out_dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    from ipa.pipelines.profiles import default_measurement_dir

    if args.out is not None:
        out = args.out
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="ipa-profile-quick-")) / "profiles"
    else:
        out = default_measurement_dir()
    csv = args.csv if args.csv is not None else out.parent / "profiles.csv"
    require_writable_dir(out)
    require_writable_file(csv, "--csv")
    return out, csv


def cmd_profile(args: argparse.Namespace) -> int:
    try:
        return _cmd_profile(args)
    except IpaError as e:
        print(f"ipa profile: error: {e}", file=sys.stderr)
        return 2


def _stage_spec_for(target):
    """The real-mode stage spec of the first pipeline whose stage serves the target's key."""
    from ipa.pipelines import load_pipeline
    from ipa.serving.spec import stage_specs

    for name in target.pipelines:
        pipeline = load_pipeline(name)
        for stage in pipeline.stages:
            if any(stage.profile_key(v) == target.key for v in stage.variants):
                return stage_specs(pipeline, "real")[stage.name]
    raise ConfigError(f"{target.key}: no pipeline stage serves this key")


def _cmd_start_to_ready(targets, out: Path, csv: Path, args: argparse.Namespace) -> int:
    from ipa.pipelines.profiles import assemble
    from ipa.profiling.runner import loadavg, record_start_to_ready
    from ipa.serving.readiness import measure_start_to_ready

    if args.repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
    missing = [t.key for t in targets if not t.json_path(out).exists()]
    if missing:
        raise ConfigError(f"--start-to-ready adds to measured keys; no file in {out} for {missing[:3]}"
                          f"{' ...' if len(missing) > 3 else ''}: run `ipa profile` for them first")
    failed = []
    for i, t in enumerate(targets, 1):
        path = t.json_path(out)
        if "start_to_ready" in json.loads(path.read_text()) and not args.force:
            print(f"[{i}/{len(targets)}] {t.key}: has its start to ready, skipped", flush=True)
            continue
        print(f"[{i}/{len(targets)}] {t.key}: load {loadavg()}", flush=True)
        before = loadavg()
        try:
            with tempfile.TemporaryDirectory(prefix="ipa-ready-") as work:
                result = measure_start_to_ready(_stage_spec_for(t), t.variant.name, Path(work), args.repeats)
        except IpaError as e:
            failed.append(t.key)
            print(f"  FAILED {t.key}: {e}", file=sys.stderr, flush=True)
            continue
        record_start_to_ready(path, {**result, "loadavg_start": before, "loadavg_end": loadavg()})
        assemble(out, csv)
    print(f"ipa profile --start-to-ready: {len(targets)} key(s), {len(failed)} failed"
          f"{': ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from ipa.pipelines.catalogue import load_catalogue
    from ipa.profiling import TORCH_HINT, torch_available
    from ipa.profiling.plan import done, select_targets

    import os

    min_reps = args.min_reps if args.min_reps is not None else (3 if args.quick else 5)
    max_reps = args.max_reps if args.max_reps is not None else max(min_reps, 5 if args.quick else 25)
    if min_reps < 1:
        raise ConfigError(f"--min-reps must be >= 1, got {min_reps}")
    if max_reps < min_reps:
        raise ConfigError(f"--max-reps ({max_reps}) must be >= --min-reps ({min_reps})")
    threads: tuple[int, ...] = ()
    if args.threads:
        bad = [n for n in args.threads if n < 1]
        if bad:
            raise ConfigError(f"--threads must be >= 1, got {bad}")
        nproc = os.cpu_count() or 1
        above = sorted({n for n in args.threads if n > nproc})
        threads = tuple(sorted({n for n in args.threads if n <= nproc}))
        if above:
            print(f"ipa profile: this machine has {nproc} core(s); not measuring {above} thread(s) (that would time "
                  f"oversubscription); measuring {list(threads) or 'nothing'}", file=sys.stderr)
        if not threads:
            raise ConfigError(f"no --threads count fits this machine's {nproc} core(s)")
    targets = select_targets(load_catalogue(), args.pipeline, args.variant)
    out, csv = _out_dirs(args)
    if args.list:
        status = done(targets, out)
        print(f"{len(targets)} target(s), {sum(status.values())} done, in {out}")
        for t in targets:
            print(f"  {'done' if status[t.key] else 'todo'}  {t.key}  batches {list(t.batches)}  "
                  f"{t.variant.params_millions:g} M  ({', '.join(t.pipelines)})")
        return 0
    if not torch_available():
        print(TORCH_HINT, file=sys.stderr)
        return 2
    if args.start_to_ready:
        return _cmd_start_to_ready(targets, out, csv, args)
    from ipa.profiling.runner import MeasureOptions, run_profile

    command = "ipa " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else "ipa profile"
    retries = args.retries if args.retries is not None else (0 if args.quick else 2)
    if retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {retries}")
    isolate = args.isolate if args.isolate is not None else not args.quick
    if args.max_wait is not None and args.max_wait < 0:
        raise ConfigError(f"--max-wait must be >= 0, got {args.max_wait}")
    options = MeasureOptions(threads=threads, min_reps=min_reps, max_reps=max_reps, retries=retries,
                             max_wait_s=args.max_wait, quick=args.quick)
    result = run_profile(targets, out, csv, options, force=args.force, isolate=isolate,
                         redo_suspect=args.redo_suspect, command=command)
    # Quick models are so small that thread start-up outweighs their work: their tables break the
    # cores invariant by nature and say nothing about physics, so only real profiles fail on it.
    return 1 if result["failed"] or (result["violations"] and not args.quick) else 0
