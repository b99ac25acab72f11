"""Real mode refuses, before starting anything, a run whose policy provisions more cores than the
machine has (ipa.runs.capacity); the suggestion it makes is a load that does fit."""
from __future__ import annotations

import pytest

from ipa.cli import main
from ipa.errors import ConfigError
from ipa.pipelines import load_pipeline
from ipa.policies import Observation, make_policy
from ipa.runs import capacity


@pytest.fixture(scope="module")
def video():
    return load_pipeline("video")


def test_peak_per_second_counts_whole_seconds():
    assert capacity.peak_per_second([0.1, 0.9, 1.0, 1.5, 1.99, 3.2]) == 3
    assert capacity.peak_per_second([]) == 0


def test_cores_needed_is_the_larger_of_the_first_and_the_peak_decision(video):
    policy = make_policy("ipa", video)
    low, high = 0.2, 8.0
    # what the policy itself provisions at either rate, decided independently of the helper
    at = {r: policy(Observation(0.0, r), policy.initial_state())[0].configuration.total_cores for r in (low, high)}
    assert at[high] > at[low]
    assert capacity.cores_needed(policy, low, high)[0] == at[high]
    # static keeps what it chose first, however high the load goes
    static = make_policy("static", video)
    assert capacity.cores_needed(static, low, high)[0] == at[low]


def test_the_largest_constant_load_is_the_last_that_fits_by_a_plain_scan(video):
    policy = make_policy("fa2-low", video)

    def peaks(r):  # a plain constant rate: first and peak equal
        return float(r), float(r)

    cores = capacity.cores_needed(policy, 6.0, 6.0)[0]
    found = capacity.largest_constant_rate(policy, cores, 0.0, peaks)
    scan = [r for r in range(1, 40) if capacity.cores_needed(policy, r, r)[0] <= cores]
    assert found == max(scan) and found >= 6
    assert capacity.largest_constant_rate(policy, 0, 0.0, peaks) == 0


def test_a_run_that_does_not_fit_names_the_cores_it_needs(video):
    policy = make_policy("ipa", video)
    need = capacity.cores_needed(policy, 2.0, 2.0)[0]
    with pytest.raises(ConfigError) as e:
        capacity.check_fits_machine(policy, video, 2.0, 2.0, lambda r: (r * 0.0, r * 0.0), cores=need - 1)
    assert f"provision {need} cores" in str(e.value) and f"a machine with {need} cores" in str(e.value)
    assert "--mode emulated" in str(e.value)
    assert capacity.check_fits_machine(policy, video, 2.0, 2.0, lambda r: (r, r), cores=need) == need


@pytest.mark.reliability
def test_ipa_run_in_real_mode_refuses_before_starting_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(capacity, "machine_cores", lambda: 1)
    out = tmp_path / "run"
    rc = main(["run", "--pipeline", "video", "--workload", "bursty", "--policy", "ipa", "--backend", "local",
               "--mode", "real", "--duration", "30", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "1 core(s)" in err and "refusing before starting" in err
    assert not out.exists()  # no work folder, no process logs: nothing was started


def test_a_local_run_on_nominal_cores_beyond_the_machine_is_named_not_silent():
    from ipa.runs.capacity import nominal_cores_note

    note = nominal_cores_note("local", {"mode": "emulated"}, 7, cores=2)
    assert "up to 7 cores on this 2-core machine" in note and "emulated replicas" in note and "nominal" in note
    assert "quick stand-in builds" in nominal_cores_note("local", {"mode": "real", "quick": True}, 3, cores=2)
    assert nominal_cores_note("local", {"mode": "emulated"}, 2, cores=2) is None  # fits
    assert nominal_cores_note("sim", {}, 50, cores=2) is None  # the simulator computes nothing here
