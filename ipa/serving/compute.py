"""What a replica does with a batch: hold itself for a profiled latency, or run the real model.

``emulated``: loading sleeps the variant's profiled load time; a batch of k sleeps a latency
drawn from the lognormal the simulator uses (ipa.pipelines.latency), so live and simulated replicas
share one service-time model. ``real``: loading builds the architecture (random weights,
ipa.profiling.builders) and runs one warm-up batch; a batch runs the forward pass on synthetic
inputs of the stage's profiled shape (ipa.profiling.inputs). In both modes the tensor on the wire
has the model's real input size (ipa.pipelines.wire) and is checked, not fed to the model: its
values are stand-ins (random weights make real ones meaningless), its bytes are real.

A real replica can also time a few batches after its warm-up (``speed_check``) and compare them
with its profile: the profiles were measured on one host, and a run on a slower one admits a
configuration that cannot carry its load (a 2-core EPYC host runs S2T-small 5.5x slower than the
Xeon that profiled it). The verdict is ``speed_check_verdict``; the local backend refuses such a
run before its load starts.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ipa.pipelines.latency import Z_99
from ipa.pipelines.profiles import REPEATABILITY_LIMIT
from ipa.serving.cpus import claim_cpus, pin_this_thread
from ipa.serving.spec import StageSpec, VariantSpec

# Batches a checking replica times after its warm-up. Their median is compared with the profile:
# five makes one slow batch (a neighbour's burst) unable to decide the verdict alone.
SPEED_CHECK_BATCHES = 5


def latency_params(variant: VariantSpec, k: int) -> tuple[float, float]:
    """(mu, sigma) of ln latency of a batch of ``k`` on the variant's profile; beyond the
    precomputed batches the largest one is scaled in proportion."""
    params = variant.latency_params
    mu, sigma = params[min(k, len(params) - 1)]
    if k >= len(params):
        mu += math.log(k / (len(params) - 1))
    return mu, sigma


class EmulatedCompute:
    def __init__(self, spec: StageSpec, variant: VariantSpec, rng: random.Random):
        self.spec, self.variant, self.rng = spec, variant, rng

    async def load(self) -> None:
        await asyncio.sleep(self.variant.load_time_s * self.spec.load_time_scale)

    def sample_latency(self, k: int) -> float:
        mu, sigma = latency_params(self.variant, k)
        return math.exp(self.rng.gauss(mu, sigma)) if sigma > 0 else math.exp(mu)

    async def run(self, k: int) -> float:
        """Hold the replica for a drawn latency; returns the time it was really held (the event
        loop wakes a little late under load: that lateness is the replica's, not the router's)."""
        t = time.perf_counter()
        await asyncio.sleep(self.sample_latency(k))
        return time.perf_counter() - t

    def unload(self) -> None:
        pass


def profiled_latency_s(variant: VariantSpec, k: int) -> tuple[float, float]:
    """The (p50, p99) of a batch of ``k`` in the variant's profile (the lognormal's quantiles)."""
    mu, sigma = latency_params(variant, k)
    return math.exp(mu), math.exp(mu + Z_99 * sigma)


def speed_check_verdict(samples_s: list[float], variant: VariantSpec, k: int) -> dict:
    """Whether batches timed on this host run as the profile says. ``slower`` when their median is
    more than the profiles' same-host repeatability (REPEATABILITY_LIMIT) above the profiled
    median: then the host is not the one profiled, or it is loaded, and capacity planned with the
    profile is not there. ``ratio`` is measured median / profiled median."""
    median = sorted(samples_s)[len(samples_s) // 2]
    p50, p99 = profiled_latency_s(variant, k)
    return {"variant": variant.name, "batch": k, "samples_s": [round(x, 5) for x in samples_s],
            "median_s": round(median, 5), "profiled_p50_s": round(p50, 5), "profiled_p99_s": round(p99, 5),
            "ratio": round(median / p50, 4), "slower": median > p50 * (1.0 + REPEATABILITY_LIMIT)}


class RealCompute:
    """One built model per replica, run on the replica's own thread (torch frees the GIL), pinned
    to CPUs the replica claimed for itself (ipa.serving.cpus). With ``speed_check`` (a batch
    size), loading also times SPEED_CHECK_BATCHES batches of that size after the warm-up and keeps
    their verdict in ``speed``."""

    def __init__(self, spec: StageSpec, variant: VariantSpec, cores: int, speed_check: int | None = None):
        self.spec, self.variant, self.cores, self.speed_check = spec, variant, cores, speed_check
        self.speed: dict | None = None
        self.model: Any = None
        self._calls: dict[int, Any] = {}
        # pinned where a stack hands out the machine's CPUs (the local backend); a Kubernetes pod
        # sees the node's CPUs and gets its share from its CPU limit, so it is not pinned
        self.claim = claim_cpus(cores, spec.cpu_lock_dir) if spec.cpu_lock_dir else None
        pin = {"initializer": pin_this_thread, "initargs": (self.claim.cpus,)} if self.claim else {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replica", **pin)

    def _build(self) -> None:
        import torch

        from ipa.pipelines.catalogue import StageInput, Variant
        from ipa.profiling.builders import build_model

        m = self.variant.model
        v = Variant(name=m["name"], task=m["task"], config_class=m["config_class"], head_class=m["head_class"],
                    family="", config_kwargs=m["config_kwargs"], metric="", metric_value=0.0,
                    higher_is_better=True, params_millions=0.0, source="")
        self._stage_input = StageInput(**self.spec.input)
        if self.spec.quick:
            from ipa.profiling.quick import quick_input
            self._stage_input = quick_input(self._stage_input)
        torch.manual_seed(self.spec.seed)
        self.model = build_model(v, quick=self.spec.quick)

    def _build_and_warm_up(self) -> None:
        self._build()
        # one batch before reporting ready: the first call pays lazy initialisation (allocator,
        # kernels), and a replica that says it is ready should serve at its profiled speed
        self._forward(1)
        if self.speed_check:
            k = self.speed_check
            samples = [self._forward(k) for _ in range(SPEED_CHECK_BATCHES)]
            self.speed = speed_check_verdict(samples, self.variant, k)

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._build_and_warm_up)

    def _forward(self, k: int) -> float:
        import torch

        from ipa.profiling.inputs import make_call

        call = self._calls.get(k)
        if call is None:
            call = self._calls[k] = make_call(self.model, self._stage_input, k, seed=k)
        t = time.perf_counter()
        with torch.inference_mode():
            call.run()
        return time.perf_counter() - t

    async def run(self, k: int) -> float:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._forward, k)

    def unload(self) -> None:
        self.model = None
        self._calls.clear()
        self._executor.shutdown(wait=False)
        if self.claim is not None:
            self.claim.release()


def make_compute(spec: StageSpec, variant: VariantSpec, cores: int, rng: random.Random,
                 speed_check: int | None = None):
    if spec.mode == "real":
        return RealCompute(spec, variant, cores, speed_check)
    return EmulatedCompute(spec, variant, rng)


def set_torch_threads(cores: int) -> None:
    """Real mode: torch's intra-op threads = one replica's cores (capped by the machine); each
    replica's thread is pinned to its own CPUs, so the replicas do not share a pool."""
    import os

    import torch

    torch.set_num_threads(max(1, min(cores, os.cpu_count() or 1)))
