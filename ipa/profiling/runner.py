"""Measure profile targets and write their measurement files (needs torch).

Definitions (also written into every file under ``method``):

* cell: one (batch, threads) of a key. All cells of a key are measured **interleaved**: in
  each round every thread count is visited (rotating order) and, within it, every batch size
  (rotating order) gets one timed call, so drift on a shared machine hits every cell alike
  instead of corrupting one. Rounds continue until every cell's median is known within
  ``CI_TARGET`` (distribution-free 95 % interval, :mod:`ipa.profiling.stats`) after at least
  ``min_reps`` rounds, or ``max_reps`` rounds, or the key's time budget.
* latency: wall-clock ``time.perf_counter`` around one call on a batch, under
  ``torch.inference_mode()``, with ``torch.set_num_threads(threads)``; a forward pass, or for
  generative models the whole forced-length greedy ``generate`` loop. After a thread-count
  switch one untimed call settles the thread pool. p50 / p99 are numpy percentiles (linear),
  std the population standard deviation, ``ci_low_s`` / ``ci_high_s`` the median's interval.
* disturbed: a cell whose repetitions drift, spread, ran beside other processes' CPU work, or
  that breaks a physical invariant against its neighbours (:mod:`ipa.pipelines.invariants`) is
  measured again (up to ``retries`` times, interleaved with the other flagged cells); every
  attempt stays in the file. One still flagged after that keeps ``suspect: true``.
* peak_memory_mb: the process's resident-set high-water mark (``VmHWM``, reset before the
  cell's warm-up through ``/proc/self/clear_refs``) during the warm-up call of that cell,
  minus the process RSS before the model was built: weights + activations + allocator
  overhead of this model, without the Python/torch runtime. Where the reset is not available,
  a 5 ms RSS sampler thread gives the peak instead (``memory_method`` says which).
* build_time_s: ``HeadClass(ConfigClass(**kwargs))`` with random initialisation, 1 thread.
* load_time_s: what a new replica pays before serving: build from config (random init
  included) + ``torch.load`` of the saved state_dict from a temporary file (warm page cache)
  + ``load_state_dict``, 1 thread. Process start and ``import torch`` are not included.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import transformers

from ipa.errors import CatalogueError
from ipa.outputs import write_atomic
from ipa.pipelines.invariants import check_key, report
from ipa.pipelines.profiles import assemble, rows_from_measurement
from ipa.profiling import host, stats
from ipa.profiling.builders import build_model, count_params, resolve
from ipa.profiling.inputs import generated_tokens, make_call
from ipa.profiling.plan import Target, default_threads
from ipa.profiling.quick import quick_input

MIN_REPS = 5             # rounds before the precision target may stop the key (95 % CI needs 6+)
MAX_REPS = 25
TIME_BUDGET_S = 60.0     # after min_reps rounds, no new round starts once an attempt has taken this long
SETTLE_MAX_S = 1.0       # the untimed call after a thread switch, when the cell is this cheap
QUIET_MAX_WAIT_S = 10.0  # before each round, wait up to this long for other work to go quiet

METHOD = {
    "latency": "perf_counter around one call (forward, or full forced-length greedy generate) under "
               "torch.inference_mode and torch.set_num_threads(threads); p50/p99 = numpy percentile (linear), "
               "std = population std, ci = distribution-free 95 % interval of the median (order statistics)",
    "interleaving": "all (batch, threads) cells of a key in rounds: per round each thread count (rotating order), "
                    "one settle call after the switch, then one timed call per batch size (rotating order); "
                    f"at least min_reps rounds, then until every median's CI half-width <= {stats.CI_TARGET:.0%}, "
                    "max_reps rounds or the time budget",
    "other_work": f"before each round, wait up to {QUIET_MAX_WAIT_S:g} s for other processes to leave the cores; "
                  "other_cpu_cores = CPU time of other processes (/proc/stat minus this process) during the "
                  "cell's timed calls / their wall time",
    "disturbed": f"a cell is flagged when its repetitions drift (first vs last third median > {stats.TREND_CHANGE:.0%} "
                 f"and |Kendall tau| >= {stats.TREND_TAU}), spread (robust CV > {stats.SPREAD_LIMIT:.0%}), "
                 f"other work used more than max({stats.OTHER_MARGIN}, nproc - threads - {stats.OTHER_MARGIN}) cores, "
                 "or it breaks a physical invariant against a neighbour cell beyond both confidence intervals "
                 "(the slower cell is flagged: interference only adds time); flagged cells are measured again "
                 "(retries), every attempt is kept in attempts",
    "peak_memory_mb": "VmHWM during the cell's warm-up call (reset via /proc/self/clear_refs) minus process RSS "
                      "before the model was built",
    "build_time_s": "HeadClass(ConfigClass(**config_kwargs)) with random init, 1 thread",
    "load_time_s": "build from config (random init) + torch.load(saved state_dict, warm page cache) + "
                   "load_state_dict, 1 thread; excludes process start and import torch",
    "weights": "random (architecture only); accuracy is the published value from the catalogue",
}

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


# --- memory -------------------------------------------------------------------------------

def _status_kb(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) if m else None


def trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc), so RSS baselines do not carry the last model."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    if kb is None:  # not Linux: fall back to the lifetime maximum
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return kb / 1024.0


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kb("VmHWM") is not None
    except OSError:
        return False


class PeakMemory:
    """Peak RSS over a block: the kernel's reset high-water mark, or a sampling thread."""

    def __enter__(self) -> "PeakMemory":
        self.method = "vmhwm" if _reset_hwm() else "sampled"
        self.peak = rss_mb()
        self._stop = threading.Event()
        if self.method == "sampled":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mb())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self.method == "sampled":
            self._thread.join()
        else:
            self.peak = max(self.peak, (_status_kb("VmHWM") or 0) / 1024.0)
        self.peak = max(self.peak, rss_mb())


# --- other work on the machine -------------------------------------------------------------

def _busy_s() -> float | None:
    """CPU seconds spent by the whole machine (all cores, steal included) since boot."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _self_s() -> float:
    t = os.times()
    return t.user + t.system


class OtherLoad:
    """Cores used by everything except this process over a block (from /proc/stat)."""

    def __enter__(self) -> "OtherLoad":
        self._busy, self._self, self._t = _busy_s(), _self_s(), time.perf_counter()
        self.cores: float | None = None
        return self

    def __exit__(self, *exc: Any) -> None:
        busy = _busy_s()
        wall = time.perf_counter() - self._t
        if busy is None or self._busy is None or wall <= 0:
            return
        self.cores = max(0.0, (busy - self._busy) - (_self_s() - self._self)) / wall


def _other_cpu_s() -> float | None:
    """CPU seconds the rest of the machine has used (every process but this one) since boot."""
    busy = _busy_s()
    return None if busy is None else busy - _self_s()


def wait_for_quiet(threads: int, max_wait_s: float = QUIET_MAX_WAIT_S,
                   window_s: float = 0.5) -> tuple[float, float | None]:
    """Wait (up to ``max_wait_s``) until other work leaves room for ``threads`` threads over a
    window. Returns (seconds waited, other cores in the last window)."""
    t0 = time.perf_counter()
    nproc = os.cpu_count() or 1
    while True:
        with OtherLoad() as other:
            time.sleep(window_s)
        if (other.cores is None or other.cores < stats.other_limit(threads, nproc)
                or time.perf_counter() - t0 >= max_wait_s):
            return time.perf_counter() - t0, other.cores


# --- provenance ---------------------------------------------------------------------------

def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    try:
        memory_gb: float | None = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (AttributeError, ValueError, OSError):
        memory_gb = None
    return {"node": platform.node(), "cpu_model": host.cpu_model(), "isa": host.isa(), "nproc": os.cpu_count(),
            "platform": platform.platform(), "memory_gb": memory_gb}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- measuring ----------------------------------------------------------------------------

def _build_and_load(target: Target, quick: bool, log: Log) -> tuple[torch.nn.Module, dict[str, Any]]:
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = build_model(target.variant, quick=quick)
    build_time = time.perf_counter() - t0
    params = count_params(model)
    fd, tmp = tempfile.mkstemp(prefix="ipa-profile-", suffix=".pt")
    os.close(fd)
    try:
        torch.save(model.state_dict(), tmp)
        size_mb = os.path.getsize(tmp) / 2**20
        del model
        gc.collect()
        t0 = time.perf_counter()
        model = build_model(target.variant, quick=quick)
        t1 = time.perf_counter()
        state = torch.load(tmp, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        t2 = time.perf_counter()
        del state
        gc.collect()
        trim_heap()
    finally:
        os.unlink(tmp)
    info = {"params_millions": round(params / 1e6, 4), "build_time_s": build_time, "load_time_s": t2 - t0,
            "load_time_parts_s": {"build": t1 - t0, "load_state_dict": t2 - t1},
            "state_dict_mb": round(size_mb, 2)}
    log(f"  built {info['params_millions']:.2f} M params in {build_time:.2f} s; "
        f"load (build + state_dict {size_mb:.0f} MB) {info['load_time_s']:.2f} s")
    return model, info


Cell = tuple[int, int]  # (batch, threads)


def _rotated(items: Sequence, r: int) -> list:
    k = r % len(items)
    return list(items[k:]) + list(items[:k])


def _check_generation(target: Target, model: torch.nn.Module, call: Any, out: Any) -> None:
    if call.new_tokens:
        got = generated_tokens(model, out, call.inputs)
        if got != call.new_tokens:
            raise RuntimeError(f"{target.key}: generate produced {got} new tokens, forced length is {call.new_tokens}")


def _warm_up(target: Target, model: torch.nn.Module, calls: dict[int, Any], cells: Sequence[Cell],
             baseline: float, warmup: int) -> dict[Cell, dict[str, Any]]:
    """``warmup`` untimed calls per cell, each cell's peak memory measured over its own calls."""
    memory = {}
    for batch, n_threads in cells:
        torch.set_num_threads(n_threads)
        with PeakMemory() as peak:
            for _ in range(max(1, warmup)):
                out = calls[batch].run()
                _check_generation(target, model, calls[batch], out)
                del out
        memory[(batch, n_threads)] = {"peak_memory_mb": round(max(0.0, peak.peak - baseline), 1),
                                      "peak_rss_mb": round(peak.peak, 1), "memory_method": peak.method}
    return memory


def _rounds(calls: dict[int, Any], cells: Sequence[Cell], *, min_reps: int, max_reps: int, budget_s: float,
            max_wait_s: float, t_key: float) -> dict[Cell, list[dict[str, float]]]:
    """Interleaved rounds over ``cells``: every thread count in turn (rotating), after a settle
    call one timed call per batch (rotating). Each repetition records its latency, the other
    processes' CPU seconds beside it, and when it ran (seconds since the key started)."""
    reps: dict[Cell, list[dict[str, float]]] = {c: [] for c in cells}
    threads = sorted({t for _, t in cells})
    batches_of = {t: sorted(b for b, tt in cells if tt == t) for t in threads}
    t0 = time.perf_counter()
    for r in range(max_reps):
        if r >= min_reps and (time.perf_counter() - t0 > budget_s or all(
                stats.precise_enough([x["latency_s"] for x in reps[c]], min_reps) for c in cells)):
            break
        if max_wait_s > 0:
            wait_for_quiet(max(threads), max_wait_s)
        for n_threads in _rotated(threads, r):
            torch.set_num_threads(n_threads)
            first = (batches_of[n_threads][0], n_threads)
            if not reps[first] or reps[first][-1]["latency_s"] < SETTLE_MAX_S:
                calls[first[0]].run()  # the thread pool's first call after a switch is slower
            for batch in _rotated(batches_of[n_threads], r):
                o0, s0 = _other_cpu_s(), time.perf_counter()
                out = calls[batch].run()
                lat = time.perf_counter() - s0
                o1 = _other_cpu_s()
                del out
                reps[(batch, n_threads)].append({
                    "latency_s": lat, "other_cpu_s": None if o0 is None or o1 is None else max(0.0, o1 - o0),
                    "at_s": round(s0 - t_key, 3), "round": r})
    return reps


def summarise(latencies: Sequence[float]) -> dict[str, float]:
    a = np.asarray(latencies, dtype=float)
    lo, hi = stats.median_ci(latencies)
    return {"latency_p50_s": float(np.percentile(a, 50, method="linear")),
            "latency_p99_s": float(np.percentile(a, 99, method="linear")),
            "latency_mean_s": float(a.mean()), "latency_std_s": float(a.std()),
            "ci_low_s": float(lo), "ci_high_s": float(hi)}


def _cell_record(cell: Cell, reps: list[dict[str, float]], nproc: int) -> dict[str, Any]:
    batch, n_threads = cell
    lats = [x["latency_s"] for x in reps]
    other = [x["other_cpu_s"] for x in reps]
    other_s = None if any(o is None for o in other) else sum(other)
    verdict = stats.judge(lats, threads=n_threads, nproc=nproc, other_cpu_s=other_s, wall_s=sum(lats))
    return {"batch": batch, "threads": n_threads, "reps": len(lats), "latencies_s": lats,
            "at_s": [x["at_s"] for x in reps], "rounds": [x["round"] for x in reps],
            **summarise(lats), "trend": round(verdict.trend, 4), "kendall_tau": round(verdict.tau, 3),
            "robust_cv": round(verdict.robust_cv, 4),
            "other_cpu_cores": None if verdict.other_cores is None else round(verdict.other_cores, 3),
            "reasons": list(verdict.reasons)}


def neighbour_flags(key: str, records: dict[Cell, dict[str, Any]]) -> dict[Cell, list[str]]:
    """Cells slower than their neighbours allow: for each invariant violation among the cell
    medians, the cell whose latency is too high (interference only ever adds time)."""
    doc = {"key": key, "load_time_s": 0.0, "measurements": [{**m, "peak_memory_mb": 0.0} for m in records.values()]}
    flags: dict[Cell, list[str]] = {}
    for v in check_key(rows_from_measurement(doc, None)):
        # batch: the smaller batch is too slow; cores: the larger core count is too slow;
        # speedup: the smaller core count is too slow.
        slow, other = (v.row, v.other) if v.invariant == "cores" else (v.other, v.row)
        flags.setdefault(slow, []).append(f"invariant {v.invariant} vs batch {other[0]} threads {other[1]} "
                                          f"({v.statistic})")
    return flags


def _flagged(key: str, records: dict[Cell, dict[str, Any]]) -> dict[Cell, list[str]]:
    flags = {c: list(m["reasons"]) for c, m in records.items() if m["reasons"]}
    for c, why in neighbour_flags(key, records).items():
        flags.setdefault(c, []).extend(why)
    return flags


def measure_target(target: Target, *, threads: Iterable[int] | None = None, min_reps: int = MIN_REPS,
                   max_reps: int = MAX_REPS, quick: bool = False, warmup: int = 1, retries: int = 2,
                   max_wait_s: float | None = None, time_budget_s: float = TIME_BUDGET_S, log: Log = _print,
                   command: str = "") -> dict[str, Any]:
    """Build, load and time one target, all its cells interleaved; the measurement document."""
    started, t_start, load_start = _now(), time.perf_counter(), loadavg()
    threads = tuple(sorted(set(threads or default_threads())))
    if max_wait_s is None:
        max_wait_s = 0.0 if quick else QUIET_MAX_WAIT_S
    if max_reps < min_reps:
        max_reps = min_reps
    nproc = os.cpu_count() or 1
    resolve(target.variant)
    gc.collect()
    trim_heap()
    baseline = rss_mb()
    stage_input = quick_input(target.input) if quick else target.input
    probe = host.speed_probe()
    model, info = _build_and_load(target, quick, log)
    cells = [(b, t) for b in target.batches for t in threads]
    with torch.inference_mode():
        calls = {b: make_call(model, stage_input, b) for b in target.batches}
        shapes = {b: calls[b].shape for b in target.batches}
        memory = _warm_up(target, model, calls, cells, baseline, warmup)
        reps = _rounds(calls, cells, min_reps=min_reps, max_reps=max_reps, budget_s=time_budget_s,
                       max_wait_s=max_wait_s, t_key=t_start)
        records = {c: _cell_record(c, reps[c], nproc) for c in cells}
        history: dict[Cell, list[dict[str, Any]]] = {c: [] for c in cells}
        flagged = _flagged(target.key, records)
        for attempt in range(1, retries + 1):
            if not flagged:
                break
            log(f"  attempt {attempt + 1}: re-measuring {len(flagged)} flagged cell(s): "
                + "; ".join(f"b{b} t{t}: {', '.join(why)}" for (b, t), why in sorted(flagged.items())))
            again = _rounds(calls, sorted(flagged), min_reps=min_reps, max_reps=max_reps, budget_s=time_budget_s,
                            max_wait_s=max_wait_s, t_key=t_start)
            for c in flagged:
                history[c].append({**{k: records[c][k] for k in ("latencies_s", "at_s", "latency_p50_s",
                                                                 "other_cpu_cores")},
                                   "flagged_for": flagged[c]})
                records[c] = _cell_record(c, again[c], nproc)
            flagged = _flagged(target.key, records)
        del calls
    del model
    gc.collect()
    measurements = []
    for c in cells:
        m = {**records[c], **memory[c], "input_shape": shapes[c[0]], "attempts": len(history[c]) + 1,
             "suspect": c in flagged, "flagged_for": flagged.get(c, [])}
        if history[c]:
            m["earlier_attempts"] = history[c]
        measurements.append(m)
        log(f"  batch {c[0]} threads {c[1]}: p50 {m['latency_p50_s'] * 1000:.1f} ms "
            f"[{m['ci_low_s'] * 1000:.1f}, {m['ci_high_s'] * 1000:.1f}], p99 {m['latency_p99_s'] * 1000:.1f} ms, "
            f"{m['reps']} reps, peak +{m['peak_memory_mb']:.0f} MB, other work {m['other_cpu_cores']} cores"
            f"{', attempt %d' % m['attempts'] if m['attempts'] > 1 else ''}"
            f"{' STILL SUSPECT: ' + '; '.join(m['flagged_for']) if m['suspect'] else ''}")
    v = target.variant
    return {
        "key": target.key, "variant": v.name, "task": v.task, "family": v.family, "input": target.input.id,
        "input_used": stage_input.id, "config_class": v.config_class, "head_class": v.head_class,
        "params_millions": info["params_millions"], "params_millions_catalogue": v.params_millions,
        "build_time_s": info["build_time_s"], "load_time_s": info["load_time_s"],
        "load_time_parts_s": info["load_time_parts_s"], "state_dict_mb": info["state_dict_mb"],
        "generation": ({"new_tokens": stage_input.new_tokens, "forced": True, "num_beams": 1, "do_sample": False}
                       if any(m["input_shape"].get("generate") for m in measurements) else None),
        "batches": list(target.batches), "threads": list(threads), "pipelines": list(target.pipelines),
        "suspect_blocks": sum(bool(m["suspect"]) for m in measurements),
        "measurements": measurements,
        "method": METHOD,
        "provenance": {
            "machine": machine(), "speed_probe": probe, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__,
            "date": started, "date_end": _now(), "duration_s": round(time.perf_counter() - t_start, 1),
            "loadavg_start": load_start, "loadavg_end": loadavg(),
            "baseline_rss_mb": round(baseline, 1),
            "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
            "min_reps": min_reps, "max_reps": max_reps, "retries": retries, "max_wait_s": max_wait_s,
            "time_budget_s": time_budget_s, "quick": quick, "command": command or " ".join(sys.argv),
            "shared_machine": "other work may run on the same cores: see loadavg and each cell's other_cpu_cores",
            "other_cpu_cores_max": max((m["other_cpu_cores"] or 0.0 for m in measurements), default=0.0),
        },
    }


def merge_documents(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """``new`` plus the cells of ``old`` that ``new`` did not measure (another thread count, e.g.
    from a larger machine), each carried-over cell keeping the provenance it was measured with.
    A cell measured now always replaces the old one."""
    if not old or old.get("key") != new["key"] or bool(old["provenance"].get("quick")) != bool(new["provenance"].get("quick")):
        return new
    have = {(m["batch"], m["threads"]) for m in new["measurements"]}
    carried = []
    for m in old["measurements"]:
        if (m["batch"], m["threads"]) not in have and m["batch"] in new["batches"]:
            carried.append({**m, "provenance": m.get("provenance") or old["provenance"]})
    if not carried:
        return new
    merged = dict(new)
    merged["measurements"] = sorted(new["measurements"] + carried, key=lambda m: (m["batch"], m["threads"]))
    merged["threads"] = sorted({m["threads"] for m in merged["measurements"]})
    merged["suspect_blocks"] = sum(bool(m.get("suspect")) for m in merged["measurements"])
    return merged


def write_json(doc: dict[str, Any], path: Path) -> None:
    write_atomic(path, json.dumps(doc, indent=1) + "\n")


def match_autogroup_nice(log: Log) -> None:
    """With kernel autogroups (one scheduling group per session), ``nice -n -5`` only ranks a
    process inside its own session; give the session's group the process's niceness too, so a
    raised priority holds against other sessions' work."""
    group = Path("/proc/self/autogroup")
    niceness = os.nice(0)
    if niceness >= 0 or not group.exists():
        return
    try:
        group.write_text(str(niceness))
        log(f"scheduling: nice {niceness}, autogroup {group.read_text().strip()}")
    except OSError as e:
        log(f"scheduling: nice {niceness}; could not set the autogroup's nice ({e})")


@dataclass(frozen=True)
class MeasureOptions:
    """How each key is measured (the ``ipa profile`` flags that reach ``measure_target``)."""

    threads: tuple[int, ...] = ()      # empty: plan.default_threads()
    min_reps: int = MIN_REPS
    max_reps: int = MAX_REPS
    retries: int = 2
    max_wait_s: float | None = None    # None: QUIET_MAX_WAIT_S, or 0 with quick
    time_budget_s: float = TIME_BUDGET_S
    quick: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "MeasureOptions":
        raw = json.loads(text)
        raw["threads"] = tuple(raw.get("threads") or ())
        return cls(**raw)


def measure_and_write(t: Target, path: Path, options: MeasureOptions, command: str = "", log: Log = _print,
                      isolated: bool = False) -> None:
    """Measure one key and write its file, keeping cells of an existing file that this run did
    not measure (other thread counts)."""
    doc = measure_target(t, threads=options.threads or None, min_reps=options.min_reps, max_reps=options.max_reps,
                         quick=options.quick, retries=options.retries, max_wait_s=options.max_wait_s,
                         time_budget_s=options.time_budget_s, log=log, command=command)
    doc["provenance"]["isolated"] = isolated
    old = None
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
    merged = merge_documents(doc, old)
    if old is not None and "start_to_ready" in old and "start_to_ready" not in merged:
        # re-measuring latencies keeps the key's start to ready: it is its load time
        merged = with_start_to_ready(merged, old["start_to_ready"], path)
    write_json(merged, path)


LOAD_TIME_METHOD = ("start to ready of a fresh real-mode stage server (start_to_ready: interpreter, imports, "
                    "build with random init, one warm-up batch) + load_state_dict (reading the weights, which a "
                    "random-init replica skips)")


def with_start_to_ready(doc: dict, result: dict, where: Path) -> dict:
    """The key's document with its load time made the measured start to ready plus the weights'
    read: what a new replica (a fresh process, as a pod is) pays before it serves. The
    in-process build-and-load figures stay as parts."""
    parts = dict(doc.get("load_time_parts_s") or {})
    if "load_state_dict" not in parts:
        raise CatalogueError(f"{where}: no load_state_dict time in load_time_parts_s: re-measure the key")
    parts["start_to_ready"] = result["median_s"]
    method = {**(doc.get("method") or {}), "load_time_s": LOAD_TIME_METHOD}
    return {**doc, "start_to_ready": result, "load_time_parts_s": parts,
            "load_time_s": result["median_s"] + parts["load_state_dict"], "method": method}


def record_start_to_ready(path: Path, result: dict) -> dict:
    """Write a measured start to ready into the key's file (``with_start_to_ready``)."""
    doc = with_start_to_ready(json.loads(path.read_text()), result, path)
    write_json(doc, path)
    return doc


def is_suspect_file(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("suspect_blocks"))
    except (OSError, json.JSONDecodeError):
        return True


def missing_cells(t: Target, path: Path, threads: Sequence[int]) -> list[tuple[int, int]]:
    """(batch, threads) cells the plan wants that the key's file does not have."""
    try:
        have = {(m["batch"], m["threads"]) for m in json.loads(path.read_text())["measurements"]}
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        have = set()
    return [(b, n) for b in t.batches for n in threads if (b, n) not in have]


def _measure_in_subprocess(t: Target, path: Path, options: MeasureOptions, command: str) -> None:
    """One key in a fresh Python process: clean memory baseline, and a crash (or OOM kill) stays
    confined to that key."""
    argv = [sys.executable, "-m", "ipa.profiling.worker", t.key, "--json", str(path),
            "--options", options.to_json(), "--command", command]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    sys.stdout.flush()
    proc = subprocess.Popen(argv, env=env)
    try:
        rc = proc.wait()
    except BaseException:  # interrupted or terminated: take the worker down too
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    if rc != 0:
        raise RuntimeError(f"worker for {t.key} exited with status {rc}")


def run_profile(targets: list[Target], out_dir: Path, csv_path: Path, options: MeasureOptions, *,
                force: bool = False, isolate: bool = False, redo_suspect: bool = False,
                log: Log = _print, command: str = "") -> dict[str, list[str]]:
    """Measure every target lacking a file (or a requested thread count) in ``out_dir`` (all
    with ``force``; also those with a suspect cell with ``redo_suspect``); reassemble the CSV
    after each. ``isolate`` measures each key in its own process. Returns the keys measured,
    skipped and failed (a failure does not stop the run) and the physical-invariant
    violations left in the assembled table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, list[str]] = {"measured": [], "skipped": [], "failed": [], "violations": []}
    t_run = time.perf_counter()
    threads = options.threads or default_threads()

    def wanted(t: Target) -> bool:
        path = t.json_path(out_dir)
        return (force or not path.exists() or (redo_suspect and is_suspect_file(path))
                or bool(missing_cells(t, path, threads)))

    if isolate and threading.current_thread() is threading.main_thread():
        def _terminate(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, _terminate)  # so `kill PID` also stops the current worker
    match_autogroup_nice(log)
    todo = [t for t in targets if wanted(t)]
    log(f"ipa profile: {len(targets)} target(s), {len(todo)} to measure, {len(targets) - len(todo)} done; "
        f"out {out_dir}, csv {csv_path}; threads {list(threads)}; reps {options.min_reps}-{options.max_reps}; "
        f"retries {options.retries}; quick {options.quick}; isolate {isolate}")
    for i, t in enumerate(targets, 1):
        path = t.json_path(out_dir)
        if not wanted(t):
            result["skipped"].append(t.key)
            log(f"[{i}/{len(targets)}] {t.key}: done, skipped ({path.name})")
            continue
        log(f"[{i}/{len(targets)}] {t.key}: batches {list(t.batches)} (elapsed {time.perf_counter() - t_run:.0f} s)")
        t0 = time.perf_counter()
        try:
            if isolate:
                _measure_in_subprocess(t, path, options, command)
            else:
                measure_and_write(t, path, options, command, log)
        except Exception:  # one broken target must not stop a two-hour run
            result["failed"].append(t.key)
            log(f"  FAILED {t.key}:\n" + traceback.format_exc())
            gc.collect()
            continue
        assemble(out_dir, csv_path)
        result["measured"].append(t.key)
        log(f"  wrote {path.name} in {time.perf_counter() - t0:.0f} s; {csv_path.name} reassembled "
            f"(elapsed {time.perf_counter() - t_run:.0f} s)")
    if any(out_dir.glob("*.json")):
        _, violations = assemble(out_dir, csv_path, with_violations=True)
        result["violations"] = [str(v) for v in violations]
        if violations:
            log(report(violations, str(csv_path)) + "\nre-measure them: ipa profile --redo-suspect")
    log(f"ipa profile: measured {len(result['measured'])}, skipped {len(result['skipped'])}, "
        f"failed {len(result['failed'])} in {time.perf_counter() - t_run:.0f} s")
    if result["failed"]:
        log("failed: " + ", ".join(result["failed"]))
    return result
