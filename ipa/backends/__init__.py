"""Backends run a pipeline (sim, local, kubernetes) behind one small interface (base.py)."""
