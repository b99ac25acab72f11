"""Each real-mode replica gets CPUs of its own: claims on per-CPU lock files, shared by every stage
process of a stack, and a replica thread pinned to its claim.

Why: torch's intra-op pool is process-wide, and two replicas of a stage sharing one pool sized to
the sum of their cores run at half speed each on a 2-CPU machine (benchmarks/real_pinning: two
ResNet-18 replicas 2.13x slower per pass than one alone; pinned, 1.03x). So a replica's thread
is pinned to its claimed CPUs (Linux: ``sched_setaffinity`` on a thread pins that thread, and the
OpenMP team it starts inherits the mask), and torch runs as many threads as one replica's cores.

The claims are ``flock`` locks on ``<lock_dir>/cpu<N>``: one folder per stack, so the stages of a
local run never pin to the same CPU, and the kernel drops a dead process's locks. Only the local
stack hands out a folder: a Kubernetes pod sees the whole node's CPUs and gets its share from its
CPU limit, so pinning there would put every pod on the same first CPUs. When fewer
CPUs are free than a replica needs, it shares some (``CpuClaim.shared``) and says so: the run
then measures an oversubscribed machine, which the caller must report, not hide.
"""
from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CpuClaim:
    cpus: tuple[int, ...]
    shared: tuple[int, ...] = ()        # CPUs in ``cpus`` another replica holds too
    _fds: list[int] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)  # closing drops the flock
        self._fds.clear()


def allowed_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def claim_cpus(n: int, lock_dir: str | Path, cpus: list[int] | None = None) -> CpuClaim:
    """``n`` CPUs for one replica: free ones first (locked until ``release``), then, if too few
    are free, shared ones (the lowest-numbered, unlocked)."""
    if n < 1:
        raise ValueError(f"a replica needs at least one CPU, got {n}")
    folder = Path(lock_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cpus = cpus if cpus is not None else allowed_cpus()
    got: list[int] = []
    fds: list[int] = []
    for cpu in cpus:
        if len(got) == n:
            break
        fd = os.open(folder / f"cpu{cpu}", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        got.append(cpu)
        fds.append(fd)
    shared = tuple(c for c in cpus if c not in got)[: n - len(got)]
    return CpuClaim(tuple(got) + shared, shared, fds)


def pin_this_thread(cpus: tuple[int, ...]) -> None:
    os.sched_setaffinity(0, set(cpus))
