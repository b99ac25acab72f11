"""Backends by name, so `ipa run --backend NAME` finds one without importing the others.

Each backend module defines ``make_backend(**options)``; a backend whose module is not there
(yet) is reported as unavailable rather than unknown.
"""
from __future__ import annotations

import importlib

from ipa.errors import ConfigError

BACKENDS = {
    "sim": "ipa.backends.sim",
    "local": "ipa.backends.local",
    "kubernetes": "ipa.backends.kubernetes",
}


def make_backend(name: str, **options):
    module_name = BACKENDS.get(name)
    if module_name is None:
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise  # the backend exists but one of its own imports is missing: show that
        raise ConfigError(f"backend {name!r} is not available in this installation ({module_name} is missing)") from None
    return module.make_backend(**options)
