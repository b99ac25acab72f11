"""Real-mode replicas claim CPUs of their own (ipa.serving.cpus): disjoint claims within and
across processes, sharing only when the machine has too few, and a thread pinned to its claim."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from ipa.serving.cpus import claim_cpus, pin_this_thread

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")


def test_replicas_get_disjoint_cpus_and_share_only_when_none_is_free(tmp_path):
    a = claim_cpus(1, tmp_path, cpus=[0, 1, 2])
    b = claim_cpus(2, tmp_path, cpus=[0, 1, 2])
    assert a.cpus == (0,) and b.cpus == (1, 2) and not a.shared and not b.shared
    c = claim_cpus(2, tmp_path, cpus=[0, 1, 2])  # nothing free: it shares, and says so
    assert c.cpus == (0, 1) and c.shared == (0, 1)
    a.release()
    d = claim_cpus(1, tmp_path, cpus=[0, 1, 2])
    assert d.cpus == (0,) and not d.shared  # a released CPU is free again
    for claim in (b, c, d):
        claim.release()


def test_a_claim_held_by_another_process_is_respected_and_dropped_when_it_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from ipa.serving.cpus import claim_cpus; "
        f"c = claim_cpus(1, {str(tmp_path)!r}, cpus=[0, 1]); print(c.cpus[0], flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        held = int(holder.stdout.readline())
        mine = claim_cpus(1, tmp_path, cpus=[0, 1])
        assert mine.cpus == (1 - held,) and not mine.shared
        mine.release()
    finally:
        holder.kill()
        holder.wait()
    again = claim_cpus(2, tmp_path, cpus=[0, 1])  # the kernel dropped the dead process's lock
    assert again.cpus == (0, 1) and not again.shared
    again.release()


def test_a_pinned_thread_runs_on_its_cpus_only():
    cpus = sorted(os.sched_getaffinity(0))
    seen = []

    def work():
        pin_this_thread((cpus[-1],))
        seen.append(os.sched_getaffinity(0))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == [{cpus[-1]}]
    assert os.sched_getaffinity(0) == set(cpus)  # the calling thread is not affected
