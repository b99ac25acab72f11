"""Workloads: the paper's trace patterns (shipped), synthetic patterns, user traces; open-loop send times.

``load_workload(name)`` for a named pattern, ``load_trace(path)`` for a ``second,rps`` CSV;
``Workload.send_times(seed)`` turns per-second counts into intended send times.
"""
from ipa.workloads.patterns import DAMPING, PATTERN_WINDOWS, SYNTHETIC, WORKLOADS, load_workload
from ipa.workloads.trace import load_trace, read_trace_csv
from ipa.workloads.workload import ARRIVALS, Workload

__all__ = ["ARRIVALS", "DAMPING", "PATTERN_WINDOWS", "SYNTHETIC", "WORKLOADS", "Workload",
           "load_trace", "load_workload", "read_trace_csv"]
