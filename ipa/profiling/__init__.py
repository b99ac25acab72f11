"""Real-model latency profiling (``ipa profile``).

Architectures are built from their ``transformers`` config with random weights (no download),
so latency, memory and load time are real measurements while accuracy stays the published
number from the catalogue.

Importing this package does not import torch: :mod:`ipa.profiling.plan` (which targets, in which
order, at which batch sizes) works without it; :mod:`builders`, :mod:`inputs` and :mod:`runner`
need the ``torch`` extra (``pip install 'ipa-bench[torch]'``).
"""
from __future__ import annotations

TORCH_HINT = "ipa profile needs torch and transformers: pip install 'ipa-bench[torch]'"


def torch_available() -> bool:
    """True when torch and transformers can both be imported."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False
    return True
