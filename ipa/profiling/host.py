"""What a profile's host is: its CPU, the vector units torch can use, and a speed probe.

Latency on a 2-vCPU cloud VM depends on the physical host behind it: the same image has landed
on an AMD EPYC and on an Intel Xeon with AMX, 2-3x apart on the same model. A profile compared
with another (``benchmarks/profiles/repeat.py``) must say whether the two hosts were alike,
so every measurement file records ``isa`` and ``speed_probe`` beside the CPU model. The probe
is a fixed fp32 workload (a 3x3 convolution and a matrix product, one thread), timed a few
times at the start of each key: the ratio of two files' probes says how much of a latency
difference is the host, independent of the model being profiled.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

# the instruction-set extensions that decide which kernels oneDNN/MKL pick
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
PROBE_REPEATS = 15


def cpu_model() -> str:
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def isa() -> list[str]:
    """The vector extensions of ``ISA_FLAGS`` this CPU reports."""
    for line in _cpuinfo():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in ISA_FLAGS if f in have]
    return []


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def speed_probe() -> dict[str, Any]:
    """Median seconds of two fixed fp32 kernels at one thread (restores the thread count)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        image = torch.randn(1, 128, 56, 56, generator=gen)
        conv = torch.nn.Conv2d(128, 128, 3, padding=1).eval()
        a, b = torch.randn(1024, 1024, generator=gen), torch.randn(1024, 1024, generator=gen)
        with torch.inference_mode():
            conv_s = _median_s(lambda: conv(image))
            matmul_s = _median_s(lambda: a @ b)
    finally:
        torch.set_num_threads(before)
    return {"conv3x3_128ch_56px_s": round(conv_s, 6), "matmul_1024_s": round(matmul_s, 6),
            "threads": 1, "repeats": PROBE_REPEATS, "dtype": "float32"}


def _median_s(call) -> float:
    for _ in range(3):  # the first calls pick and cache the kernel and warm the caches
        call()
    times = []
    for _ in range(PROBE_REPEATS):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def probe_ratio(new: dict[str, Any] | None, old: dict[str, Any] | None) -> float | None:
    """How much slower the ``new`` host ran the probe than the ``old`` one (geometric mean of the
    two kernels' ratios); None when either file predates the probe."""
    keys = ("conv3x3_128ch_56px_s", "matmul_1024_s")
    if not new or not old or any(not new.get(k) or not old.get(k) for k in keys):
        return None
    return float(np.prod([new[k] / old[k] for k in keys]) ** (1 / len(keys)))
