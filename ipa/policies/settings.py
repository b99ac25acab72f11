"""Policy settings: typed dataclasses whose fields are a policy's options, filled from the command
line (strings), the catalogue's ``policy_options`` or code, and checked once, naming the option
and its allowed range when a value is wrong."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from ipa.errors import ConfigError

TRUE, FALSE, NONE = ("true", "yes", "on", "1"), ("false", "no", "off", "0"), ("none", "off")


def check_range(name: str, value, low: float, high: float, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}]" if math.isfinite(high) else \
            f"{'>' if low_open else '>='} {low:g}"
        raise ConfigError(f"policy option {name} must be a number {'in ' if math.isfinite(high) else ''}{bounds}, "
                          f"got {value!r}")


def check_whole(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"policy option {name} must be a whole number >= {low}, got {value!r}")


def _typed(policy: str, name: str, value, default):
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in TRUE + FALSE:
            return value.lower() in TRUE
        if not isinstance(value, bool):
            raise ConfigError(f"policy {policy}: option {name}={value!r} must be true or false")
        return value
    if isinstance(value, str):  # from the command line
        if value.lower() in NONE:
            return None
        try:
            return int(value) if isinstance(default, int) else float(value)
        except ValueError:
            raise ConfigError(f"policy {policy}: option {name}={value!r} is not a number") from None
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def settings_from(cls, options: Mapping[str, Any], policy: str):
    """The policy's settings with ``options`` applied; an unknown name or bad value is refused,
    naming the option and what it allows."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"policy {policy}: unknown option(s) {unknown}; known: {', '.join(known)}")
    typed = {name: _typed(policy, name, value, known[name].default) for name, value in options.items()}
    settings = cls(**typed)
    settings.check()
    return settings


@dataclass(frozen=True)
class IpaPlusSettings:
    """ipa-plus: IPA with a switch cost and forecast-quantile provisioning, each switchable alone."""

    switch_cost: bool = True           # a changed variant pays its load time in idle cores
    # provision the forecast times this quantile of recent realised/forecast peak ratios instead
    # of the catalogue's fixed margin (none: the margin, as IPA)
    forecast_quantile: float | None = 0.9

    def check(self) -> None:
        if not isinstance(self.switch_cost, bool):
            raise ConfigError(f"policy option switch_cost must be true or false, got {self.switch_cost!r}")
        q = self.forecast_quantile
        if q is not None and not (isinstance(q, (int, float)) and not isinstance(q, bool) and 0 < q < 1):
            raise ConfigError(f"policy option forecast_quantile must be a number in (0, 1) or none, got {q!r}")
