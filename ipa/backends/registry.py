"""Backends by name, so `ipa run --backend NAME` finds one without importing the others.

Each backend module defines ``SETTINGS``, a dataclass whose fields (with their annotations and
defaults) are the options that backend takes, and ``make_backend(settings)``. `ipa run
--backend-option KEY=VALUE` is checked and typed against those fields, so no list of options is
kept twice. A backend whose module is not there (yet) is reported as unavailable rather than
unknown.
"""
from __future__ import annotations

import dataclasses
import importlib
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
    """Every option of backend ``name``: field name -> (accepted types, default)."""
    settings = _module(name).SETTINGS
    hints = typing.get_type_hints(settings)
    out = {}
    for f in dataclasses.fields(settings):
        hint = hints[f.name]
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
            else (hint,)
        out[f.name] = (tuple(typing.get_origin(k) or k for k in kinds), f.default)
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
        elif kind is tuple:  # a list of seconds, e.g. retry_delays_s=0.5,1,2
            try:
                return tuple(float(x) for x in text.split(",") if x.strip())
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
    _module(name).SETTINGS(**out)  # its own checks (a mode, a range) fail here, before any work
    return out


def make_backend(name: str, **options):
    """Backend ``name`` with ``options`` (typed already, ``check_backend_options``); a bad value
    is refused by the settings' own checks, naming the option."""
    module = _module(name)
    known = backend_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"backend {name!r}: unknown option(s) {unknown}; its options: {', '.join(known)}")
    return module.make_backend(module.SETTINGS(**options))
