"""The catalogue: which pipelines exist, their stages, and each stage's model variants.

It is data (``data/pipelines.yaml`` + ``data/variants.csv``); this module only loads and checks
it, so a user adds a pipeline or a variant by editing those files (or passing their own).
Every loading error names the file, the row or key, and the field.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from ipa.errors import CatalogueError

DATA = resources.files("ipa.pipelines") / "data"

VARIANT_COLUMNS = (
    "task", "variant", "config_class", "head_class", "family", "config_kwargs_json", "metric",
    "metric_value", "higher_is_better", "params_millions", "source",
)

PARAMETER_TYPES: dict[str, type] = {
    "sla_factor": float, "scaling_cap": int, "batching_cap": int, "batch_sizes": list,
    "drop_limit_factor": float, "drop_limit_s": float, "alpha": float, "beta": float,
    "gamma": float, "latency_statistic": str, "predictor_margin": float,
    "accuracy_method": str, "threshold_rps": float, "baseline_threshold_rps": float, "fa2_low": dict, "fa2_high": dict,
    "rim_replicas": dict, "load_scale": float, "calibration_cores": float, "replica_start_s": float,
    "policy_options": dict,  # policy name -> its settings (hpa, ray-serve), e.g. the workflow's sweeps
}
# Parameters that must be > 0 where given: a zero or negative one is a typo, never a setting.
# beta may be 0: the paper's NLP accuracy priority prices cores at nothing (fact 40).
POSITIVE = ("load_scale", "alpha", "threshold_rps", "baseline_threshold_rps", "calibration_cores")
LATENCY_STATISTICS = ("p50", "p99", "mean")
ACCURACY_METHODS = ("pas", "rank_sum")


@dataclass(frozen=True)
class Variant:
    """One model variant with its published accuracy (never measured here)."""

    name: str
    task: str
    config_class: str
    head_class: str
    family: str  # architecture family whose multi-core scaling it shares (ipa.pipelines.scaling)
    config_kwargs: Mapping[str, Any]
    metric: str
    metric_value: float
    higher_is_better: bool
    params_millions: float
    source: str

    @property
    def accuracy(self) -> float:
        """The published metric as a fraction in [0, 1], higher is better.

        Lower-is-better metrics (WER) map to 100 - value, as the revised paper does (fact 36).
        """
        value = self.metric_value if self.higher_is_better else 100.0 - self.metric_value
        return value / 100.0

    @property
    def short_name(self) -> str:
        return self.name.split("/")[-1]


@dataclass(frozen=True)
class StageInput:
    """The request shape a stage's variants are profiled and served on."""

    kind: str  # image | audio | text
    height: int = 0
    width: int = 0
    seconds: float = 0.0
    tokens: int = 0
    new_tokens: int = 0  # > 0 for generative models: forced generation length

    @property
    def id(self) -> str:
        if self.kind == "image":
            base = f"image-{self.height}x{self.width}"
        elif self.kind == "audio":
            base = f"audio-{self.seconds:g}s"
        else:
            base = f"text-{self.tokens}"
        return f"{base}-gen{self.new_tokens}" if self.new_tokens else base


@dataclass(frozen=True)
class Stage:
    name: str
    task: str
    input: StageInput
    variants: tuple[Variant, ...]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name or v.short_name == name:
                return v
        known = ", ".join(v.name for v in self.variants)
        raise CatalogueError(f"stage {self.name!r} has no variant {name!r}; known: {known}")

    def profile_key(self, variant: Variant | str) -> str:
        name = variant if isinstance(variant, str) else variant.name
        return profile_key(name, self.input)

    @property
    def by_accuracy(self) -> tuple[Variant, ...]:
        """Variants from least to most accurate (ties broken by name, for determinism)."""
        return tuple(sorted(self.variants, key=lambda v: (v.accuracy, v.name)))


@dataclass(frozen=True)
class PipelineSpec:
    """A pipeline as declared: stages and parameters, before any profile is attached."""

    name: str
    description: str
    stages: tuple[Stage, ...]
    params: Mapping[str, Any] = field(default_factory=dict)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise CatalogueError(
            f"pipeline {self.name!r} has no stage {name!r}; stages: {[s.name for s in self.stages]}"
        )


def profile_key(variant_name: str, stage_input: StageInput) -> str:
    return f"{variant_name}@{stage_input.id}"


def slug(key: str) -> str:
    """A file-name-safe form of a profile key or variant name."""
    return key.replace("/", "--").replace("@", "__")


@dataclass(frozen=True)
class Catalogue:
    pipelines: Mapping[str, PipelineSpec]
    variants: Mapping[tuple[str, str], Variant]  # (task, name) -> Variant
    defaults: Mapping[str, Any]

    def pipeline(self, name: str) -> PipelineSpec:
        try:
            return self.pipelines[name]
        except KeyError:
            raise CatalogueError(
                f"unknown pipeline {name!r}; known: {', '.join(sorted(self.pipelines))}"
            ) from None

    def profile_targets(self) -> dict[str, tuple[Variant, StageInput]]:
        """Every distinct (variant, input) pair the catalogue needs a profile for, by key."""
        targets: dict[str, tuple[Variant, StageInput]] = {}
        for p in self.pipelines.values():
            for s in p.stages:
                for v in s.variants:
                    targets.setdefault(s.profile_key(v), (v, s.input))
        return targets


def csv_rows(path: Path, required: tuple[str, ...]):
    """(row number, row) of a CSV data file, after checking it has the ``required`` columns
    (the error names the file and what is missing). Row numbers count the header as row 1."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogueError(f"{path}: missing column(s) {missing}; expected {list(required)}")
        yield from enumerate(reader, start=2)


def _as_bool(text: str, where: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes"):
        return True
    if t in ("false", "0", "no"):
        return False
    raise CatalogueError(f"{where}: field 'higher_is_better' must be true or false, got {text!r}")


def _as_float(text: str, where: str, name: str, *, positive: bool = False) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise CatalogueError(f"{where}: field {name!r} must be a number, got {text!r}") from None
    if not math.isfinite(value) or (positive and value <= 0) or value < 0:
        raise CatalogueError(f"{where}: field {name!r} must be a finite {'positive' if positive else 'non-negative'} number, got {text!r}")
    return value


def load_variants(path: Path | None = None) -> dict[tuple[str, str], Variant]:
    path = Path(path) if path else Path(str(DATA / "variants.csv"))
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in VARIANT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogueError(f"{path}: missing column(s) {missing}; expected {list(VARIANT_COLUMNS)}")
        variants: dict[tuple[str, str], Variant] = {}
        for row_no, row in enumerate(reader, start=2):
            where = f"{path}, row {row_no}"
            for c in VARIANT_COLUMNS:
                if c != "params_millions" and not (row.get(c) or "").strip():
                    raise CatalogueError(f"{where}: field {c!r} is empty")
            try:
                kwargs = json.loads(row["config_kwargs_json"])
            except json.JSONDecodeError as e:
                raise CatalogueError(f"{where}: field 'config_kwargs_json' is not JSON ({e})") from None
            value = _as_float(row["metric_value"], where, "metric_value")
            if value > 100:
                raise CatalogueError(f"{where}: field 'metric_value' is a percentage, got {value}")
            v = Variant(
                name=row["variant"].strip(), task=row["task"].strip(),
                config_class=row["config_class"].strip(), head_class=row["head_class"].strip(),
                family=row["family"].strip(), config_kwargs=kwargs, metric=row["metric"].strip(), metric_value=value,
                higher_is_better=_as_bool(row["higher_is_better"], where),
                params_millions=_as_float(row["params_millions"] or "0", where, "params_millions"),
                source=row["source"].strip(),
            )
            if (v.task, v.name) in variants:
                raise CatalogueError(f"{where}: duplicate variant {v.name!r} for task {v.task!r}")
            variants[(v.task, v.name)] = v
    return variants


def _check_params(params: Mapping[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in PARAMETER_TYPES:
            raise CatalogueError(f"{where}: unknown parameter {key!r}; known: {sorted(PARAMETER_TYPES)}")
        want = PARAMETER_TYPES[key]
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, want) or isinstance(value, bool):
            raise CatalogueError(f"{where}: parameter {key!r} must be {want.__name__}, got {value!r}")
        if key in POSITIVE and not (math.isfinite(value) and value > 0):
            raise CatalogueError(f"{where}: parameter {key!r} must be > 0, got {value!r}")
        if want in (int, float) and (not math.isfinite(value) or value < 0):
            raise CatalogueError(f"{where}: parameter {key!r} must be a finite non-negative number, got {value!r}")
        out[key] = value
    if "latency_statistic" in out and out["latency_statistic"] not in LATENCY_STATISTICS:
        raise CatalogueError(f"{where}: latency_statistic must be one of {LATENCY_STATISTICS}, got {out['latency_statistic']!r}")
    if "accuracy_method" in out and out["accuracy_method"] not in ACCURACY_METHODS:
        raise CatalogueError(f"{where}: accuracy_method must be one of {ACCURACY_METHODS}, got {out['accuracy_method']!r}")
    for key in ("scaling_cap", "batching_cap"):
        if key in out and out[key] < 1:
            raise CatalogueError(f"{where}: {key} must be >= 1, got {out[key]}")
    return out


def _stage_input(raw: Any, where: str) -> StageInput:
    if not isinstance(raw, dict) or raw.get("kind") not in ("image", "audio", "text"):
        raise CatalogueError(f"{where}: 'input' must be a mapping with kind image|audio|text, got {raw!r}")
    allowed = {"kind", "height", "width", "seconds", "tokens", "new_tokens"}
    extra = set(raw) - allowed
    if extra:
        raise CatalogueError(f"{where}: unknown input field(s) {sorted(extra)}; allowed {sorted(allowed)}")
    return StageInput(**raw)


def load_catalogue(pipelines_path: Path | None = None, variants_path: Path | None = None,
                   overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Catalogue:
    """Load and check the catalogue.

    ``overrides`` maps a pipeline name (or ``"defaults"``) to parameter values, as
    ``config.yaml`` gives them; they replace the catalogue's values.
    """
    pipelines_path = Path(pipelines_path) if pipelines_path else Path(str(DATA / "pipelines.yaml"))
    variants = load_variants(variants_path)
    with open(pipelines_path) as f:
        try:
            doc = yaml.safe_load(f)
        except yaml.YAMLError as e:  # a syntax error or a tag safe_load refuses
            raise CatalogueError(f"{pipelines_path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("pipelines"), dict):
        raise CatalogueError(f"{pipelines_path}: expected a mapping with a 'pipelines' mapping")
    overrides = dict(overrides or {})
    defaults = _check_params(doc.get("defaults") or {}, f"{pipelines_path}: defaults")
    defaults.update(_check_params(overrides.pop("defaults", {}) or {}, "overrides: defaults"))
    unknown = set(overrides) - set(doc["pipelines"])
    if unknown:
        raise CatalogueError(f"overrides name unknown pipeline(s) {sorted(unknown)}; known: {sorted(doc['pipelines'])}")
    pipelines: dict[str, PipelineSpec] = {}
    for pname, raw in doc["pipelines"].items():
        where = f"{pipelines_path}: pipeline {pname!r}"
        if not isinstance(raw, dict):
            raise CatalogueError(f"{where}: expected a mapping")
        raw = dict(raw)
        raw_stages = raw.pop("stages", None)
        description = str(raw.pop("description", ""))
        if not raw_stages:
            raise CatalogueError(f"{where}: has no stages")
        params = dict(defaults)
        params.update(_check_params(raw, where))
        params.update(_check_params(overrides.get(pname, {}) or {}, f"overrides: {pname}"))
        for required in ("threshold_rps", "load_scale"):
            if required not in params:
                raise CatalogueError(f"{where}: missing parameter {required!r}"
                                     + ("; `ipa calibrate` computes it" if required == "load_scale" else ""))
        stages = []
        for i, rs in enumerate(raw_stages):
            swhere = f"{where}, stage {i} ({rs.get('name', '?') if isinstance(rs, dict) else '?'})"
            if not isinstance(rs, dict):
                raise CatalogueError(f"{swhere}: expected a mapping")
            for key in ("name", "task", "input", "variants"):
                if key not in rs:
                    raise CatalogueError(f"{swhere}: missing field {key!r}")
            if not rs["variants"]:
                raise CatalogueError(f"{swhere}: stage has no variant")
            chosen = []
            for vname in rs["variants"]:
                v = variants.get((rs["task"], vname))
                if v is None:
                    known = sorted(n for (t, n) in variants if t == rs["task"])
                    raise CatalogueError(
                        f"{swhere}: unknown variant {vname!r} for task {rs['task']!r}; known: {known}"
                    )
                chosen.append(v)
            stages.append(Stage(rs["name"], rs["task"], _stage_input(rs["input"], swhere), tuple(chosen)))
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise CatalogueError(f"{where}: duplicate stage names {names}")
        pipelines[pname] = PipelineSpec(pname, description, tuple(stages), params)
    return Catalogue(pipelines, variants, defaults)
