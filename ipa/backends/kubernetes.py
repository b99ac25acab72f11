"""The ``kubernetes`` backend: a pipeline as Deployments in a namespace of its own.

start
    create the run's namespace and everything in it (ipa.k8s.render), wait for every rollout
    (woken by a watch on the namespace's Deployments; polling where the API server offers no
    watch), check the router and Prometheus answer on their NodePorts, then start the open-loop load from
    outside the cluster. Any failure deletes the namespace before the error is raised.
apply
    replicas through the scale subresource, a variant switch as a rolling update of the stage's
    Deployment (new pods serve only once ready, old ones go after), batch sizes through the
    router's admin endpoint, told of every change (the partial-batch timeouts follow the
    replica count, and the router then resolves the stages' pods again at once). API calls are
    made at once; a watcher thread, woken by the same watch, records when the rollouts finished
    (``AppliedChange.completed_at_s``) or why they did not, and the cores the pods that exist
    request (a rolling update's surge included).
stop
    finish the load, keep the pods' logs, delete the namespace (always, also after errors).

The clock, the load, the monitor, the router's ledger and the order of start, stop and abort
are every live backend's (``ipa.backends.live``).
"""
from __future__ import annotations

import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from typing import Callable

from ipa.backends.base import AppliedChange
from ipa.backends.live import LiveBackend, LoadFactory, MonitorFactory, initial_records
from ipa.configuration import Configuration, StageConfig
from ipa.errors import ApplyFailed, ConfigError, IpaError
from ipa.k8s.client import ClusterBusy, ClusterError, ClusterUnreachable, KubernetesApi, RolloutTimeout
from ipa.k8s.manifests import SERVER_APP, ClusterOptions, pod_cores, stage_object_name, stage_patch, stage_state
from ipa.k8s.render import run_objects, stage_memory
from ipa.k8s.rollout import pod_problem, rollout_done
from ipa.pipelines.pipeline import Pipeline
from ipa.serving.modes import MODES

log = logging.getLogger(__name__)


# --- what changes between two configurations -------------------------------------------------

@dataclass(frozen=True)
class Change:
    stage: str
    kind: str  # "switch" (rolling update: variant, and with it cores), "scale", "batch"
    detail: str


def plan_changes(current: Configuration, target: Configuration) -> list[Change]:
    """The API actions that move ``current`` to ``target``, stage by stage.

    A variant switch patches the Deployment (which carries the new replica count too), so it
    never comes with a separate scale; a batch change is the router's business alone."""
    changes = []
    for stage, new in target.stages.items():
        old = current.stages[stage]
        if new.variant != old.variant or new.cores != old.cores:
            changes.append(Change(stage, "switch", f"{old.variant}x{old.replicas} -> {new.variant}x{new.replicas}"))
        elif new.replicas != old.replicas:
            changes.append(Change(stage, "scale", f"{old.replicas} -> {new.replicas} replicas"))
        if new.batch != old.batch:
            changes.append(Change(stage, "batch", f"batch {old.batch} -> {new.batch}"))
    return changes


def read_router_batches(router_url: str, timeout_s: float = 5.0) -> dict[str, int]:
    """The batch size each stage has at the router (its /admin/status), read back after a failed
    configuration call whose answer may have been lost."""
    from ipa.serving.stack import http_json  # noqa: PLC0415
    try:
        doc = http_json(router_url.rstrip("/") + "/admin/status", timeout_s=timeout_s)
        return {st["stage"]: int(st["batch"]) for st in doc["stages"]}
    except (IpaError, ValueError, KeyError, TypeError) as e:
        raise ClusterUnreachable(f"the router's status at {router_url} could not be read: {e}") from None


# --- the seams to the live stack (router admin, load generator, monitor) ----------------------

def post_router_configuration(router_url: str, pipeline: Pipeline, configuration: Configuration,
                              timeout_s: float = 5.0) -> None:
    """The router's admin endpoint (ipa.serving.router): it applies the batch sizes at its next
    dispatch. On Kubernetes the router does not forward configurations to the pods (their
    Deployment sets them; RouterSpec.configure_stages is off), so the whole configuration is sent."""
    from ipa.serving.stack import batch_timeouts  # noqa: PLC0415
    body = json.dumps({"stages": configuration.to_dict(),
                       "batch_timeout_s": batch_timeouts(pipeline, configuration)}).encode()
    request = urllib.request.Request(router_url.rstrip("/") + "/admin/configuration", data=body,
                                     method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as e:  # the router answered: a 4xx is a bad configuration, a 5xx a blink
        error = ClusterBusy if e.code >= 500 else ClusterError
        raise error(f"the router at {router_url} did not take the configuration: {e}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ClusterUnreachable(f"the router at {router_url} did not take the configuration: {e}") from None


def wait_http_ok(url: str, timeout_s: float, what: str, poll_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        if time.monotonic() >= deadline:
            raise ClusterError(f"{what} does not answer at {url} after {timeout_s:.0f} s ({last}). On kind the "
                               f"NodePort needs an extraPortMappings entry (cluster/kind.yaml); elsewhere pass the "
                               f"node's address with --node-host (e.g. `minikube ip`)")
        time.sleep(poll_s)


# --- the backend ------------------------------------------------------------------------------

@dataclass
class KubernetesSettings:
    image: str = ClusterOptions.image
    mode: str = "emulated"
    node_host: str = "127.0.0.1"  # where the NodePorts answer: kind maps them to localhost
    router_node_port: int = ClusterOptions.router_node_port
    prometheus_node_port: int = ClusterOptions.prometheus_node_port
    # Set these where the NodePorts are not reachable (e.g. behind `kubectl port-forward`).
    router_url: str | None = None
    prometheus_url: str | None = None
    namespace_prefix: str = "ipa-run"
    rollout_timeout_s: float = 300.0
    # how long a rollout problem that can clear by itself (unschedulable, image pull back-off) may
    # last before the rollout is given up (within the rollout deadline)
    problem_grace_s: float = 60.0
    endpoint_timeout_s: float = 60.0
    delete_timeout_s: float = 120.0
    poll_s: float = 0.5
    # the longest one wait on a watch of the Deployments lasts before everything is read again
    # (a pod's problem shows on the pod, which is not watched), in the start's rollout wait and
    # between the run's looks; where the API server offers no watch, the wait is one poll_s
    watch_s: float = 2.0
    # pauses between the tries of one apply call on a transient error (unreachable, 409, 429, 5xx);
    # the IPA artifact tried 3 times (docs/facts.md, fact 28)
    retry_delays_s: tuple[float, ...] = (0.5, 1.0, 2.0)
    seed: int = 0
    kubeconfig: str | None = None
    context: str | None = None
    # where the load generator's log and the pods' logs go (the run folder's work folder)
    work_dir: str | None = None

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"kubernetes backend: mode must be one of {', '.join(MODES)}, not {self.mode!r}")


class KubernetesBackend(LiveBackend):
    name = "kubernetes"
    observing = "rollout check"

    def __init__(self, settings: KubernetesSettings | None = None, api: KubernetesApi | None = None,
                 load_factory: LoadFactory | None = None, monitor_factory: MonitorFactory | None = None,
                 router_admin: Callable[[str, Pipeline, Configuration], None] = post_router_configuration,
                 run_id: str | None = None,
                 router_batches: Callable[[str], dict[str, int]] = read_router_batches):
        self.settings = settings or KubernetesSettings()
        super().__init__(self.settings.work_dir, load_factory, monitor_factory)
        self.poll_s = self.settings.poll_s
        self._api = api
        self._router_admin = router_admin
        self._router_batches = router_batches
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
        self.applied: list[AppliedChange] = []
        self._pending: list[tuple[int, list[str]]] = []  # (index in applied, deployments) awaiting rollout
        self._namespace_created = False
        self._watch = True  # until the API server shows it offers no watch
        self._observed_version: str | None = None  # the Deployments' resourceVersion at the last look
        self.current: Configuration | None = None   # what the cluster and the router hold, as far as known
        self.options: ClusterOptions | None = None
        self._router_configuration: Configuration | None = None  # the last one the router took
        self._unknown: set[str] = set()  # stages whose Deployment could not be read back after a failure
        # (run time, cores) from then on: the stage pods that exist (a rolling update's surge, pods
        # still loading or terminating included), never below what the configuration asks for
        self._cores: list[tuple[float, float]] = []
        self._pod_cores = 0.0

    # --- names ----------------------------------------------------------------------------
    @property
    def api(self) -> KubernetesApi:
        if self._api is None:
            self._api = KubernetesApi.from_kubeconfig(self.settings.kubeconfig, self.settings.context)
        return self._api

    @property
    def namespace(self) -> str:
        return self.options.namespace if self.options else ""

    @property
    def router_url(self) -> str:
        if self.settings.router_url:
            return self.settings.router_url.rstrip("/")
        return f"http://{self.settings.node_host}:{self.settings.router_node_port}"

    @property
    def prometheus_url(self) -> str:
        if self.settings.prometheus_url:
            return self.settings.prometheus_url.rstrip("/")
        return f"http://{self.settings.node_host}:{self.settings.prometheus_node_port}"

    def _cluster_options(self, pipeline: Pipeline) -> ClusterOptions:
        s = self.settings
        name = f"{s.namespace_prefix}-{pipeline.name}-{self.run_id}".lower().replace("_", "-")[:63].rstrip("-")
        return ClusterOptions(namespace=name, image=s.image, mode=s.mode, run_id=self.run_id, seed=s.seed,
                              router_node_port=s.router_node_port, prometheus_node_port=s.prometheus_node_port)

    # --- start ------------------------------------------------------------------------------
    def deploy(self, pipeline: Pipeline, initial: Configuration) -> None:
        """Create the run's namespace and objects and wait until every Deployment is ready;
        on any failure the namespace is deleted before the error propagates."""
        pipeline.check(initial)
        self.pipeline, self.current, self._router_configuration = pipeline, initial, initial
        self.options = self._cluster_options(pipeline)
        try:
            version = self.api.server_version()
            log.info("cluster %s (Kubernetes %s): creating namespace %s", self.api.where, version, self.namespace)
            objects = run_objects(pipeline, initial, self.options)
            self.api.create(objects[0])
            self._namespace_created = True
            for obj in objects[1:]:
                self.api.create(obj)
            deployments = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"]
            self.wait_for_rollouts(deployments, self.settings.rollout_timeout_s)
            # the pipeline's readiness through the router (every stage serving), not the router's own
            wait_http_ok(f"{self.router_url}/v2/models/{pipeline.name}/ready", self.settings.endpoint_timeout_s,
                         "the router")
            wait_http_ok(self.prometheus_url + "/-/ready", self.settings.endpoint_timeout_s, "Prometheus")
        except BaseException as e:
            self._tear_down_after(e)
            raise

    def bring_up(self, pipeline: Pipeline, initial: Configuration) -> None:
        self.deploy(pipeline, initial)

    def begin(self, initial: Configuration) -> None:
        # serving variants are derived from the applied changes (RunOutput): not kept here
        self.applied, self._cores, _ = initial_records(initial)

    # --- apply ------------------------------------------------------------------------------
    def apply(self, configuration: Configuration) -> AppliedChange:
        if self.pipeline is None or self.current is None or self.options is None:
            raise ConfigError("apply() before start(): the backend has no running pipeline")
        self.pipeline.check(configuration)
        requested = self.clock.now()
        changes = plan_changes(self.current, configuration)
        # a stage whose state is unknown since a failed call gets its whole Deployment sent again
        changes = [c for c in changes if c.kind == "batch" or c.stage not in self._unknown] + [
            Change(s, "switch", "re-sent whole: its state was unknown after a failed call") for s in sorted(self._unknown)]
        touched, failures = [], []
        for c in changes:
            if c.kind == "batch":
                continue
            try:
                self._retrying(f"{c.kind} of stage {c.stage}", lambda c=c: self._stage_call(c, configuration[c.stage]))
                self._set_stage(c.stage, configuration[c.stage])
                self._unknown.discard(c.stage)
            except ClusterError as e:
                failures.append(f"stage {c.stage}: {e}")
                self._read_back(c.stage)
            if self._stage_matches(c.stage, configuration[c.stage]):  # a lost answer may still have applied
                touched.append(stage_object_name(c.stage))
        # batch sizes, and the partial-batch timeouts that follow the replica count, go to the
        # router (which also looks up the stages' pods again at once); it gets what the stages
        # hold now, and is sent it again at the next apply until it has taken it
        for_router = Configuration({s: replace(sc, batch=configuration[s].batch) for s, sc in self.current.stages.items()})
        if for_router != self._router_configuration:
            try:
                self._retrying("the router's configuration",
                               lambda: self._router_admin(self.router_url, self.pipeline, for_router))
                self._router_configuration = for_router
            except ClusterError as e:
                failures.append(f"router: {e}")
                self._read_router_back(for_router)
        self.current = Configuration({s: replace(sc, batch=self._router_configuration[s].batch)
                                      for s, sc in self.current.stages.items()})
        note = "; ".join(f"{c.stage}: {c.detail}" for c in changes) or "no change"
        if failures:
            note += "; failed: " + "; ".join(failures)
        with self._lock:
            # a newer change to the same stages ends the wait for an older one
            for index, names in self._pending:
                if set(names) & set(touched):
                    self.applied[index] = replace(self.applied[index],
                                                  note=self.applied[index].note + f"; superseded at {requested:.1f} s")
            self._pending = [(i, n) for i, n in self._pending if not set(n) & set(touched)]
            done_now = requested if not touched else None
            self.applied.append(AppliedChange(requested, self.current, done_now, note))
            if touched:
                self._pending.append((len(self.applied) - 1, touched))
            change = self.applied[-1]
        self._record_cores(requested)  # from the request on, as the configuration: the watcher sees the pods later
        if failures:
            raise ApplyFailed(f"the cluster did not take the whole configuration: {'; '.join(failures)}",
                              reached=self.current)
        return change

    def _stage_call(self, change: Change, cfg: StageConfig) -> None:
        name = stage_object_name(change.stage)
        if change.kind == "switch":
            memory = stage_memory(self.pipeline, change.stage, cfg.variant, self.options.mode, self.options)
            self.api.patch_deployment(self.namespace, name,
                                      stage_patch(self.pipeline.name, change.stage, cfg, self.options, memory))
        else:
            self.api.scale(self.namespace, name, cfg.replicas)

    def _retrying(self, what: str, call: Callable[[], object]) -> None:
        """``call()``, tried again after each pause of ``retry_delays_s`` while it fails transiently;
        every failed try is written to the run folder's status errors."""
        for delay in (*self.settings.retry_delays_s, None):
            try:
                call()
                return
            except ClusterError as e:
                retry = e.transient and delay is not None
                self.note(f"apply, {what}: {e}" + (f"; trying again in {delay:g} s" if retry else ""))
                if not retry:
                    raise
                log.warning("apply, %s: %s; trying again in %g s", what, e, delay)
                time.sleep(delay)

    def _set_stage(self, stage: str, cfg: StageConfig) -> None:
        """The stage's Deployment holds ``cfg``'s variant, replicas and cores (its batch is the router's)."""
        self.current = Configuration({s: replace(cfg, batch=sc.batch) if s == stage else sc
                                      for s, sc in self.current.stages.items()})

    def _stage_matches(self, stage: str, cfg: StageConfig) -> bool:
        have = self.current[stage]
        return stage not in self._unknown and (have.variant, have.replicas, have.cores) == (cfg.variant, cfg.replicas, cfg.cores)

    def _read_router_back(self, sent: Configuration) -> None:
        """After a failed configuration call, the batch sizes the router holds (it may have taken
        the configuration before its answer was lost); unread, the next apply sends it again."""
        try:
            batches = self._router_batches(self.router_url)
            known = self._router_configuration
            self._router_configuration = Configuration({
                s: replace(sent[s] if batches.get(s) == sent[s].batch else known[s], batch=batches.get(s, known[s].batch))
                for s in known.stages})
        except ClusterError as e:
            self.note(f"apply, reading the router back: {e}")

    def _read_back(self, stage: str) -> None:
        """After a failed call, what the stage's Deployment holds (the call may have applied before
        its answer was lost); a stage that cannot be read is sent whole at the next apply."""
        try:
            variant, replicas, cores = stage_state(self.api.read_deployment(self.namespace, stage_object_name(stage)))
        except (ClusterError, ValueError) as e:
            self._unknown.add(stage)
            self.note(f"apply, reading stage {stage} back: {e}")
            return
        self._set_stage(stage, StageConfig(variant, self.current[stage].batch, replicas, cores))

    def _record_cores(self, at_s: float | None = None) -> None:
        with self._lock:
            cores = max(self._pod_cores, float(self.current.total_cores))
            if not self._cores or cores != self._cores[-1][1]:
                t = self.clock.now() if at_s is None else at_s
                self._cores.append((max(t, self._cores[-1][0]) if self._cores else t, cores))

    def poll_cores(self) -> None:
        """The cores the run's stage pods request now (what the cluster reserves, or will once they
        are scheduled)."""
        pods = self.api.list_pods(self.namespace, f"app.kubernetes.io/name={SERVER_APP}")
        self._pod_cores = sum(pod_cores(p) for p in pods)
        self._record_cores()

    def observe(self) -> None:
        """The cores the stage pods request, and which pending changes have rolled out."""
        try:
            self._observed_version = self._deployments_version()  # before the reads: a later change wakes next_look
            self.poll_cores()
            self.poll_rollouts()
        except ClusterError as e:
            log.warning("rollout watch: %s", e)
            raise

    def next_look(self) -> None:
        """Until a Deployment changes after the last look (a surge pod created, a replica ready, an
        old one gone: each moves the Deployment's status), at most ``watch_s``; ``poll_s`` where the
        API server offers no watch."""
        version, self._observed_version = self._observed_version, None
        if version is None:
            self._stop_poll.wait(self.poll_s)
        else:
            self._wait_for_change(version, self.settings.watch_s)

    def poll_rollouts(self) -> None:
        """Close every pending change whose Deployments have finished rolling out."""
        with self._lock:
            pending = list(self._pending)
        for index, names in pending:
            states = [rollout_done(self.api.read_deployment(self.namespace, n)) for n in names]
            problem = None if all(d for d, _ in states) else self._diagnose(names)
            with self._lock:
                if (index, names) not in self._pending:
                    continue
                change = self.applied[index]
                if all(done for done, _ in states):
                    self.applied[index] = replace(change, completed_at_s=self.clock.now())
                    self._pending.remove((index, names))
                elif problem is not None and str(problem) not in change.note:
                    # the old pods keep serving (maxUnavailable 0); say why the change is not taking
                    log.warning("change requested at %.1f s is stuck: %s", change.requested_at_s, problem)
                    self.applied[index] = replace(change, note=f"{change.note}; stuck: {problem}")

    def _diagnose(self, deployments: list[str]) -> ClusterError | None:
        for name in deployments:
            # instance labels are unique in the namespace: stage-*, router, prometheus
            for pod in self.api.list_pods(self.namespace, f"app.kubernetes.io/instance={name}"):
                problem = pod_problem(pod)
                if problem is not None:
                    return problem
        return None

    def wait_for_rollouts(self, deployments: list[str], timeout_s: float) -> None:
        """Return when every Deployment has rolled out. A diagnosed cause is raised at once when
        waiting cannot cure it (no such image, a crash loop), after ``problem_grace_s`` when it can
        (no capacity yet, a pull back-off), else the rollout times out."""
        deadline = time.monotonic() + timeout_s
        first_seen: dict[str, float] = {}  # problem -> when it was first seen
        while True:
            version = self._deployments_version()  # before the reads: a change after them is an event
            waiting = {}
            for name in deployments:
                done, why = rollout_done(self.api.read_deployment(self.namespace, name))
                if not done:
                    waiting[name] = why
            if not waiting:
                return
            problem = self._diagnose(list(waiting))
            if problem is not None:
                seen = first_seen.setdefault(f"{type(problem).__name__}: {problem}", time.monotonic())
                if not getattr(problem, "may_clear", False) or time.monotonic() - seen >= self.settings.problem_grace_s:
                    raise problem
                log.warning("rollout: %s (waiting up to %.0f s for it to clear)", problem, self.settings.problem_grace_s)
            if time.monotonic() >= deadline:
                detail = "; ".join(f"{n}: {w}" for n, w in waiting.items())
                raise RolloutTimeout(f"rollout not done after {timeout_s:.0f} s in namespace {self.namespace}: "
                                     f"{detail}. Inspect with `kubectl get pods -n {self.namespace}`")
            self._wait_for_change(version, min(self.settings.watch_s, max(0.0, deadline - time.monotonic())))

    def _deployments_version(self) -> str | None:
        if not self._watch:
            return None
        try:
            return self.api.deployments_version(self.namespace)
        except ClusterUnreachable:
            raise
        except ClusterError as e:  # no list to watch from: the reads that follow still poll
            log.info("cannot list Deployments to watch them (%s): polling every %.2f s", e, self.settings.poll_s)
            self._watch = False
            return None

    def _wait_for_change(self, version: str | None, timeout_s: float) -> None:
        """Until a Deployment changes (a watch) or ``timeout_s`` passes; one ``poll_s`` where the
        API server offers no watch (found out once, then not asked again)."""
        if version is not None and timeout_s > 0:
            if self.api.wait_for_deployment_change(self.namespace, version, timeout_s) is not None:
                return
            log.info("the API server offers no watch on Deployments here: polling every %.2f s", self.settings.poll_s)
            self._watch = False
        time.sleep(self.settings.poll_s)

    # --- stop ---------------------------------------------------------------------------
    def router_restarts(self) -> int:
        """From the router pods' container statuses."""
        try:
            pods = self.api.list_pods(self.namespace, "app.kubernetes.io/instance=router")
        except ClusterError as e:
            self.note(f"router restarts not read: {e}")
            return 0
        return sum(int(c.get("restartCount") or 0) for pod in pods
                   for c in (pod.get("status") or {}).get("containerStatuses") or [])

    def records(self) -> dict:
        return {"applied": list(self.applied), "provisioned_cores": list(self._cores)}

    def logs(self) -> dict[str, str]:
        """Every pod's log, into work_dir/logs/ (the namespace and its logs go at teardown)."""
        if self.work_dir is None or not self._namespace_created:
            return {}
        folder = self.work_dir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        out = {}
        try:
            for pod in self.api.list_pods(self.namespace):
                name = pod["metadata"]["name"]
                path = folder / f"{name}.log"
                path.write_text(self.api.pod_log(self.namespace, name))
                out[f"logs/{name}.log"] = str(path)
        except ClusterError as e:
            log.warning("could not save pod logs: %s", e)
        return out

    def tear_down(self) -> None:
        """Delete the run's namespace (idempotent); everything the run created goes with it."""
        if not self._namespace_created:
            return
        try:
            self.api.delete_namespace(self.namespace)
            if not self.api.wait_namespace_gone(self.namespace, self.settings.delete_timeout_s, self.settings.poll_s):
                log.warning("namespace %s is still terminating after %.0f s; Kubernetes finishes it in the "
                            "background", self.namespace, self.settings.delete_timeout_s)
        except ClusterError as e:
            raise ClusterError(f"could not delete namespace {self.namespace}: {e}. Delete it by hand: "
                               f"kubectl delete namespace {self.namespace}") from None
        self._namespace_created = False


SETTINGS = KubernetesSettings


def make_backend(settings: KubernetesSettings) -> KubernetesBackend:
    """The options `ipa run --backend kubernetes --backend-option KEY=VALUE` takes are the
    settings' fields (cluster/README.md)."""
    return KubernetesBackend(settings)
