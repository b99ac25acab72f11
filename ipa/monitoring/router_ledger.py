"""The router's own ledger of a live run's requests, read from its /metrics text.

The router counts what reached it and how it answered (``ipa_router_requests_total``,
``ipa_router_responses_total`` by outcome, the drops and stage failures per stage),
independently of the load generator's log; each stage server counts the requests it served
(``ipa_stage_items_total``), independently of the router. A live backend reads these once at the end of a run,
after the load generator has its last response, and writes them to the run folder
(``ROUTER_COUNTS``); ``ipa.runs.ledger`` holds them against the run's records.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

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
    # the stages' own count of the requests they served (ipa_stage_items_total), in pipeline
    # order; None where the backend cannot read every stage server's counters at the end (on
    # Kubernetes a scaled-down pod takes its counters with it)
    served_by_stage: dict[str, int] | None = None
    stage_restarts: int = 0  # stage processes restarted: their counters start again
    stage_counts_error: str = ""  # why ``served_by_stage`` could not be read, where it was asked for

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




def served_by_stage(metrics_texts: dict[str, str]) -> dict[str, int]:
    """Requests each stage served, from its servers' /metrics texts (stage -> text, in pipeline
    order; one stage's servers' texts joined)."""
    return {stage: int(sum(v for labels, v in samples(text, "ipa_stage_items_total") if labels.get("stage") == stage))
            for stage, text in metrics_texts.items()}


def read_metrics(url: str, what: str, timeout_s: float = 5.0) -> str:
    """The /metrics text at ``url``; IpaError naming ``what`` when it cannot be read."""
    import urllib.request

    from ipa.errors import IpaError

    url = url.rstrip("/") + "/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.read().decode()
    except OSError as e:
        raise IpaError(f"the {what}'s counters could not be read from {url}: {e}") from None


def save_router_counts(router_url: str, pipeline: str, path, router_restarts: int = 0,
                       stage_urls: dict[str, list[str]] | None = None, stage_restarts: int = 0) -> RouterCounts:
    """Read the router's ledger from its /metrics (and, given ``stage_urls``, each stage server's
    count of what it served) and write it as JSON to ``path``; returns what it wrote. Raises
    IpaError when the router cannot be read (the run's check then reports the ledger missing)."""
    import json
    from pathlib import Path

    from ipa.errors import IpaError

    counts = router_counts(read_metrics(router_url, "router"), pipeline, router_restarts)
    if stage_urls is not None:
        try:
            texts = {stage: "\n".join(read_metrics(u, f"stage {stage}") for u in urls)
                     for stage, urls in stage_urls.items()}
            counts = replace(counts, served_by_stage=served_by_stage(texts), stage_restarts=stage_restarts)
        except IpaError as e:  # the router's half still stands; the run folder says what is missing
            counts = replace(counts, stage_counts_error=str(e))
    Path(path).write_text(json.dumps(counts.as_json(), indent=2) + "\n")
    return counts
