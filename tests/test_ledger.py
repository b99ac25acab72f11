"""The router's ledger (its own request counters) against a run's records: parsing the router's
/metrics text, the rules of ``ledger_mismatches`` on hand-worked cases, and the run-folder check (in test_runs.py, beside the run it checks)."""
from __future__ import annotations

from ipa.monitoring.router_ledger import router_counts, samples
from ipa.runs.ledger import ledger_mismatches

# a router's exposition, written by hand in the text format (version 0.0.4)
METRICS = """# HELP ipa_router_requests_total Pipeline requests received
# TYPE ipa_router_requests_total counter
ipa_router_requests_total{pipeline="video"} 10.0
ipa_router_requests_total{pipeline="other"} 99.0
# TYPE ipa_router_responses_total counter
ipa_router_responses_total{pipeline="video",outcome="ok"} 6.0
ipa_router_responses_total{pipeline="video",outcome="dropped"} 3.0
ipa_router_responses_total{pipeline="video",outcome="failed"} 1.0
# TYPE ipa_router_drops_total counter
ipa_router_drops_total{stage="detector"} 1.0
ipa_router_drops_total{stage="classifier"} 2.0
ipa_router_stage_failures_total{stage="classifier"} 1.0
ipa_router_requests_whole_seconds_total{pipeline="video"} 10 1700000000000
ipa_stage_label_escapes_total{stage="a\\"b"} 2.0
"""


def test_the_routers_exposition_is_read_per_pipeline_and_per_stage():
    c = router_counts(METRICS, "video")
    assert c.received == 10  # the other pipeline's 99 is not counted
    assert c.answered == {"ok": 6, "dropped": 3, "failed": 1}
    assert c.dropped_by_stage == {"detector": 1, "classifier": 2} and c.failed_by_stage == {"classifier": 1}
    assert samples(METRICS, "ipa_router_requests_whole_seconds_total") == [({"pipeline": "video"}, 10.0)]
    assert samples(METRICS, "ipa_stage_label_escapes_total") == [({"stage": 'a"b'}, 2.0)]


LEDGER = router_counts(METRICS, "video").as_json()


def test_a_ledger_that_matches_the_records_has_no_mismatch():
    # 6 answered 200 (4 on time, 2 late), 3 dropped, 1 failed by a stage: the records hold the same
    assert ledger_mismatches(LEDGER, {"sent": 10, "ok": 4, "late": 2, "dropped": 3, "failed": 1,
                                      "stage_failed": 1}) == []


def test_a_request_the_router_answered_but_the_records_lost_is_found():
    problems = ledger_mismatches(LEDGER, {"sent": 10, "ok": 3, "late": 2, "dropped": 3, "failed": 2,
                                          "stage_failed": 2})
    assert any("6 ok answers, the records hold 5" in p for p in problems), problems


def test_a_request_sent_that_the_router_never_saw_needs_a_failure_without_an_answer():
    # 11 sent, the router saw 10: fine when one failed without a router answer (refused connection)
    assert ledger_mismatches(LEDGER, {"sent": 11, "ok": 4, "late": 2, "dropped": 3, "failed": 2,
                                      "stage_failed": 1}) == []
    # not when every failure was the router's own answer: then the ledger is exact and 11 != 10
    problems = ledger_mismatches(LEDGER, {"sent": 11, "ok": 5, "late": 2, "dropped": 3, "failed": 1,
                                          "stage_failed": 1})
    assert any("11 requests sent, the router received 10" in p for p in problems), problems


def test_a_client_that_gave_up_leaves_only_bounds_and_they_still_bind():
    # the client gave up on 2 requests the router answered later (as ok): answers >= records holds
    records = {"sent": 10, "ok": 4, "late": 0, "dropped": 3, "failed": 3, "stage_failed": 1}
    assert ledger_mismatches(LEDGER, records) == []
    # but the router's 10 cannot be explained by 1 failure without an answer plus 4 + 3 + 1 answered ones
    records = {"sent": 10, "ok": 4, "late": 0, "dropped": 2, "failed": 4, "stage_failed": 3}
    problems = ledger_mismatches(LEDGER, records)
    assert any("stage-failure answers" in p for p in problems), problems


def test_the_routers_own_books_must_balance():
    broken = {**LEDGER, "dropped_by_stage": {"detector": 1}}
    problems = ledger_mismatches(broken, {"sent": 10, "ok": 4, "late": 2, "dropped": 3, "failed": 1,
                                          "stage_failed": 1})
    assert any("per-stage drops" in p for p in problems), problems
    unanswered = {**LEDGER, "received": 11}
    problems = ledger_mismatches(unanswered, {"sent": 11, "ok": 4, "late": 2, "dropped": 3, "failed": 1,
                                              "stage_failed": 1})
    assert any("received 11 requests but answered 10" in p for p in problems), problems


def test_a_restarted_router_is_held_only_to_what_it_saw():
    restarted = {**LEDGER, "received": 4, "answered": {"ok": 2, "dropped": 2}, "router_restarts": 1}
    assert ledger_mismatches(restarted, {"sent": 10, "ok": 4, "late": 2, "dropped": 3, "failed": 1,
                                         "stage_failed": 1}) == []
    assert ledger_mismatches({**restarted, "received": 12}, {"sent": 10, "ok": 10})  # never more than sent


# --- the stage servers' own counts --------------------------------------------------------------
# LEDGER's run: 10 received; 1 dropped at the detector's queue, so 9 entered it and it served 9;
# 2 dropped at the classifier's queue and 1 failed there, so it served 6: the router's 6 ok answers.
STAGES = {**LEDGER, "served_by_stage": {"detector": 9, "classifier": 6}}
RECORDS = {"sent": 10, "ok": 4, "late": 2, "dropped": 3, "failed": 1, "stage_failed": 1}


def test_stage_counts_that_chain_with_the_routers_have_no_mismatch():
    assert ledger_mismatches(STAGES, RECORDS) == []


def test_a_stage_that_served_a_request_the_router_did_not_account_for_is_named():
    problems = ledger_mismatches({**STAGES, "served_by_stage": {"detector": 10, "classifier": 6}}, RECORDS)
    assert any("stage detector served 10" in p and "is 9" in p for p in problems), problems
    assert any("stage classifier served 6" in p and "stage detector served 10" in p for p in problems), problems


def test_a_last_stage_count_that_differs_from_the_ok_answers_is_found():
    problems = ledger_mismatches({**STAGES, "served_by_stage": {"detector": 9, "classifier": 5}}, RECORDS)
    assert any("last stage served 5" in p and "answered 6 ok" in p for p in problems), problems


def test_a_stage_process_that_restarted_lost_its_counts_so_they_are_not_held_against_the_router():
    wrong = {**STAGES, "served_by_stage": {"detector": 4, "classifier": 2}}
    assert ledger_mismatches(wrong, RECORDS) != []
    assert ledger_mismatches({**wrong, "stage_restarts": 1}, RECORDS) == []


def test_the_stage_counts_are_read_from_each_stages_servers():
    from ipa.monitoring.router_ledger import served_by_stage
    text = ('ipa_stage_items_total{stage="detector",variant="a"} 4.0\n'
            'ipa_stage_items_total{stage="detector",variant="b"} 5.0\n'
            'ipa_stage_requests_total{stage="detector",variant="a",code="200"} 3.0\n')
    assert served_by_stage({"detector": text, "classifier": 'ipa_stage_items_total{stage="classifier",variant="c"} 6\n'}) \
        == {"detector": 9, "classifier": 6}
