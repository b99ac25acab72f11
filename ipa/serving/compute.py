"""What a replica does with a batch: hold itself for a profiled latency, or run the real model.

``emulated``: loading sleeps the variant's profiled load time; a batch of k sleeps a latency
drawn from the lognormal the simulator uses (ipa.pipelines.latency), so live and simulated replicas
share one service-time model. ``real``: loading builds the architecture (random weights,
ipa.profiling.builders) and runs one warm-up batch; a batch runs the forward pass on synthetic
inputs of the stage's profiled shape (ipa.profiling.inputs). In both modes the tensor on the wire
has the model's real input size (ipa.pipelines.wire) and is checked, not fed to the model: its
values are stand-ins (random weights make real ones meaningless), its bytes are real.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ipa.serving.cpus import claim_cpus, pin_this_thread
from ipa.serving.spec import StageSpec, VariantSpec


class EmulatedCompute:
    def __init__(self, spec: StageSpec, variant: VariantSpec, rng: random.Random):
        self.spec, self.variant, self.rng = spec, variant, rng

    async def load(self) -> None:
        await asyncio.sleep(self.variant.load_time_s * self.spec.load_time_scale)

    def sample_latency(self, k: int) -> float:
        params = self.variant.latency_params
        mu, sigma = params[min(k, len(params) - 1)]
        if k >= len(params):  # beyond the precomputed batches: scale the largest one
            mu += math.log(k / (len(params) - 1))
        return math.exp(self.rng.gauss(mu, sigma)) if sigma > 0 else math.exp(mu)

    async def run(self, k: int) -> float:
        """Hold the replica for a drawn latency; returns the time it was really held (the event
        loop wakes a little late under load: that lateness is the replica's, not the router's)."""
        t = time.perf_counter()
        await asyncio.sleep(self.sample_latency(k))
        return time.perf_counter() - t

    def unload(self) -> None:
        pass


class RealCompute:
    """One built model per replica, run on the replica's own thread (torch frees the GIL), pinned
    to CPUs the replica claimed for itself (ipa.serving.cpus)."""

    def __init__(self, spec: StageSpec, variant: VariantSpec, cores: int):
        self.spec, self.variant, self.cores = spec, variant, cores
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

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._build_and_warm_up)

    def _forward(self, k: int) -> None:
        import time

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


def make_compute(spec: StageSpec, variant: VariantSpec, cores: int, rng: random.Random):
    if spec.mode == "real":
        return RealCompute(spec, variant, cores)
    return EmulatedCompute(spec, variant, rng)


def set_torch_threads(cores: int) -> None:
    """Real mode: torch's intra-op threads = one replica's cores (capped by the machine); each
    replica's thread is pinned to its own CPUs, so the replicas do not share a pool."""
    import os

    import torch

    torch.set_num_threads(max(1, min(cores, os.cpu_count() or 1)))
