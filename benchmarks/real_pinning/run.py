"""Do replicas that share one stage process interfere? (issue 16: "real mode oversubscribes")

    python benchmarks/real_pinning/run.py [--rounds 3] [--calls 20]

ResNet-18 (random weights, batch 1, 224x224) forward passes, median latency per pass, in three
set-ups, interleaved round by round so that machine noise hits each alike:

* alone:   one replica thread, torch threads 1, pinned to CPU 0 (the profile's set-up);
* pinned:  two replica threads at once, torch threads 1, each pinned to its own CPU (what
           real mode does now: ipa.serving.compute.ReplicaCores);
* shared:  two replica threads at once, torch threads = 2 (the sum of their cores), unpinned
           (what real mode did before: one process-wide intra-op pool).

Linux only (os.sched_setaffinity on a thread pins that thread). Prints one line per round and
the medians; a 2-CPU machine is enough.
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import torch
from transformers import ResNetConfig, ResNetForImageClassification


def model():
    torch.manual_seed(0)
    m = ResNetForImageClassification(ResNetConfig(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
                                                  layer_type="basic")).eval()
    return m


def passes(m, x, calls, cpus, out):
    if cpus is not None:
        os.sched_setaffinity(0, cpus)  # this thread only
    times = []
    with torch.inference_mode():
        m(x)  # warm-up
        for _ in range(calls):
            t = time.perf_counter()
            m(x)
            times.append(time.perf_counter() - t)
    out.append(statistics.median(times))


def setup(kind, models, x, calls):
    out: list[float] = []
    if kind == "alone":
        torch.set_num_threads(1)
        passes(models[0], x, calls, {0}, out)
        return out
    torch.set_num_threads(1 if kind == "pinned" else 2)
    threads = [threading.Thread(target=passes, args=(models[i], x, calls, {i} if kind == "pinned" else None, out))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("needs 2 CPUs")
    models, x = [model(), model()], torch.randn(1, 3, 224, 224)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
    results = {k: [] for k in ("alone", "pinned", "shared")}
    for r in range(args.rounds):
        for kind in results:
            medians = setup(kind, models, x, args.calls)
            results[kind].append(max(medians))
            print(f"round {r}: {kind:6s} median per pass {', '.join(f'{m * 1000:.1f}' for m in medians)} ms")
    base = statistics.median(results["alone"])
    for kind, vals in results.items():
        print(f"{kind:6s}: {statistics.median(vals) * 1000:.1f} ms ({statistics.median(vals) / base:.2f} x alone)")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
