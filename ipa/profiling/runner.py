"""Measure profile targets and write their measurement files (needs torch).

Definitions (also written into every file under ``method``):

* latency: wall-clock ``time.perf_counter`` around one call on a batch, under
  ``torch.inference_mode()``, with ``torch.set_num_threads(threads)``; a forward pass, or for
  generative models the whole forced-length greedy ``generate`` loop. One warm-up call per
  (batch, threads), then ``reps`` timed calls, all recorded; p50 / p99 are numpy percentiles
  (linear interpolation), std is the population standard deviation.
* peak_memory_mb: the process's resident-set high-water mark (``VmHWM``, reset before the
  warm-up through ``/proc/self/clear_refs``) during the warm-up and timed calls of that
  (batch, threads), minus the process RSS before the model was built: weights + activations
  + allocator overhead of this model, without the Python/torch runtime. Where the reset is
  not available, a 5 ms RSS sampler thread gives the peak instead (``memory_method`` says
  which). ``peak_rss_mb`` and ``baseline_rss_mb`` keep the absolute values.
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import transformers

from ipa.pipelines.profiles import assemble
from ipa.profiling.builders import build_model, count_params, resolve
from ipa.profiling.inputs import generated_tokens, make_call
from ipa.profiling.plan import THREADS, Target
from ipa.profiling.quick import quick_input

SUSPECT_CV = 0.25        # std / mean of a block's repetitions
SUSPECT_SLOWDOWN = 1.1   # 2 threads slower than this x the 1-thread median
OTHER_LIMIT = 0.2        # cores other processes may use beside a block that takes every core
QUIET_MAX_WAIT_S = 10.0  # before each block, wait up to this long for other work to go quiet

METHOD = {
    "latency": "perf_counter around one call (forward, or full forced-length greedy generate) under "
               "torch.inference_mode and torch.set_num_threads(threads); 1 warm-up then reps timed calls "
               "per (batch, threads); p50/p99 = numpy percentile (linear), std = population std",
    "other_work": f"before each (batch, threads) block, wait up to {QUIET_MAX_WAIT_S:g} s until other processes leave "
                  f"room: use < max({OTHER_LIMIT}, nproc - threads - {OTHER_LIMIT}) cores (from /proc/stat minus this "
                  "process); other_cpu_cores = cores used by other processes during the block",
    "retries": f"a (batch, threads) block during which other work used more than that, whose repetitions "
               f"spread (std/mean > {SUSPECT_CV}) or whose 2-thread "
               f"median exceeds {SUSPECT_SLOWDOWN}x the 1-thread median is measured again (up to `retries` "
               "times, the machine is shared); the block with the lowest median is kept, all attempts are "
               "recorded in all_attempts",
    "peak_memory_mb": "VmHWM during warm-up + timed calls of that (batch, threads) (reset via "
                      "/proc/self/clear_refs) minus process RSS before the model was built",
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


def other_limit(threads: int) -> float:
    """Cores other processes may use beside a block of ``threads`` threads before it counts as
    disturbed: what the machine has left over, less a margin (at least ``OTHER_LIMIT``)."""
    return max(OTHER_LIMIT, (os.cpu_count() or 1) - threads - OTHER_LIMIT)


def wait_for_quiet(threads: int, max_wait_s: float = QUIET_MAX_WAIT_S,
                   window_s: float = 0.5) -> tuple[float, float | None]:
    """Wait (up to ``max_wait_s``) until other work leaves room for ``threads`` threads over a
    window. Returns (seconds waited, other cores in the last window)."""
    t0 = time.perf_counter()
    while True:
        with OtherLoad() as other:
            time.sleep(window_s)
        if other.cores is None or other.cores < other_limit(threads) or time.perf_counter() - t0 >= max_wait_s:
            return time.perf_counter() - t0, other.cores


# --- provenance ---------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    return {"node": platform.node(), "cpu_model": cpu_model(), "nproc": os.cpu_count(),
            "platform": platform.platform(), "memory_gb": memory_gb}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- measuring ----------------------------------------------------------------------------

def summarise(latencies: list[float]) -> dict[str, float]:
    a = np.asarray(latencies, dtype=float)
    return {"latency_p50_s": float(np.percentile(a, 50, method="linear")),
            "latency_p99_s": float(np.percentile(a, 99, method="linear")),
            "latency_mean_s": float(a.mean()), "latency_std_s": float(a.std())}


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


def waited_note(m: dict[str, Any]) -> str:
    return f" (waited {m['waited_for_quiet_s']:g} s for quiet)" if m["waited_for_quiet_s"] >= 1 else ""


def _cv(m: dict[str, Any]) -> float:
    return m["latency_std_s"] / m["latency_mean_s"] if m["latency_mean_s"] > 0 else 0.0


def suspect(m: dict[str, Any], one_thread: dict[str, Any] | None) -> bool:
    """A block that looks disturbed by other work on the (shared) cores: widely spread
    repetitions, or 2+ threads clearly slower than 1 thread on the same batch."""
    if _cv(m) > SUSPECT_CV:
        return True
    other = m.get("other_cpu_cores")
    if other is not None and other > other_limit(m["threads"]) + 0.05 / max(m["block_s"], 0.05):  # jiffy resolution
        return True
    return one_thread is not None and m["threads"] > 1 and m["latency_p50_s"] > SUSPECT_SLOWDOWN * one_thread["latency_p50_s"]


def _block(target: Target, model: torch.nn.Module, call: Any, n_threads: int, reps: int, warmup: int,
           baseline: float, max_wait_s: float = QUIET_MAX_WAIT_S) -> dict[str, Any]:
    """Warm-up + ``reps`` timed calls at the current thread count."""
    waited, _ = wait_for_quiet(n_threads, max_wait_s) if max_wait_s > 0 else (0.0, None)
    la0 = loadavg()
    latencies: list[float] = []
    t0 = time.perf_counter()
    with PeakMemory() as peak, OtherLoad() as other:
        for _ in range(warmup):
            out = call.run()
            if call.new_tokens:
                got = generated_tokens(model, out, call.inputs)
                if got != call.new_tokens:
                    raise RuntimeError(f"{target.key}: generate produced {got} new tokens, "
                                       f"forced length is {call.new_tokens}")
            del out
        for _ in range(reps):
            s = time.perf_counter()
            out = call.run()
            latencies.append(time.perf_counter() - s)
            del out
    return {"batch": call.batch, "threads": n_threads, "reps": reps, "warmup": warmup,
            "latencies_s": latencies, **summarise(latencies),
            "peak_memory_mb": round(max(0.0, peak.peak - baseline), 1),
            "peak_rss_mb": round(peak.peak, 1), "memory_method": peak.method,
            "input_shape": call.shape, "loadavg": [la0, loadavg()],
            "block_s": time.perf_counter() - t0,
            "other_cpu_cores": None if other.cores is None else round(other.cores, 3),
            "waited_for_quiet_s": round(waited, 1)}


def measure_target(target: Target, *, reps: int = 5, quick: bool = False, threads: Iterable[int] = THREADS,
                   warmup: int = 1, retries: int = 1, max_wait_s: float | None = None, log: Log = _print,
                   command: str = "") -> dict[str, Any]:
    """Build, load and time one target; the measurement document (not yet written)."""
    started, t_start, load_start = _now(), time.perf_counter(), loadavg()
    if max_wait_s is None:
        max_wait_s = 0.0 if quick else QUIET_MAX_WAIT_S
    resolve(target.variant)
    gc.collect()
    trim_heap()
    baseline = rss_mb()
    stage_input = quick_input(target.input) if quick else target.input
    model, info = _build_and_load(target, quick, log)
    measurements = []
    with torch.inference_mode():
        for batch in target.batches:
            call = make_call(model, stage_input, batch)
            one_thread: dict[str, Any] | None = None
            for n_threads in threads:
                torch.set_num_threads(n_threads)
                t0 = time.perf_counter()
                attempts = [_block(target, model, call, n_threads, reps, warmup, baseline, max_wait_s)]
                while len(attempts) <= retries and suspect(attempts[-1], one_thread):
                    log(f"  batch {batch} threads {n_threads}: suspect interference (p50 "
                        f"{attempts[-1]['latency_p50_s'] * 1000:.1f} ms, cv {_cv(attempts[-1]):.2f}, other work "
                        f"{attempts[-1]['other_cpu_cores']} cores); measuring again")
                    attempts.append(_block(target, model, call, n_threads, reps, warmup, baseline, max_wait_s))
                m = dict(min(attempts, key=lambda a: a["latency_p50_s"]))
                m["attempts"] = len(attempts)
                m["suspect"] = suspect(m, one_thread)
                if len(attempts) > 1:
                    m["all_attempts"] = [{k: a[k] for k in ("latencies_s", "latency_p50_s", "loadavg", "other_cpu_cores")}
                                         for a in attempts]
                if n_threads == 1:
                    one_thread = m
                measurements.append(m)
                log(f"  batch {batch} threads {n_threads}: p50 {m['latency_p50_s'] * 1000:.1f} ms, "
                    f"p99 {m['latency_p99_s'] * 1000:.1f} ms, mean {m['latency_mean_s'] * 1000:.1f} ms, "
                    f"peak +{m['peak_memory_mb']:.0f} MB, other work {m['other_cpu_cores']} cores"
                    f"{waited_note(m)}"
                    f"{f', best of {len(attempts)} attempts' if len(attempts) > 1 else ''}"
                    f"{' STILL SUSPECT' if m['suspect'] else ''}  "
                    f"({time.perf_counter() - t0:.1f} s; key {time.perf_counter() - t_start:.0f} s)")
            del call
    del model
    gc.collect()
    v = target.variant
    return {
        "key": target.key, "variant": v.name, "task": v.task, "input": target.input.id,
        "input_used": stage_input.id, "config_class": v.config_class, "head_class": v.head_class,
        "params_millions": info["params_millions"], "params_millions_catalogue": v.params_millions,
        "build_time_s": info["build_time_s"], "load_time_s": info["load_time_s"],
        "load_time_parts_s": info["load_time_parts_s"], "state_dict_mb": info["state_dict_mb"],
        "generation": ({"new_tokens": stage_input.new_tokens, "forced": True, "num_beams": 1, "do_sample": False}
                       if any(m["input_shape"].get("generate") for m in measurements) else None),
        "batches": list(target.batches), "pipelines": list(target.pipelines),
        "suspect_blocks": sum(bool(m["suspect"]) for m in measurements),
        "measurements": measurements,
        "method": METHOD,
        "provenance": {
            "machine": machine(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__,
            "date": started, "date_end": _now(), "duration_s": round(time.perf_counter() - t_start, 1),
            "loadavg_start": load_start, "loadavg_end": loadavg(),
            "baseline_rss_mb": round(baseline, 1),
            "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
            "retries": retries, "max_wait_s": max_wait_s, "quick": quick, "command": command or " ".join(sys.argv),
            "shared_machine": "other work may run on the same cores: see loadavg and each block's other_cpu_cores",
            "other_cpu_cores_max": max((m["other_cpu_cores"] or 0.0 for m in measurements), default=0.0),
        },
    }


def write_json(doc: dict[str, Any], path: Path) -> None:
    """Atomic: a reader sees the old file or the whole new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


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


def is_suspect_file(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("suspect_blocks"))
    except (OSError, json.JSONDecodeError):
        return True


def _measure_in_subprocess(t: Target, path: Path, *, reps: int, quick: bool, retries: int, max_wait_s: float | None,
                           command: str) -> None:
    """One key in a fresh Python process: clean memory baseline, and a crash (or OOM kill) stays
    confined to that key."""
    argv = [sys.executable, "-m", "ipa.profiling.worker", t.key, "--json", str(path), "--reps", str(reps),
            "--retries", str(retries), "--command", command]
    if max_wait_s is not None:
        argv += ["--max-wait", str(max_wait_s)]
    if quick:
        argv.append("--quick")
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


def run_profile(targets: list[Target], out_dir: Path, csv_path: Path, *, reps: int = 5, force: bool = False,
                quick: bool = False, retries: int = 1, max_wait_s: float | None = None, isolate: bool = False,
                redo_suspect: bool = False,
                log: Log = _print, command: str = "") -> dict[str, list[str]]:
    """Measure every target lacking a file in ``out_dir`` (all with ``force``; also those with a
    suspect block with ``redo_suspect``); reassemble the CSV after each. ``isolate`` measures each
    key in its own process. Returns the keys measured, skipped and failed (a failure does not stop
    the run)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, list[str]] = {"measured": [], "skipped": [], "failed": []}
    t_run = time.perf_counter()

    def wanted(t: Target) -> bool:
        path = t.json_path(out_dir)
        return force or not path.exists() or (redo_suspect and is_suspect_file(path))

    if isolate and threading.current_thread() is threading.main_thread():
        def _terminate(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, _terminate)  # so `kill PID` also stops the current worker
    match_autogroup_nice(log)
    todo = [t for t in targets if wanted(t)]
    log(f"ipa profile: {len(targets)} target(s), {len(todo)} to measure, {len(targets) - len(todo)} done; "
        f"out {out_dir}, csv {csv_path}; reps {reps}; retries {retries}; "
        f"max wait {max_wait_s if max_wait_s is not None else (0 if quick else QUIET_MAX_WAIT_S):g} s; quick {quick}; "
        f"isolate {isolate}; "
        f"threads {list(THREADS)}")
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
                _measure_in_subprocess(t, path, reps=reps, quick=quick, retries=retries, max_wait_s=max_wait_s,
                                       command=command)
            else:
                write_json(measure_target(t, reps=reps, quick=quick, retries=retries, max_wait_s=max_wait_s, log=log,
                                          command=command), path)
        except Exception:  # one broken target must not stop a two-hour run
            result["failed"].append(t.key)
            log(f"  FAILED {t.key}:\n" + traceback.format_exc())
            gc.collect()
            continue
        assemble(out_dir, csv_path)
        result["measured"].append(t.key)
        log(f"  wrote {path.name} in {time.perf_counter() - t0:.0f} s; {csv_path.name} reassembled "
            f"(elapsed {time.perf_counter() - t_run:.0f} s)")
    if targets and not csv_path.exists() and any(out_dir.glob("*.json")):
        assemble(out_dir, csv_path)
    log(f"ipa profile: measured {len(result['measured'])}, skipped {len(result['skipped'])}, "
        f"failed {len(result['failed'])} in {time.perf_counter() - t_run:.0f} s")
    if result["failed"]:
        log("failed: " + ", ".join(result["failed"]))
    return result
