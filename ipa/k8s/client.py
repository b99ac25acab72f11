"""The one place that calls the official ``kubernetes`` client, and the errors a run can hit.

Bodies go out as plain dicts and responses come back as parsed JSON (``_preload_content=False``),
so nothing here depends on the client's generated model classes, which change between majors.
Every API failure becomes a ``ClusterError`` subclass whose message names the cause.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Callable

from ipa.errors import IpaError

FIELD_MANAGER = "ipa-bench"
# Container waiting reasons that mean the image will not arrive by waiting.
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
# Of those, the ones a registry blip or rate limit produces and a later pull can cure.
PULL_RETRY_REASONS = ("ErrImagePull", "ImagePullBackOff")
CRASH_REASONS = ("CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "RunContainerError")


class ClusterError(IpaError):
    """Something about the cluster stops the run; the message says what and what to do."""

    transient = False  # whether trying the same call again may succeed


class ClusterUnreachable(ClusterError):
    transient = True


class ClusterBusy(ClusterError):
    """The API server answered 409 (a write conflict), 429 (throttled) or 5xx: worth a retry."""

    transient = True


TRANSIENT_STATUSES = (409, 429, 500, 502, 503, 504)


class ClusterForbidden(ClusterError):
    pass


class ImageMissing(ClusterError):
    pass


class InsufficientCapacity(ClusterError):
    pass


class RolloutTimeout(ClusterError):
    pass


class ContainerFailing(ClusterError):
    pass


def _import_client():
    try:
        import kubernetes  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise ClusterError("the kubernetes backend needs the official client: "
                           "pip install 'ipa-bench[kubernetes]'") from None
    return kubernetes


WATCH_EVENTS = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")


class KubernetesApi:
    """The few API calls a run makes: create objects, scale, patch, read status, delete."""

    def __init__(self, api_client, where: str = "the cluster"):
        k = _import_client()
        self._k = k
        import urllib3  # noqa: PLC0415 (the client's transport)
        self._urllib3 = urllib3
        self.api_client = api_client
        self.where = where
        self.core = k.client.CoreV1Api(api_client)
        self.apps = k.client.AppsV1Api(api_client)
        self.rbac = k.client.RbacAuthorizationV1Api(api_client)
        self.version_api = k.client.VersionApi(api_client)

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None) -> "KubernetesApi":
        """Load KUBECONFIG (or ~/.kube/config), or the in-cluster service account as a fallback."""
        k = _import_client()
        configuration = k.client.Configuration()
        try:
            k.config.load_kube_config(config_file=kubeconfig, context=context,
                                      client_configuration=configuration)
        except Exception as kube_error:  # noqa: BLE001 (the client raises several unrelated types)
            try:
                k.config.load_incluster_config(client_configuration=configuration)
            except Exception:  # noqa: BLE001
                raise ClusterUnreachable(
                    f"no Kubernetes configuration: {kube_error}. Point KUBECONFIG at a cluster "
                    f"(cluster/up.sh creates a kind cluster and prints how)") from None
        return cls(k.client.ApiClient(configuration), where=configuration.host)

    # --- calling ----------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable, *args, allow: tuple[int, ...] = (), **kwargs) -> Any:
        """Call ``fn`` and return its parsed JSON body (None for an allowed error status)."""
        k = self._k
        try:
            response = fn(*args, _preload_content=False, **kwargs)
        except k.client.exceptions.ApiException as e:
            if e.status in allow:
                return None
            raise self._error(what, e) from None
        except (OSError, self._urllib3.exceptions.HTTPError) as e:  # refused, DNS, TLS, timeouts
            raise ClusterUnreachable(f"cannot reach the Kubernetes API at {self.where} ({what}): {e}. "
                                     f"Is the cluster running? (`kubectl cluster-info`)") from None
        data = response.data
        return json.loads(data) if data else {}

    def _error(self, what: str, e) -> ClusterError:
        try:
            message = json.loads(e.body).get("message", "") if e.body else ""
        except (ValueError, AttributeError):
            message = str(e.body or "")
        message = message or e.reason or ""
        if e.status == 403:
            return ClusterForbidden(f"the cluster forbids {what}: {message}. The credentials in use need "
                                    f"rights to create namespaces and, inside them, Deployments, Services, "
                                    f"ConfigMaps, ServiceAccounts, Roles and RoleBindings (see cluster/README.md)")
        if e.status == 401:
            return ClusterForbidden(f"the cluster rejected the credentials ({what}): {message}")
        error = ClusterBusy if e.status in TRANSIENT_STATUSES else ClusterError
        return error(f"{what} failed with HTTP {e.status}: {message}")

    # --- the calls --------------------------------------------------------------------------
    def server_version(self, timeout_s: float = 10.0) -> str:
        body = self._call("reading the server version", self.version_api.get_code, _request_timeout=timeout_s)
        return str(body.get("gitVersion", "?"))

    def create(self, obj: dict) -> dict:
        kind, meta = obj["kind"], obj["metadata"]
        ns = meta.get("namespace")
        what = f"creating {kind} {meta['name']}" + (f" in namespace {ns}" if ns else "")
        fm = {"field_manager": FIELD_MANAGER}
        if kind == "Namespace":
            return self._call(what, self.core.create_namespace, obj, **fm)
        creators = {
            "ServiceAccount": self.core.create_namespaced_service_account,
            "ConfigMap": self.core.create_namespaced_config_map,
            "Service": self.core.create_namespaced_service,
            "Deployment": self.apps.create_namespaced_deployment,
            "Role": self.rbac.create_namespaced_role,
            "RoleBinding": self.rbac.create_namespaced_role_binding,
        }
        if kind not in creators:
            raise ClusterError(f"no creator for kind {kind}")
        return self._call(what, creators[kind], ns, obj, **fm)

    def scale(self, namespace: str, name: str, replicas: int) -> dict:
        """Replicas through the scale subresource (a strategic-merge patch of spec.replicas)."""
        return self._call(f"scaling Deployment {name} to {replicas} in namespace {namespace}",
                          self.apps.patch_namespaced_deployment_scale, name, namespace,
                          {"spec": {"replicas": int(replicas)}}, field_manager=FIELD_MANAGER)

    def patch_deployment(self, namespace: str, name: str, patch: dict) -> dict:
        """A strategic-merge patch (the client's choice for a dict body): containers merge by name."""
        return self._call(f"patching Deployment {name} in namespace {namespace}",
                          self.apps.patch_namespaced_deployment, name, namespace, patch,
                          field_manager=FIELD_MANAGER)

    def read_deployment(self, namespace: str, name: str) -> dict:
        return self._call(f"reading Deployment {name} in namespace {namespace}",
                          self.apps.read_namespaced_deployment, name, namespace)

    def deployments_version(self, namespace: str) -> str:
        """The resourceVersion of the namespace's Deployments now: where a watch starts, so that
        every change after this read is an event."""
        body = self._call(f"listing Deployments in namespace {namespace}", self.apps.list_namespaced_deployment,
                          namespace, limit=1)
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def wait_for_deployment_change(self, namespace: str, version: str, timeout_s: float) -> bool | None:
        """Block until a Deployment of the namespace changes after ``version`` (True) or
        ``timeout_s`` passes (False): a watch, so a rollout that finishes is seen when it does,
        not at the next poll. None when this API server offers no watch here (the caller then
        sleeps its poll period); a version too old to watch from (HTTP 410) counts as a change,
        since the caller reads everything again anyway."""
        k = self._k
        events = k.watch.Watch().stream(self.apps.list_namespaced_deployment, namespace, resource_version=version,
                                        timeout_seconds=max(1, math.ceil(timeout_s)), deserialize=False,
                                        _request_timeout=timeout_s + 10.0)
        try:
            for event in events:
                # an answer that is not a watch event (a proxy that ignored the flag and sent the
                # list) would wake every caller at once, for ever: that is no watch
                return True if isinstance(event, dict) and event.get("type") in WATCH_EVENTS else None
            return False
        except k.client.exceptions.ApiException as e:
            return True if e.status == 410 else None
        except (OSError, ValueError, self._urllib3.exceptions.HTTPError):
            return None  # a broken stream: the caller's next reads say whether the API is there
        finally:
            events.close()  # closes the HTTP response

    def list_pods(self, namespace: str, label_selector: str = "") -> list[dict]:
        body = self._call(f"listing pods in namespace {namespace}", self.core.list_namespaced_pod,
                          namespace, label_selector=label_selector)
        return list(body.get("items", []))

    def pod_log(self, namespace: str, pod: str, container: str | None = None) -> str:
        k = self._k
        try:
            response = self.core.read_namespaced_pod_log(pod, namespace, container=container,
                                                         _preload_content=False)
        except k.client.exceptions.ApiException as e:
            return f"(no log: HTTP {e.status} {e.reason})\n"
        return response.data.decode("utf-8", "replace")

    def namespace_exists(self, name: str) -> bool:
        return self._call(f"reading namespace {name}", self.core.read_namespace, name, allow=(404,)) is not None

    def delete_namespace(self, name: str) -> bool:
        """Delete the namespace and, with it, everything in it. False when it was not there."""
        body = self._call(f"deleting namespace {name}", self.core.delete_namespace, name,
                          propagation_policy="Background", allow=(404,))
        return body is not None

    def wait_namespace_gone(self, name: str, timeout_s: float, poll_s: float = 1.0,
                            sleep: Callable[[float], None] = time.sleep) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.namespace_exists(name):
            if time.monotonic() >= deadline:
                return False
            sleep(poll_s)
        return True
