"""CI regression of adaptation quality (`pytest -m regression`).

Re-runs the matrix of every committed reference and compares it within the stated tolerances
(ipa/quality/reference.py): the synthetic pipelines of conftest.py always, the reference
pipelines for the rows ipa/quality/reference.csv holds. A failure prints the table of the cells
that moved. Refresh an intended change with `ipa quality refresh` (reference pipelines) or
`python tests/reference/refresh_synthetic.py` (synthetic), and commit the diff.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from quality_support import SYNTHETIC_REFERENCE, synthetic_matrix, tiny_catalogue_files

from ipa.predictors import make_predictor
from ipa.quality import (REFERENCE_FILE, TOLERANCES, Cell, ReferenceRow, check, compare, read_reference,
                         write_reference)
from ipa.quality.reference import merge

pytestmark = pytest.mark.regression


class HalvedLoad:
    """A deliberately worse adapter: the paper's LSTM, its forecast halved (a top-level class so
    that the matrix's worker processes can build it)."""

    name = "lstm-halved"

    def __init__(self):
        self.inner = make_predictor("lstm")

    def predict(self, arrivals_per_s):
        return self.inner.predict(arrivals_per_s) / 2


def test_synthetic_matrix_matches_the_committed_reference():
    result, _ = synthetic_matrix()
    print(result.report())
    assert len(result.results) == len(read_reference(SYNTHETIC_REFERENCE)) == 40
    assert result.passed, "\n" + result.report()


def test_reference_pipelines_match_the_committed_reference():
    reference = read_reference(REFERENCE_FILE)
    print(f"{REFERENCE_FILE}: {len(reference)} cells of {sorted({r.cell.pipeline for r in reference})}")
    result = check(REFERENCE_FILE, workers=2)
    print(result.report())
    assert result.passed, "\n" + result.report()


def _subset(rows, pipelines=("tiny-video",), workloads=("bursty", "steady-low"),
            policies=("ipa", "fa2-low", "fa2-high")):
    return [r for r in rows if r.cell.pipeline in pipelines and r.cell.workload in workloads
            and r.cell.policy in policies]


def test_a_worsened_predictor_fails_with_a_readable_table(tmp_path):
    reference = _subset(read_reference(SYNTHETIC_REFERENCE))
    assert len(reference) == 6
    path = tmp_path / "reference.csv"
    write_reference(reference, path)
    result = check(path, out_root=tmp_path / "runs", files=tiny_catalogue_files(tmp_path / "catalogue"), workers=2,
                   make_predictor=HalvedLoad)
    report = result.report()
    print(report)
    assert not result.passed
    header = next(line for line in report.splitlines() if line.startswith("cell"))
    assert header.split() == ["cell", "metric", "reference", "now", "change", "tolerance"]
    # halving the forecast under-provisions IPA on bursty: more violations and a higher p99, each
    # reported with the committed value, the new one and the tolerance it broke
    ref = {r.cell: r for r in reference}[Cell("tiny-video", "bursty", "ipa")]
    line = next(line for line in report.splitlines()
                if line.startswith("tiny-video/bursty/ipa") and "sla_violation_rate" in line)
    assert f"{ref.metrics['sla_violation_rate']:.4g}" in line and "worse" in line
    assert str(TOLERANCES["sla_violation_rate"]) in line
    moved = {(d.cell, d.metric) for d in result.differences}
    assert (Cell("tiny-video", "bursty", "ipa"), "latency_p99_s") in moved
    # the cross-policy bound catches it too, naming the cell
    assert any(p.startswith("tiny-video/steady-low: IPA's SLA-violation rate") for p in result.property_problems)
    # the run folders say which predictor ran: a worse run never passes for a reference run
    summary = json.loads((tmp_path / "runs" / "tiny-video" / "bursty" / "ipa" / "summary.json").read_text())
    assert summary["params"]["predictor"] == "lstm-halved"


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ipa.cli", "quality", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_cli_check_passes_and_fails_on_a_tampered_reference(tmp_path):
    files = tiny_catalogue_files(tmp_path / "catalogue")
    opts = ["--pipelines-file", str(files.pipelines), "--variants-file", str(files.variants),
            "--profiles-file", str(files.profiles), "--quiet"]
    rows = _subset(read_reference(SYNTHETIC_REFERENCE), workloads=("steady-low",), policies=("ipa", "fa2-low", "fa2-high"))
    good = tmp_path / "good.csv"
    write_reference(rows, good)
    r = _cli("check", "--reference", str(good), *opts)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 cells within the tolerances" in r.stdout

    # the reference claims IPA was 20% cheaper than it is: the check names cell, metric and both values
    ipa = next(x for x in rows if x.cell.policy == "ipa")
    cheaper = dict(ipa.metrics, cost_cores_mean=ipa.metrics["cost_cores_mean"] * 0.8)
    bad = tmp_path / "bad.csv"
    write_reference([x if x is not ipa else ReferenceRow(x.cell, cheaper, x.requests_sent, x.pipeline_sha256)
                     for x in rows], bad)
    r = _cli("check", "--reference", str(bad), *opts)
    assert r.returncode == 1, r.stdout + r.stderr
    line = next(line for line in r.stdout.splitlines() if line.startswith("tiny-video/steady-low/ipa"))
    assert line.split()[1:4] == ["cost_cores_mean", f"{cheaper['cost_cores_mean']:.4g}",
                                 f"{ipa.metrics['cost_cores_mean']:.4g}"]
    assert "worse" in line
    assert "ipa quality refresh --pipelines tiny-video" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["check", "--reference", "/nonexistent/ref.csv"], "no such file"),
    (["check", "--workers", "0", "--reference", str(SYNTHETIC_REFERENCE)], "--workers must be >= 1"),
    (["refresh", "--pipelines", "no-such-pipeline", "--reference", "/tmp/unused.csv"], "no-such-pipeline"),
])
def test_cli_bad_input_exits_2(args, message):
    r = _cli(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_reference_file_round_trips_and_refresh_keeps_other_pipelines(tmp_path):
    rows = read_reference(SYNTHETIC_REFERENCE)
    path = tmp_path / "ref.csv"
    write_reference(rows, path)
    assert path.read_text() == SYNTHETIC_REFERENCE.read_text()  # sorted, stable formatting
    video = [r for r in rows if r.cell.pipeline == "tiny-video"]
    new_video = [ReferenceRow(r.cell, dict(r.metrics, pas_mean=0.5), r.requests_sent, r.pipeline_sha256)
                 for r in video]
    merged = merge(rows, new_video)
    assert len(merged) == len(rows)
    assert [r for r in merged if r.cell.pipeline == "tiny-audio"] == [r for r in rows if r.cell.pipeline == "tiny-audio"]
    assert all(r.metrics["pas_mean"] == 0.5 for r in merged if r.cell.pipeline == "tiny-video")


def test_compare_reports_missing_cells_changed_data_and_changed_load():
    rows = _subset(read_reference(SYNTHETIC_REFERENCE))
    a, b, c = rows[0], rows[1], rows[2]
    now = [ReferenceRow(b.cell, b.metrics, b.requests_sent, "0" * 64),
           ReferenceRow(c.cell, c.metrics, c.requests_sent + 3, c.pipeline_sha256)]
    found = {(str(d.cell), d.metric) for d in compare([a, b, c], now)}
    assert found == {(str(a.cell), "(cell)"), (str(b.cell), "pipeline data"), (str(c.cell), "requests_sent")}


def test_tolerances_pass_a_one_decision_change_and_fail_a_systematic_one():
    pas = TOLERANCES["pas_mean"]
    # one 10-s interval of 120 at a variant 0.2 PAS away
    assert pas.allows(0.40, 0.40 - 0.2 / 120)
    assert not pas.allows(0.40, 0.39)
    cores = TOLERANCES["cost_cores_mean"]
    assert cores.allows(40.0, 40.0 + 4 / 120) and cores.allows(40.0, 40.39) and not cores.allows(40.0, 40.5)
    sla = TOLERANCES["sla_violation_rate"]
    assert sla.allows(0.0, 0.0019) and not sla.allows(0.0, 0.003) and not sla.allows(0.02, 0.0235)
