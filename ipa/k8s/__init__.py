"""Kubernetes objects of a run (pure builders), the thin adapter around the official client,
and rollout judgement. The backend that uses them is ipa.backends.kubernetes."""
