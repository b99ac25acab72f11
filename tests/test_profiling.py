"""`ipa profile`: the real-model profiler, exercised on tiny configs of the same families (--quick)."""
from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

import pytest

from ipa.cli_profile import _out_dirs, add_parser
from ipa.pipelines.catalogue import StageInput, load_catalogue, slug
from ipa.pipelines.profiles import MODELLED_CORES, default_measurement_dir
from ipa.profiling.plan import TASK_ORDER, default_threads, select_targets

os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:
    import torch  # noqa: F401
    import transformers  # noqa: F401
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
needs_torch = [pytest.mark.torch, pytest.mark.skipif(not HAVE_TORCH, reason="needs torch + transformers")]

QUICK_SET = ["microsoft/resnet-18", "PekingU/rtdetr_r18vd", "Helsinki-NLP/opus-mt-fr-en",
             "sshleifer/distilbart-xsum-1-1", "facebook/s2t-small-librispeech-asr", "facebook/wav2vec2-base-960h"]
REPS = 2


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ipa")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["profile", *argv])
    return args.func(args)


def quick(out: Path, *variants: str, extra: tuple[str, ...] = ()) -> int:
    args = ["--quick", "--out", str(out), "--min-reps", str(REPS), "--max-reps", str(REPS), *extra]
    for v in variants:
        args += ["--variant", v]
    return cli(*args)


def docs(out: Path) -> dict[str, dict]:
    return {d["key"]: d for d in (json.loads(p.read_text()) for p in sorted(out.glob("*.json")))}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("quick") / "profiles"
    assert quick(out, *QUICK_SET, extra=("--pipeline", "video", "--pipeline", "nlp", "--pipeline", "audio-qa")) == 0
    return out


# --- without torch: plan, options, errors ---------------------------------------------------

def test_batches_and_order_follow_the_catalogue():
    targets = select_targets(load_catalogue())
    assert {t.key for t in targets} == set(load_catalogue().profile_targets())
    for t in targets:
        assert t.batches == ((1, 2, 4, 8) if "video" in t.pipelines else (1, 2)), t.key
    tasks = [TASK_ORDER[t.variant.task] for t in targets]
    assert tasks == sorted(tasks)
    assert targets[0].variant.task == "image_classification"
    last_video = max(i for i, t in enumerate(targets) if "video" in t.pipelines)
    assert last_video == sum("video" in t.pipelines for t in targets) - 1  # video keys come first


def test_unknown_variant_is_a_clear_error(capsys):
    assert cli("--variant", "no-such-model", "--list") == 2
    err = capsys.readouterr().err
    assert "unknown variant(s) no-such-model" in err and "microsoft/resnet-18" in err


def test_unknown_pipeline_is_a_clear_error(capsys):
    assert cli("--pipeline", "nope", "--list") == 2
    assert "unknown pipeline 'nope'" in capsys.readouterr().err


def test_list_needs_no_torch(tmp_path, capsys):
    assert cli("--list", "--out", str(tmp_path), "--pipeline", "video") == 0
    out = capsys.readouterr().out
    assert "9 target(s), 0 done" in out and "todo  microsoft/resnet-18@image-224x224" in out


def test_without_torch_says_how_to_install(monkeypatch, tmp_path, capsys):
    import ipa.profiling

    monkeypatch.setattr(ipa.profiling, "torch_available", lambda: False)
    assert cli("--out", str(tmp_path), "--variant", "resnet-18") == 2
    assert "pip install 'ipa-bench[torch]'" in capsys.readouterr().err


def test_quick_never_defaults_to_the_package_data():
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    out, csv_path = _out_dirs(parser.parse_args(["profile", "--quick"]))
    assert default_measurement_dir().resolve() not in (out.resolve(), *out.resolve().parents)
    assert csv_path == out.parent / "profiles.csv"
    out, csv_path = _out_dirs(parser.parse_args(["profile"]))
    assert out == default_measurement_dir() and csv_path.name == "profiles.csv"


# --- with torch: real builds of tiny configs ------------------------------------------------

@pytest.mark.parametrize("variant", ["PekingU/rtdetr_r18vd", "microsoft/resnet-18"])
@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch + transformers")
def test_quick_vision_measurements(quick_run, variant):
    key = f"{variant}@image-{'640x640' if 'rtdetr' in variant else '224x224'}"
    doc = json.loads((quick_run / f"{slug(key)}.json").read_text())
    assert doc["key"] == key and doc["variant"] == variant and doc["input"] == key.split("@")[1]
    assert doc["params_millions"] > 0 and doc["build_time_s"] > 0 and doc["load_time_s"] > 0
    assert doc["provenance"]["quick"] is True and doc["provenance"]["torch"]
    assert len(doc["provenance"]["loadavg_start"]) == 3
    got = {(m["batch"], m["threads"]) for m in doc["measurements"]}
    assert got == {(b, t) for b in (1, 2, 4, 8) for t in (1, 2)}
    for m in doc["measurements"]:
        assert len(m["latencies_s"]) >= REPS == m["reps"]
        assert all(x > 0 for x in m["latencies_s"])
        assert min(m["latencies_s"]) <= m["latency_p50_s"] <= m["latency_p99_s"] <= max(m["latencies_s"])
        assert m["peak_memory_mb"] >= 0
        assert m["input_shape"]["pixel_values"][0] == m["batch"]


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch + transformers")
def test_quick_generation_is_forced_to_its_length(quick_run):
    all_docs = docs(quick_run)
    for key in ("Helsinki-NLP/opus-mt-fr-en@text-128-gen128", "sshleifer/distilbart-xsum-1-1@text-128-gen62",
                "facebook/s2t-small-librispeech-asr@audio-10s-gen40"):
        doc = all_docs[key]
        assert doc["generation"] == {"new_tokens": 4, "forced": True, "num_beams": 1, "do_sample": False}
        assert all(m["input_shape"]["generate"]["min_new_tokens"] == 4 for m in doc["measurements"])
    # CTC: one forward, no generation, raw samples in
    w2v = all_docs["facebook/wav2vec2-base-960h@audio-10s-gen40"]
    assert w2v["generation"] is None and "input_values" in w2v["measurements"][0]["input_shape"]


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch + transformers")
@pytest.mark.parametrize("variant", ["sshleifer/distilbart-xsum-1-1", "Helsinki-NLP/opus-mt-tc-big-fr-en"])
def test_generate_output_length_equals_new_tokens(variant):
    import torch

    from ipa.profiling.builders import build_model
    from ipa.profiling.inputs import generated_tokens, make_call

    v = next(v for (_, name), v in load_catalogue().variants.items() if name == variant)
    model = build_model(v, quick=True)
    call = make_call(model, StageInput("text", tokens=8, new_tokens=7), batch=2)
    with torch.inference_mode():
        out = call.run()
    assert out.shape == (2, 1 + 7)  # decoder start token + 7 forced tokens
    assert generated_tokens(model, out, call.inputs) == 7


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch + transformers")
def test_speech2text_gets_10s_of_fbank_frames():
    from ipa.profiling.builders import build_model
    from ipa.profiling.inputs import fbank_frames, make_call

    assert fbank_frames(10) == 998
    v = next(v for (_, name), v in load_catalogue().variants.items() if name == "facebook/s2t-small-librispeech-asr")
    call = make_call(build_model(v, quick=True), StageInput("audio", seconds=10, new_tokens=3), batch=2)
    assert call.shape["input_features"] == [2, 998, 80] and call.new_tokens == 3


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch + transformers")
def test_assembled_table_has_measured_and_modelled_rows(quick_run):
    with open(quick_run.parent / "profiles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["key"] for r in rows} == set(docs(quick_run))
    for key in {r["key"] for r in rows}:
        mine = [r for r in rows if r["key"] == key]
        batches = {int(r["batch"]) for r in mine}
        for b in batches:
            by_cores = {int(r["cores"]): r["source"] for r in mine if int(r["batch"]) == b}
            measured = set(default_threads())
            assert by_cores == {c: "measured" if c in measured else "modelled" for c in {*MODELLED_CORES, *measured}}


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch + transformers")
def test_resumable_and_force(tmp_path, capsys):
    out = tmp_path / "profiles"
    path = out / f"{slug('microsoft/resnet-18@image-224x224')}.json"
    assert quick(out, "resnet-18") == 0
    first = path.read_text()
    capsys.readouterr()
    assert quick(out, "resnet-18") == 0
    assert "done, skipped" in capsys.readouterr().out
    assert path.read_text() == first
    assert quick(out, "resnet-18", extra=("--force",)) == 0
    assert "measured 1" in capsys.readouterr().out
    assert json.loads(path.read_text())["measurements"] != json.loads(first)["measurements"]
    assert (tmp_path / "profiles.csv").exists()
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp file behind
    assert cli("--list", "--out", str(out), "--variant", "resnet-18") == 0
    assert "done  microsoft/resnet-18" in capsys.readouterr().out
    # --redo-suspect re-measures a key whose file has a block flagged as disturbed
    doc = json.loads(path.read_text())
    doc["suspect_blocks"], doc["measurements"][0]["latencies_s"] = 1, [-1.0]
    path.write_text(json.dumps(doc))
    capsys.readouterr()
    assert quick(out, "resnet-18", extra=("--redo-suspect",)) == 0
    assert "measured 1" in capsys.readouterr().out
    assert json.loads(path.read_text())["measurements"][0]["latencies_s"] != [-1.0]


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch + transformers")
def test_isolated_worker_writes_the_same_file(tmp_path, capsys):
    out = tmp_path / "profiles"
    assert quick(out, "distilbert-base-uncased-finetuned-sst-2-english", extra=("--isolate",)) == 0
    doc = json.loads((out / f"{slug('distilbert/distilbert-base-uncased-finetuned-sst-2-english@text-64')}.json").read_text())
    assert doc["provenance"]["isolated"] is True and doc["provenance"]["quick"] is True
    assert {(m["batch"], m["threads"]) for m in doc["measurements"]} == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert "isolate True" in capsys.readouterr().out


def test_start_to_ready_becomes_the_load_time_and_survives_a_latency_re_measure(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from ipa.profiling import runner
    from ipa.profiling.runner import MeasureOptions, measure_and_write, record_start_to_ready

    path = tmp_path / "k.json"
    path.write_text(json.dumps({"key": "k", "load_time_s": 0.5, "measurements": [], "provenance": {},
                                "load_time_parts_s": {"build": 0.3, "load_state_dict": 0.2}}))
    doc = record_start_to_ready(path, {"samples_s": [7.0, 9.0, 8.0], "median_s": 8.0, "method": "m"})
    # the weights' read is added: a random-init server skips it, a deployed replica does not
    assert doc["load_time_s"] == pytest.approx(8.2)
    assert doc["load_time_parts_s"] == {"build": 0.3, "load_state_dict": 0.2, "start_to_ready": 8.0}
    assert json.loads(path.read_text())["start_to_ready"]["samples_s"] == [7.0, 9.0, 8.0]

    # re-measuring the key's latencies (the measurement itself stubbed: its fresh document has
    # only the in-process load time) keeps the start to ready as the load time
    fresh = {"key": "k", "load_time_s": 0.45, "measurements": [], "batches": [], "provenance": {},
             "load_time_parts_s": {"build": 0.25, "load_state_dict": 0.2}}
    monkeypatch.setattr(runner, "measure_target", lambda *a, **k: json.loads(json.dumps(fresh)))
    measure_and_write(None, path, MeasureOptions())
    again = json.loads(path.read_text())
    assert again["load_time_s"] == pytest.approx(8.2) and again["load_time_parts_s"]["build"] == 0.25

