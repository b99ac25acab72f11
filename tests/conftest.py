"""Shared fixtures: a small synthetic catalogue with hand-written profiles.

Its numbers are made up for tests (clearly not measurements); the reference profiles are
tested separately, in tests that skip while a pipeline is not profiled yet.
"""
from __future__ import annotations

import csv
import signal
from pathlib import Path

import pytest

from ipa.pipelines import Pipeline, load_catalogue, load_pipeline
from ipa.pipelines.catalogue import VARIANT_COLUMNS
from ipa.pipelines.profiles import PROFILE_COLUMNS, read_profile_csv

# task, variant, accuracy (%), higher_is_better, batch-1 latency at 1 core (s), serial fraction
TINY_VARIANTS = [
    ("detect", "det-s", 40.0, True, 0.10, 0.2),
    ("detect", "det-m", 50.0, True, 0.20, 0.2),
    ("detect", "det-l", 55.0, True, 0.40, 0.2),
    ("classify", "cls-s", 70.0, True, 0.02, 0.1),
    ("classify", "cls-m", 76.0, True, 0.05, 0.1),
    ("classify", "cls-l", 78.0, True, 0.09, 0.1),
    ("asr", "asr-s", 8.0, False, 0.30, 0.3),
    ("asr", "asr-l", 4.0, False, 0.90, 0.3),
]

TINY_PIPELINES = """
defaults:
  load_scale: 1
  sla_factor: 5
  scaling_cap: 20
  batching_cap: 1
  batch_sizes: [1, 2, 4, 8]
  drop_limit_factor: 2
  alpha: 10
  beta: 0.5
  gamma: 0.000001
  latency_statistic: p99
  predictor_margin: 0.0
  accuracy_method: pas
pipelines:
  tiny-video:
    description: detect -> classify, batching allowed
    threshold_rps: 4
    batching_cap: 8
    alpha: 2
    beta: 1
    stages:
      - {name: detector, task: detect, input: {kind: image, height: 64, width: 64}, variants: [det-s, det-m, det-l]}
      - {name: classifier, task: classify, input: {kind: image, height: 32, width: 32}, variants: [cls-s, cls-m, cls-l]}
  tiny-audio:
    description: asr -> classify, no batching
    threshold_rps: 1
    stages:
      - {name: asr, task: asr, input: {kind: audio, seconds: 10}, variants: [asr-s, asr-l]}
      - {name: classifier, task: classify, input: {kind: text, tokens: 64}, variants: [cls-s, cls-m]}
"""


def _latency(l1: float, serial: float, batch: int, cores: int) -> float:
    # batches amortise a fixed part of the cost: latency grows sub-linearly with batch size
    return l1 * (0.4 + 0.6 * batch) * (serial + (1 - serial) / cores)


def write_tiny_catalogue(folder: Path) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    variants = folder / "variants.csv"
    with open(variants, "w", newline="") as f:
        w = csv.DictWriter(f, VARIANT_COLUMNS, lineterminator="\n")
        w.writeheader()
        for task, name, acc, higher, _, _ in TINY_VARIANTS:
            w.writerow({"task": task, "variant": name, "config_class": "X", "head_class": "Y", "family": "synthetic",
                        "config_kwargs_json": "{}", "metric": "synthetic", "metric_value": acc,
                        "higher_is_better": str(higher).lower(), "params_millions": 1, "source": "test fixture"})
    pipelines = folder / "pipelines.yaml"
    pipelines.write_text(TINY_PIPELINES)
    catalogue = load_catalogue(pipelines, variants)
    profiles = folder / "profiles.csv"
    by_name = {v[1]: v for v in TINY_VARIANTS}
    with open(profiles, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(PROFILE_COLUMNS)
        for key, (variant, _) in sorted(catalogue.profile_targets().items()):
            _, _, _, _, l1, serial = by_name[variant.name]
            for batch in (1, 2, 4, 8):
                for cores in (1, 2, 4, 8, 16):
                    mean = _latency(l1, serial, batch, cores)
                    w.writerow([key, batch, cores, f"{mean * 0.98:.6g}", f"{mean * 1.2:.6g}", f"{mean:.6g}",
                                f"{mean * 0.05:.6g}", f"{batch / mean:.6g}", 100, 2.0,
                                "measured" if cores <= 2 else "modelled"])
    return pipelines, variants, profiles


@pytest.fixture
def tiny_files(tmp_path) -> tuple[Path, Path, Path]:
    """(pipelines.yaml, variants.csv, profiles.csv) of the synthetic catalogue."""
    return write_tiny_catalogue(tmp_path / "catalogue")


@pytest.fixture
def make_tiny_pipeline(tiny_files):
    """make_tiny_pipeline(name='tiny-video', **param_overrides) -> Pipeline."""
    pipelines, variants, profiles = tiny_files

    def make(name: str = "tiny-video", **overrides) -> Pipeline:
        catalogue = load_catalogue(pipelines, variants, overrides={name: overrides} if overrides else None)
        return Pipeline(catalogue.pipeline(name), read_profile_csv(profiles))

    return make


@pytest.fixture
def tiny_pipeline(make_tiny_pipeline) -> Pipeline:
    return make_tiny_pipeline("tiny-video")


@pytest.fixture
def reference_pipeline():
    """reference_pipeline(name) -> the shipped pipeline with its committed reference profiles.

    The profiles of all five pipelines are committed, so a missing one is a failure, not a skip."""
    return load_pipeline


def default_sigint() -> None:
    """``preexec_fn`` for a child process a test interrupts with SIGINT: the signal at its default,
    as a terminal's Ctrl-C finds it, even when pytest was started with SIGINT ignored (a shell's
    background job, `nohup`), which every child would otherwise inherit and so never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
