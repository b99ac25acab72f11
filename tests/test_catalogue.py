"""Catalogue and profile loading: the shipped files, and bad files that must name the problem."""
from __future__ import annotations

import csv

import pytest

from ipa.errors import CatalogueError, ProfileMissing
from ipa.pipelines import load_catalogue
from ipa.pipelines.catalogue import VARIANT_COLUMNS, load_variants
from ipa.pipelines.profiles import PROFILE_COLUMNS, read_profile_csv


def test_shipped_catalogue_has_the_five_reference_pipelines():
    cat = load_catalogue()
    assert set(cat.pipelines) == {"video", "audio-qa", "audio-sent", "sum-qa", "nlp"}
    stages = {name: [s.task for s in p.stages] for name, p in cat.pipelines.items()}
    assert stages["video"] == ["object_detection", "image_classification"]
    assert stages["audio-qa"] == ["speech_recognition", "question_answering"]
    assert stages["audio-sent"] == ["speech_recognition", "sentiment_analysis"]
    assert stages["sum-qa"] == ["summarization", "question_answering"]
    assert stages["nlp"] == ["language_identification", "translation", "summarization"]


def test_every_stage_has_three_variants_where_the_reference_has_them():
    cat = load_catalogue()
    for p in cat.pipelines.values():
        for s in p.stages:
            available = sum(1 for (task, _) in cat.variants if task == s.task)
            assert len(s.variants) >= min(3, available), (p.name, s.name)
            for v in s.variants:
                assert v.metric and v.source and 0 < v.accuracy <= 1


def test_lower_is_better_metrics_map_to_100_minus_value():
    cat = load_catalogue()
    wer = cat.variants[("speech_recognition", "facebook/s2t-small-librispeech-asr")]
    assert not wer.higher_is_better
    assert wer.accuracy == pytest.approx((100 - 4.3) / 100)
    top1 = cat.variants[("image_classification", "microsoft/resnet-18")]
    assert top1.accuracy == pytest.approx(0.69758)


def test_profile_keys_separate_input_shapes():
    cat = load_catalogue()
    sumqa = cat.pipeline("sum-qa").stage("summarizer")
    nlp = cat.pipeline("nlp").stage("summarizer")
    v = sumqa.variants[0]
    assert sumqa.profile_key(v) != nlp.profile_key(v)  # 512- vs 128-token articles
    # the same QA input in two pipelines shares one profile
    assert (cat.pipeline("sum-qa").stage("qa").profile_key(v2 := cat.pipeline("sum-qa").stage("qa").variants[0])
            == cat.pipeline("audio-qa").stage("qa").profile_key(v2))


def test_unknown_pipeline_names_the_known_ones():
    with pytest.raises(CatalogueError, match="unknown pipeline 'nope'.*video"):
        load_catalogue().pipeline("nope")


def _rewrite_variants(src, dst, mutate):
    rows = list(csv.DictReader(open(src)))
    mutate(rows)
    fields = list(rows[0].keys()) if rows else list(VARIANT_COLUMNS)
    with open(dst, "w", newline="") as f:
        w = csv.DictWriter(f, fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def test_missing_column_names_file_and_column(tiny_files, tmp_path):
    _, variants, _ = tiny_files
    bad = tmp_path / "bad.csv"
    _rewrite_variants(variants, bad, lambda rows: [r.pop("metric") for r in rows])
    with pytest.raises(CatalogueError, match=r"bad.csv: missing column\(s\) \['metric'\]"):
        load_variants(bad)


def test_non_numeric_metric_names_row_and_field(tiny_files, tmp_path):
    _, variants, _ = tiny_files
    bad = tmp_path / "bad.csv"

    def mutate(rows):
        rows[2]["metric_value"] = "high"
    _rewrite_variants(variants, bad, mutate)
    with pytest.raises(CatalogueError, match=r"bad.csv, row 4: field 'metric_value' must be a number"):
        load_variants(bad)


def test_unknown_variant_in_a_stage_lists_the_known_ones(tiny_files, tmp_path):
    pipelines, variants, _ = tiny_files
    bad = tmp_path / "p.yaml"
    bad.write_text(pipelines.read_text().replace("[det-s, det-m, det-l]", "[det-s, det-xl]"))
    with pytest.raises(CatalogueError, match=r"stage 0 \(detector\): unknown variant 'det-xl'.*det-m"):
        load_catalogue(bad, variants)


def test_stage_with_no_variant_is_rejected(tiny_files, tmp_path):
    pipelines, variants, _ = tiny_files
    bad = tmp_path / "p.yaml"
    bad.write_text(pipelines.read_text().replace("[det-s, det-m, det-l]", "[]"))
    with pytest.raises(CatalogueError, match="detector.*stage has no variant"):
        load_catalogue(bad, variants)


def test_unknown_parameter_is_rejected(tiny_files):
    pipelines, variants, _ = tiny_files
    with pytest.raises(CatalogueError, match="unknown parameter 'alhpa'"):
        load_catalogue(pipelines, variants, overrides={"tiny-video": {"alhpa": 3}})


def test_overrides_replace_parameters(tiny_files):
    pipelines, variants, _ = tiny_files
    cat = load_catalogue(pipelines, variants, overrides={"defaults": {"sla_factor": 3}, "tiny-video": {"alpha": 7}})
    assert cat.pipeline("tiny-video").params["alpha"] == 7
    assert cat.pipeline("tiny-audio").params["sla_factor"] == 3


def _rewrite_profile(src, dst, row_index, field, value):
    rows = list(csv.DictReader(open(src)))
    rows[row_index][field] = value
    with open(dst, "w", newline="") as f:
        w = csv.DictWriter(f, PROFILE_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def test_negative_latency_names_row_and_field(tiny_files, tmp_path):
    _, _, profiles = tiny_files
    bad = tmp_path / "profiles.csv"
    _rewrite_profile(profiles, bad, 3, "latency_p99_s", "-0.5")
    with pytest.raises(CatalogueError, match=r"profiles.csv, row 5: field 'latency_p99_s' must be finite and non-negative"):
        read_profile_csv(bad)


def test_profile_without_a_variant_row_is_reported(make_tiny_pipeline, tiny_files, tmp_path):
    pipelines, variants, profiles = tiny_files
    rows = [r for r in csv.DictReader(open(profiles)) if not r["key"].startswith("det-m@")]
    thin = tmp_path / "thin.csv"
    with open(thin, "w", newline="") as f:
        w = csv.DictWriter(f, PROFILE_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    from ipa.pipelines import Pipeline
    with pytest.raises(ProfileMissing, match="det-m@image-64x64"):
        Pipeline(load_catalogue(pipelines, variants).pipeline("tiny-video"), read_profile_csv(thin))


