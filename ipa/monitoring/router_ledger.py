"""The router's own ledger of a live run's requests, read from its /metrics text.

The router counts what reached it and how it answered (``ipa_router_requests_total``,
``ipa_router_responses_total`` by outcome, the drops and stage failures per stage),
independently of the load generator's log. A live backend reads these once at the end of a run,
after the load generator has its last response, and writes them to the run folder
(``ROUTER_COUNTS``); ``ipa.runs.ledger`` holds them against the run's records.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

ROUTER_COUNTS = "router_counts.json"

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of metric ``name`` in a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m and m.group(1) == name:
            labels = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(m.group(2) or "")}
            out.append((labels, float(m.group(3))))
    return out


@dataclass(frozen=True)
class RouterCounts:
    received: int
    answered: dict[str, int]              # outcome (ok, dropped, failed) -> requests
    dropped_by_stage: dict[str, int]
    failed_by_stage: dict[str, int]
    router_restarts: int = 0

    def as_json(self) -> dict:
        return asdict(self)


def router_counts(metrics_text: str, pipeline: str, router_restarts: int = 0) -> RouterCounts:
    """The router's ledger from its /metrics text."""
    def total(name: str, key: str | None = None, **match: str) -> dict[str, int] | int:
        rows = [(labels, v) for labels, v in samples(metrics_text, name)
                if all(labels.get(k) == want for k, want in match.items())]
        if key is None:
            return int(sum(v for _, v in rows))
        out: dict[str, int] = {}
        for labels, v in rows:
            out[labels.get(key, "")] = out.get(labels.get(key, ""), 0) + int(v)
        return out

    return RouterCounts(
        received=total("ipa_router_requests_total", pipeline=pipeline),
        answered=total("ipa_router_responses_total", "outcome", pipeline=pipeline),
        dropped_by_stage=total("ipa_router_drops_total", "stage"),
        failed_by_stage=total("ipa_router_stage_failures_total", "stage"),
        router_restarts=router_restarts)




def save_router_counts(router_url: str, pipeline: str, path, router_restarts: int = 0,
                       timeout_s: float = 5.0) -> str:
    """Read the router's ledger from its /metrics and write it as JSON to ``path``; returns the path.
    Raises IpaError when the router cannot be read (the run's check then reports the ledger missing)."""
    import json
    import urllib.request
    from pathlib import Path

    from ipa.errors import IpaError

    url = router_url.rstrip("/") + "/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            text = r.read().decode()
    except OSError as e:
        raise IpaError(f"the router's ledger could not be read from {url}: {e}") from None
    counts = router_counts(text, pipeline, router_restarts)
    Path(path).write_text(json.dumps(counts.as_json(), indent=2) + "\n")
    return str(path)
