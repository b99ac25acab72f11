"""Security basics: servers bind 127.0.0.1 unless told otherwise, no shell command is built from
strings, YAML is loaded safely, and the Kubernetes objects stay inside the run's namespace.

The scans read the source (AST), so a new call site anywhere in the package is checked without
anyone remembering to add it here."""
from __future__ import annotations

import ast
import time
from pathlib import Path

import psutil
import pytest

from ipa.configuration import Configuration, StageConfig

ROOT = Path(__file__).resolve().parents[1]
# everything that runs: the package, the workflow's scripts, the benchmarks
SOURCES = sorted([*(ROOT / "ipa").rglob("*.py"), *(ROOT / "workflow").rglob("*.py"),
                  *(ROOT / "benchmarks").rglob("*.py")])
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node, _dotted(node.func)


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{node.lineno}"


def test_the_scans_see_the_package():
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert {"ipa/processes.py", "ipa/monitoring/prometheus.py", "ipa/cli_serve.py"} <= names
    # the scan does find subprocess calls and YAML loads, so an empty finding below means something
    found = {name for p in SOURCES for _, name in _calls(p)}
    assert "subprocess.Popen" in found and "yaml.safe_load" in found


def shell_findings(paths) -> list[str]:
    bad = []
    for path in paths:
        for node, name in _calls(path):
            last = name.rsplit(".", 1)[-1]
            if name in ("os.system", "os.popen") or last in ("create_subprocess_shell", "getoutput", "getstatusoutput"):
                bad.append(f"{_where(path, node)}: {name}(...) runs a shell")
                continue
            if last not in SUBPROCESS_CALLS or not (name.startswith("subprocess.") or name == last):
                continue
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    bad.append(f"{_where(path, node)}: {name}(..., shell=...)")
            # a command given as one string (literal, f-string, concatenation, %-format) is a shell line
            if node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)) \
                    and not (isinstance(node.args[0], ast.Constant) and not isinstance(node.args[0].value, str)):
                bad.append(f"{_where(path, node)}: {name} given a command string, not an argument list")
    return bad


def yaml_findings(paths) -> list[str]:
    bad = []
    for path in paths:
        for node, name in _calls(path):
            if not name.startswith("yaml."):
                continue
            fn = name.split(".", 1)[1]
            if fn in ("unsafe_load", "unsafe_load_all", "full_load", "full_load_all"):
                bad.append(f"{_where(path, node)}: {name}")
            elif fn in ("load", "load_all"):
                loader = next((kw.value for kw in node.keywords if kw.arg == "Loader"),
                              node.args[1] if len(node.args) > 1 else None)
                if loader is None or _dotted(loader).rsplit(".", 1)[-1] not in ("SafeLoader", "CSafeLoader"):
                    bad.append(f"{_where(path, node)}: {name} without SafeLoader")
    return bad


def test_no_shell_commands_are_built_from_strings():
    assert shell_findings(SOURCES) == []


def test_yaml_is_loaded_safely():
    assert yaml_findings(SOURCES) == []


PLANTED = """
import os, subprocess, asyncio, yaml
subprocess.run(["ls", path])                      # fine: an argument list
subprocess.run(["ls"], shell=False)               # fine
subprocess.run(f"ls {path}", shell=True)          # caught twice: shell=True, and a string
subprocess.Popen("ls " + path)                    # caught
os.system(cmd)                                    # caught
asyncio.create_subprocess_shell(cmd)              # caught
subprocess.check_output(cmd, shell=flag)          # caught: shell may be true
yaml.safe_load(text)                              # fine
yaml.load(text, Loader=yaml.SafeLoader)           # fine
yaml.load(text)                                   # caught
yaml.load(text, Loader=yaml.Loader)               # caught
yaml.unsafe_load(text)                            # caught
yaml.full_load(text)                              # caught
"""


def test_the_scans_catch_planted_calls(tmp_path):
    path = tmp_path / "planted.py"
    path.write_text(PLANTED)
    assert [f.split(":")[1] for f in shell_findings([path])] == ["5", "5", "6", "7", "8", "9"]
    assert [f.split(":")[1] for f in yaml_findings([path])] == ["12", "13", "14", "15"]


def test_kubernetes_objects_stay_in_the_run_namespace(tiny_pipeline):
    """Every object of a run is namespaced in the run's namespace (only the Namespace itself is
    not); nothing cluster-wide is created, and Prometheus' role only reads pods.
    (tests/test_k8s_manifests.py checks the role's exact rules and the scrape scope.)"""
    from ipa.k8s.manifests import ClusterOptions
    from ipa.k8s.render import cheapest_configuration, run_objects

    for mode in ("emulated", "real"):
        options = ClusterOptions(namespace="ipa-run-sec", run_id="sec", mode=mode)
        objects = run_objects(tiny_pipeline, cheapest_configuration(tiny_pipeline), options)
        assert [o["kind"] for o in objects].count("Namespace") == 1
        for o in objects:
            if o["kind"] == "Namespace":
                assert o["metadata"]["name"] == "ipa-run-sec"
                continue
            assert o["kind"] not in ("ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
                                     "CustomResourceDefinition", "MutatingWebhookConfiguration")
            assert o["metadata"].get("namespace") == "ipa-run-sec", f"{o['kind']} {o['metadata']['name']}"
        for role in (o for o in objects if o["kind"] == "Role"):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                assert set(rule["verbs"]) <= {"get", "list", "watch"}
        for binding in (o for o in objects if o["kind"] == "RoleBinding"):
            assert binding["roleRef"]["kind"] == "Role"
    # and the client has no way to create anything cluster-wide besides the namespace
    client = (ROOT / "ipa" / "k8s" / "client.py").read_text()
    assert "cluster_role" not in client and "create_persistent_volume" not in client


def _listening(pids) -> list[tuple[int, str, int]]:
    out = []
    for pid in pids:
        try:
            for c in psutil.Process(pid).net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    out.append((pid, c.laddr.ip, c.laddr.port))
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.live
def _loopback(address: str) -> bool:
    import ipaddress
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def test_every_server_of_the_live_stack_listens_on_loopback_only(tiny_pipeline, tmp_path):
    """Stage servers, the router and Prometheus, as `ipa serve` and the local backend start them."""
    import shutil

    from ipa.serving.stack import LiveStack

    prometheus = shutil.which("prometheus") is not None
    cheapest = Configuration({s: StageConfig(p[0].variant, 1, 1, p[0].base_cores)
                              for s, p in tiny_pipeline.stage_profiles.items()})
    with LiveStack(tiny_pipeline, tmp_path / "stack", load_time_scale=0.1, prometheus=prometheus) as stack:
        stack.start(cheapest)
        stack.wait_ready(30)
        deadline = time.monotonic() + 10
        while True:  # every child has its listening socket by now; give a slow start a moment
            found = _listening(stack.group.pids())
            if len({pid for pid, _, _ in found}) >= len(stack.group.pids()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        pids = stack.group.pids()
    assert len(pids) == len(tiny_pipeline.stage_names) + 1 + prometheus
    assert {pid for pid, _, _ in found} == set(pids), "a server process has no listening socket to check"
    # grpc listens on an IPv6 socket: 127.0.0.1 shows as ::ffff:127.0.0.1, loopback all the same
    assert [f for f in found if not _loopback(f[1])] == []
    ports = {port for _, _, port in found}
    assert {stack.router_port, stack.grpc_port} <= ports and set(stack.stage_ports.values()) <= ports
