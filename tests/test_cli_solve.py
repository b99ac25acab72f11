"""`ipa solve`: the table, the JSON, and the exit codes (0 feasible, 1 infeasible, 2 bad input)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from ipa.cli import main


@pytest.fixture
def solve_cli(tiny_files, capfd):
    pipelines, variants, profiles = tiny_files

    def call(*args: str) -> tuple[int, str, str]:
        code = main(["solve", "--pipelines-file", str(pipelines), "--variants-file", str(variants),
                     "--profiles-file", str(profiles), *args])
        out, err = capfd.readouterr()  # file descriptors: HiGHS writes to C stdout
        return code, out, err

    return call


@pytest.mark.parametrize("solver", ["cbc", "highs"])
def test_json_has_every_field_and_a_consistent_configuration(solve_cli, solver):
    code, out, err = solve_cli("--pipeline", "tiny-video", "--rate", "20", "--solver", solver, "--json")
    assert code == 0, err
    doc = json.loads(out)  # nothing but the JSON on stdout
    assert doc["feasible"] is True and doc["reason"] == "" and doc["solver"] == solver
    for field in ("accuracy", "cost_cores", "latency_s", "objective", "solve_time_s", "sla_s"):
        assert isinstance(doc[field], (int, float))
    assert [s["stage"] for s in doc["stages"]] == ["detector", "classifier"]
    assert doc["cost_cores"] == sum(s["replicas"] * s["cores_per_replica"] for s in doc["stages"])
    assert all(s["cores"] == s["replicas"] * s["cores_per_replica"] for s in doc["stages"])
    assert doc["latency_s"] <= doc["sla_s"]
    assert doc["solve_time_s"] < 1.0


def test_table_by_default(solve_cli):
    code, out, _ = solve_cli("--pipeline", "tiny-audio", "--rate", "5", "--policy", "fa2-high")
    assert code == 0
    assert "policy fa2-high" in out and "feasible: yes" in out
    assert "asr-l" in out and "cls-m" in out  # the most accurate variants
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_weights_and_sla_overrides_reach_the_solver(solve_cli):
    _, out, _ = solve_cli("--pipeline", "tiny-video", "--rate", "10", "--alpha", "0", "--beta", "1", "--json")
    cheap = json.loads(out)
    _, out, _ = solve_cli("--pipeline", "tiny-video", "--rate", "10", "--alpha", "1000", "--beta", "0.001",
                          "--sla", "3", "--json")
    accurate = json.loads(out)
    assert (cheap["alpha"], accurate["alpha"], accurate["sla_s"]) == (0, 1000, 3)
    assert accurate["accuracy"] > cheap["accuracy"]
    assert cheap["cost_cores"] <= accurate["cost_cores"]


def test_infeasible_load_exits_1_with_the_reason(solve_cli):
    code, out, _ = solve_cli("--pipeline", "tiny-video", "--rate", "5000", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["feasible"] is False
    assert "stage detector" in doc["reason"] and "5000" in doc["reason"]


@pytest.mark.reliability
@pytest.mark.parametrize("args,message", [
    (["--pipeline", "tiny-video", "--rate", "0"], "arrival rate must be a finite number > 0"),
    (["--pipeline", "tiny-video", "--rate", "-2"], "arrival rate must be a finite number > 0"),
    (["--pipeline", "tiny-video", "--rate", "nan"], "got nan"),
    (["--pipeline", "tiny-video", "--rate", "inf"], "got inf"),
    (["--pipeline", "tiny-video", "--rate", "5", "--policy", "greedy"], "unknown policy 'greedy'"),
    (["--pipeline", "tiny-video", "--rate", "5", "--sla", "0.01"], "below the fastest possible"),
    (["--pipeline", "tiny-video", "--rate", "5", "--gamma", "-1"], "weight gamma must be a finite number >= 0"),
    (["--pipeline", "video-2", "--rate", "5"], "unknown pipeline 'video-2'; known: tiny-audio, tiny-video"),
])
def test_bad_input_exits_2_naming_the_problem(solve_cli, args, message):
    code, out, err = solve_cli(*args)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


@pytest.mark.live
def test_video_at_20_rps_from_the_command_line(reference_pipeline):
    """The issue's acceptance command, as a user runs it."""
    reference_pipeline("video")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ipa.cli", "solve", "--pipeline", "video", "--rate", "20",
                           "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["feasible"] and doc["solve_time_s"] < 1.0
    print(f"ipa solve video 20 rps: solve {doc['solve_time_s'] * 1000:.1f} ms, "
          f"process {time.perf_counter() - started:.2f} s")


@pytest.mark.live
def test_highs_json_is_clean_in_a_fresh_process(tiny_files):
    """HiGHS prints a banner on its first use in a process; it must not reach --json output."""
    pipelines, variants, profiles = tiny_files
    proc = subprocess.run([sys.executable, "-m", "ipa.cli", "solve", "--pipeline", "tiny-video", "--rate", "20",
                           "--solver", "highs", "--json", "--pipelines-file", str(pipelines),
                           "--variants-file", str(variants), "--profiles-file", str(profiles)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["solver"] == "highs"
