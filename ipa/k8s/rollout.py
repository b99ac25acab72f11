"""Is a Deployment's rollout done, and if it is stuck, why: pure functions of API objects (dicts)."""
from __future__ import annotations

from ipa.k8s.client import (CRASH_REASONS, IMAGE_REASONS, PULL_RETRY_REASONS, ClusterError, ContainerFailing,
                            ImageMissing, InsufficientCapacity)


def rollout_done(deployment: dict) -> tuple[bool, str]:
    """(done, what is still missing) as `kubectl rollout status` judges it: the controller has seen
    the latest spec, every replica runs the new template and is available, and no old one is left."""
    meta, spec, status = deployment.get("metadata", {}), deployment.get("spec", {}), deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    generation = int(meta.get("generation", 0))
    observed = int(status.get("observedGeneration", 0))
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    total = int(status.get("replicas", 0))
    if observed < generation:
        return False, f"controller has not seen generation {generation} yet (observed {observed})"
    if updated != want:
        return False, f"{updated} of {want} replicas updated"
    if total != want:
        return False, f"{total - updated} old replicas still terminating"
    if available != want:
        return False, f"{available} of {want} updated replicas available"
    return True, ""


def pod_problem(pod: dict) -> ClusterError | None:
    """A condition of ``pod`` that stops its rollout, as the error naming it, else None. The error's
    ``may_clear`` says whether it can go away by itself (a node still tainted not-ready, capacity
    an old pod frees, a pull a registry rate-limited): such a problem is fatal only once it lasts."""
    error = _problem(pod)
    if error is not None:
        error.may_clear = isinstance(error, InsufficientCapacity) or (
            isinstance(error, ImageMissing) and any(r in str(error) for r in PULL_RETRY_REASONS))
    return error


def _problem(pod: dict) -> ClusterError | None:
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            return InsufficientCapacity(
                f"pod {name} cannot be scheduled: {cond.get('message', '')}. The cluster lacks the CPU or "
                f"memory the configuration requests (requests = limits = each variant's base cores); "
                f"add nodes, give the kind/minikube node more CPUs, or lower the load / scaling_cap")
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in IMAGE_REASONS:
            return ImageMissing(
                f"pod {name} cannot get image {cs.get('image', '?')}: {reason} ({waiting.get('message', '')}). "
                f"On kind: cluster/up.sh builds it and runs `kind load docker-image`; on another cluster push "
                f"it to a registry the nodes can pull from and pass its name with --image")
        if reason in CRASH_REASONS:
            last = (cs.get("lastState") or {}).get("terminated") or {}
            detail = last.get("message") or last.get("reason") or waiting.get("message", "")
            return ContainerFailing(f"container {cs.get('name')} of pod {name} keeps failing ({reason}): {detail}; "
                                    f"see `kubectl logs -n {pod.get('metadata', {}).get('namespace', '?')} {name} --previous`")
    return None
