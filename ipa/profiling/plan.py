"""What to profile: the targets of the catalogue, their batch sizes, and the order (no torch needed)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ipa.errors import ConfigError
from ipa.pipelines.catalogue import Catalogue, StageInput, Variant, slug

MAX_DEFAULT_THREADS = 16


def default_threads(nproc: int | None = None) -> tuple[int, ...]:
    """Powers of two up to the machine's cores (at most 16): 1, 2 on a 2-core machine, 1..16 on
    a 16-core one. Counts above the cores would time oversubscription, not the model."""
    n = min(nproc or os.cpu_count() or 1, MAX_DEFAULT_THREADS)
    out, t = [], 1
    while t <= n:
        out.append(t)
        t *= 2
    return tuple(out)


MIN_BATCHES = 2  # every key gets at least batch 1 and 2, so each has a batching slope

# Cheapest families first (variants.md, "~CPU ms"): the `video` stages land first because
# other work needs them soonest; long generation loops come last.
TASK_ORDER = {
    "image_classification": 0,
    "object_detection": 1,
    "sentiment_analysis": 2,
    "question_answering": 2,
    "language_identification": 2,
    "speech_recognition": 3,
    "translation": 4,
    "summarization": 5,
}


@dataclass(frozen=True)
class Target:
    key: str
    variant: Variant
    input: StageInput
    batches: tuple[int, ...]
    pipelines: tuple[str, ...]

    @property
    def slug(self) -> str:
        return slug(self.key)

    def json_path(self, out_dir: Path) -> Path:
        return Path(out_dir) / f"{self.slug}.json"


def batches_for(catalogue: Catalogue, key: str) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Batch sizes to measure for ``key`` and the pipelines that use it.

    Per pipeline using the key: its ``batch_sizes`` filtered by ``max(batching_cap, 2)``; the
    union over those pipelines. A pipeline without batching (cap 1) still gets batch 2 measured,
    so every profile has a batching slope.
    """
    batches: set[int] = set()
    pipelines: list[str] = []
    for p in catalogue.pipelines.values():
        if not any(s.profile_key(v) == key for s in p.stages for v in s.variants):
            continue
        pipelines.append(p.name)
        cap = max(int(p.params.get("batching_cap", 1)), MIN_BATCHES)
        sizes = p.params.get("batch_sizes") or [1, 2, 4, 8]
        batches.update(int(b) for b in sizes if 1 <= int(b) <= cap)
    batches.add(1)
    return tuple(sorted(batches)), tuple(pipelines)


def order_key(t: Target) -> tuple:
    return (TASK_ORDER.get(t.variant.task, 9), t.input.new_tokens, t.input.tokens, t.variant.params_millions, t.key)


def select_targets(catalogue: Catalogue, pipelines: Sequence[str] | None = None,
                   variants: Sequence[str] | None = None) -> list[Target]:
    """The profile targets, filtered by pipeline and variant names, cheapest first.

    An unknown pipeline or variant raises :class:`ConfigError` naming the known ones.
    """
    chosen_pipelines = list(pipelines or [])
    for name in chosen_pipelines:
        catalogue.pipeline(name)  # raises CatalogueError listing the known ones
    all_targets = catalogue.profile_targets()
    targets: list[Target] = []
    for key, (variant, stage_input) in all_targets.items():
        batches, users = batches_for(catalogue, key)
        targets.append(Target(key, variant, stage_input, batches, users))
    if chosen_pipelines:
        targets = [t for t in targets if set(t.pipelines) & set(chosen_pipelines)]
    if variants:
        known = sorted({t.variant.name for t in targets})
        wanted = set(variants)
        unknown = [v for v in variants
                   if not any(v in (t.variant.name, t.variant.short_name) for t in targets)]
        if unknown:
            scope = f" in pipeline(s) {', '.join(chosen_pipelines)}" if chosen_pipelines else ""
            raise ConfigError(f"unknown variant(s) {', '.join(unknown)}{scope}; known variants:\n  "
                              + "\n  ".join(known))
        targets = [t for t in targets if t.variant.name in wanted or t.variant.short_name in wanted]
    return sorted(targets, key=order_key)


def done(targets: Iterable[Target], out_dir: Path) -> dict[str, bool]:
    return {t.key: t.json_path(out_dir).exists() for t in targets}
