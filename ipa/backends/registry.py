"""Backends by name, so `ipa run --backend NAME` finds one without importing the others.

Each backend module defines ``make_backend(**options)``; its keyword parameters (with their
annotations and defaults) are the options that backend takes, so `ipa run --backend-option
KEY=VALUE` is checked and typed against the signature itself and no list is kept twice. A
backend whose module is not there (yet) is reported as unavailable rather than unknown.
"""
from __future__ import annotations

import importlib
import inspect
import types
import typing
from typing import Any, Mapping

from ipa.errors import ConfigError

BACKENDS = {
    "sim": "ipa.backends.sim",
    "local": "ipa.backends.local",
    "kubernetes": "ipa.backends.kubernetes",
}
# Backends whose requests are real HTTP calls: their per-request log is the run's evidence, so
# requests.csv is always written for them.
LIVE_BACKENDS = frozenset({"local", "kubernetes"})
# Options the run itself sets: the seed from --seed, the work folder inside the run folder.
RUN_OPTIONS = ("seed", "work_dir")

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _module(name: str):
    module_name = BACKENDS.get(name)
    if module_name is None:
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise  # the backend exists but one of its own imports is missing: show that
        raise ConfigError(f"backend {name!r} is not available in this installation ({module_name} is missing)") from None


def backend_options(name: str) -> dict[str, tuple[tuple[type, ...], Any]]:
    """Every option ``make_backend`` of backend ``name`` takes: name -> (accepted types, default)."""
    factory = _module(name).make_backend
    hints = typing.get_type_hints(factory)
    out = {}
    for p in inspect.signature(factory).parameters.values():
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue  # **unknown: the backend's own catch-all, not an option
        hint = hints.get(p.name, type(p.default) if p.default is not p.empty else str)
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
            else (hint,)
        out[p.name] = (tuple(k for k in kinds if isinstance(k, type)), p.default)
    return out


def _convert(backend: str, key: str, value: Any, kinds: tuple[type, ...]) -> Any:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        if type(None) not in kinds:
            raise ConfigError(f"backend {backend!r}: option {key} needs a value")
        return None
    if not isinstance(value, str) or str in kinds:
        return value
    text = value.strip()
    for kind in kinds:
        if kind is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
        elif kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        elif kind is not type(None):
            return kind(text)
    names = " or ".join("none" if k is type(None) else k.__name__ for k in kinds)
    raise ConfigError(f"backend {backend!r}: option {key}={value!r} is not a valid {names}")


def check_backend_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` (values may be the strings a command line gives) typed as ``make_backend``
    declares them; a ConfigError naming the known options for anything it does not take."""
    known = backend_options(name)
    settable = [k for k in known if k not in RUN_OPTIONS]
    out = {}
    for key, value in options.items():
        if key in RUN_OPTIONS:
            how = "--seed" if key == "seed" else "the run (a folder inside --out)"
            raise ConfigError(f"backend option {key} is set by {how}, not by --backend-option")
        if key not in known:
            raise ConfigError(f"backend {name!r} has no option {key!r}; its options: "
                              f"{', '.join(settable) if settable else 'none'}")
        out[key] = _convert(name, key, value, known[key][0])
    return out


def make_backend(name: str, **options):
    return _module(name).make_backend(**options)
