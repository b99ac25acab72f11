"""The discrete-event simulator of a pipeline (engine) and its latency model."""
from ipa.sim.engine import DROPPED, FAILED, LATE, OK, PENDING, STATUS_NAMES, Simulator

__all__ = ["DROPPED", "FAILED", "LATE", "OK", "PENDING", "STATUS_NAMES", "Simulator"]
