"""Build a catalogue variant's architecture from its config, with random weights (needs torch)."""
from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402

from ipa.errors import CatalogueError  # noqa: E402
from ipa.pipelines.catalogue import Variant  # noqa: E402
from ipa.profiling.quick import quick_kwargs  # noqa: E402

transformers.logging.set_verbosity_error()


def config_kwargs(variant: Variant, quick: bool = False) -> dict[str, Any]:
    kw = dict(variant.config_kwargs)
    return quick_kwargs(variant.config_class, kw) if quick else kw


def _cls(name: str, what: str, variant: Variant):
    cls = getattr(transformers, name, None)
    if cls is None:
        raise CatalogueError(f"variant {variant.name!r}: transformers {transformers.__version__} has no "
                             f"{what} {name!r}")
    return cls


def resolve(variant: Variant) -> tuple[type, type]:
    """The (config class, model class); importing them first keeps transformers' lazy module import
    out of the build time and the memory baseline."""
    return _cls(variant.config_class, "config class", variant), _cls(variant.head_class, "model class", variant)


def build_config(variant: Variant, quick: bool = False):
    config_cls = _cls(variant.config_class, "config class", variant)
    return config_cls(**config_kwargs(variant, quick))


def build_model(variant: Variant, quick: bool = False) -> torch.nn.Module:
    """``HeadClass(ConfigClass(**config_kwargs))`` in eval mode, random weights, fp32, on CPU."""
    head_cls = _cls(variant.head_class, "model class", variant)
    model = head_cls(build_config(variant, quick))
    model.eval()
    return model


def count_params(model: torch.nn.Module) -> int:
    """Parameters of the built model; shared (tied) tensors are counted once."""
    return sum(p.numel() for p in model.parameters())
