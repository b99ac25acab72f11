"""A/B of the simulation alone between two checkouts: python ab_stage_metrics.py ROOT (run it
alternately for the old and the new root; prints the median of 3).
"""
import sys, time, statistics
root = sys.argv[1]
sys.path.insert(0, root)
import ipa
assert ipa.__file__.startswith(root), ipa.__file__
from ipa.pipelines import load_pipeline
from ipa.backends.sim import SimBackend
from ipa.policies import make_policy
from ipa.policies.observation import Observation
from ipa.workloads import load_workload
p = load_pipeline("video")
w = load_workload("bursty").scaled(p.load_scale * 20)
times = w.send_times(0, "poisson")
pol = make_policy("fa2-low", p)
d, _ = pol(Observation(0, 200.0), pol.initial_state())
out = []
for _ in range(3):
    b = SimBackend()
    t0 = time.perf_counter()
    b.start(p, d.configuration, times)
    t = 10.0
    while t < 1200:
        b.clock.sleep_until(t); b.monitor.read(120); t += 10
    b.stop()
    out.append(time.perf_counter() - t0)
print(root, len(times), "requests", "median %.3f s" % statistics.median(out), [round(x, 3) for x in out])
