"""The adaptation loop (ipa/adapter/loop.py): monitor -> predictor -> policy -> backend, every interval."""
from ipa.adapter.loop import (APPLY_ERROR, DECIDED, DEFAULT_INTERVAL_S, MONITOR_WINDOW_S, NO_DATA, POLICY_ERROR,
                              AdapterLoop, DecisionRecord, first_interval_peak)

__all__ = ["APPLY_ERROR", "DECIDED", "DEFAULT_INTERVAL_S", "MONITOR_WINDOW_S", "NO_DATA", "POLICY_ERROR",
           "AdapterLoop", "DecisionRecord", "first_interval_peak"]
