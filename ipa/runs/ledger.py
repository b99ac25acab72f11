"""The router's ledger of a live run's requests (``ipa.monitoring.router_ledger``) against the
run's records.

The records (``requests.csv``) come from the load generator's log, one row per intended send, so
they conserve requests by construction; the router counts on its own what reached it and how it
answered. ``check_run_folder`` holds the two against each other (``ledger_mismatches``):

* every 200 the records hold came from the router, and so did every drop and stage failure:
  the router's ok, dropped and failed answers equal the records' completed, dropped and
  stage-failure counts;
* what the router received is what was sent, and it answered all of it;
* its per-stage drops and failures add up to its dropped and failed answers.

* where the stage servers' own counts were read (``served_by_stage``, pipeline order): what each
  stage served is what entered it (the router's receipts for the first, what the stage before
  served for the others) less the router's drops and failures at it, and the last stage served
  exactly the router's ok answers.

These are exact when every failure in the records is a router answer. A failure without one (a
refused connection, a client that gave up waiting) may or may not have reached the router, which
may answer it after the records were closed; then only bounds hold: the router's answers are at
least the records', and what it received beyond those is at most the failures without an answer.
A router that restarted counts only since then; then only "received <= sent" is checked.
"""
from __future__ import annotations


def ledger_mismatches(router: dict, records: dict[str, int]) -> list[str]:
    """Where the router's counts (``RouterCounts.as_json``) and the run's records disagree.

    ``records``: ``sent``, the statuses (``ok``, ``late``, ``dropped``, ``failed``) and
    ``stage_failed``, the failed requests whose answer was the router's stage-failure reply (the
    other failures never had a router answer: refused connections, client time-outs).
    """
    answered = router.get("answered") or {}
    ok, dropped, failed = (int(answered.get(k, 0)) for k in ("ok", "dropped", "failed"))
    received = int(router.get("received", -1))
    sent, dropped_records = records["sent"], records.get("dropped", 0)
    completed = records.get("ok", 0) + records.get("late", 0)
    stage_failed = records.get("stage_failed", 0)
    client_failed = records.get("failed", 0) - stage_failed
    restarted = bool(router.get("router_restarts"))  # its counters start again at the restart
    # a client that gave up leaves the router with answers the records do not hold: then only
    # the bounds are exact
    exact = client_failed == 0 and not restarted
    out = []
    for what, theirs, mine in (("ok answers", ok, completed), ("drop answers", dropped, dropped_records),
                               ("stage-failure answers", failed, stage_failed)):
        wrong = theirs != mine if exact else (theirs < mine and not restarted)
        if wrong:
            out.append(f"ledger: the router gave {theirs} {what}, the records hold {mine}")
    unexplained = received - (completed + dropped_records + stage_failed)
    if received > sent:
        out.append(f"ledger: the router received {received} requests, more than the {sent} sent")
    elif not restarted and unexplained > client_failed:
        out.append(f"ledger: the router received {received} requests; the records hold {completed} completed, "
                   f"{dropped_records} dropped and {stage_failed} stage failures, and only "
                   f"{client_failed} failures without a router answer to account for the rest")
    if exact:
        if ok + dropped + failed != received:
            out.append(f"ledger: the router received {received} requests but answered {ok + dropped + failed} "
                       f"(ok {ok}, dropped {dropped}, failed {failed})")
        if sent != received:
            out.append(f"ledger: {sent} requests sent, the router received {received}, and no failure "
                       "without a router answer accounts for the difference")
        for what, key, total in (("drops", "dropped_by_stage", dropped), ("failures", "failed_by_stage", failed)):
            by_stage = sum(int(v) for v in (router.get(key) or {}).values())
            if by_stage != total:
                out.append(f"ledger: the router's per-stage {what} {router.get(key)} add up to {by_stage}, "
                           f"its answers to {total}")
        if router.get("served_by_stage") is not None and not router.get("stage_restarts"):
            out.extend(stage_mismatches(router, received, ok))
    return out


def stage_mismatches(router: dict, received: int, ok: int) -> list[str]:
    """Where the stage servers' counts of what they served break the chain of the router's counts."""
    out = []
    entered, source = received, "the router received"
    for stage, served in router["served_by_stage"].items():
        dropped = int((router.get("dropped_by_stage") or {}).get(stage, 0))
        failed = int((router.get("failed_by_stage") or {}).get(stage, 0))
        if served != entered - dropped - failed:
            out.append(f"ledger: stage {stage} served {served} requests by its own count; {source} {entered}, "
                       f"less the router's {dropped} drops and {failed} failures there, is {entered - dropped - failed}")
        entered, source = served, f"stage {stage} served"
    if entered != ok:
        out.append(f"ledger: the last stage served {entered} requests by its own count, the router answered {ok} ok")
    return out
