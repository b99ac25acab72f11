"""How a stage replica computes, on every backend.

``emulated``: each batch's latency is drawn from the variant's profile and waited out, so a
laptop can serve a pipeline that would need a cluster. ``real``: the variant's architecture
(random weights, ``ipa.profiling.builders``) runs on the replica's CPUs.
"""
MODES = ("emulated", "real")
