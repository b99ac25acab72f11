"""Open-loop replay of intended send times with Locust (run in its own process: ``import locust``
monkey-patches the interpreter with gevent).

Locust is closed-loop by design (a user waits for its response); here one user runs a dispatcher
greenlet that sleeps until each intended send time and spawns the request into a gevent pool,
so a slow response never delays the next send. Every request is logged by this process
(intended, sent, done, HTTP status, error code) to a CSV; Locust's bucketed statistics are not
used for latency.

Handshake with the orchestrator: write ``--ready-file`` when Locust is loaded, then wait for
``--start-file`` holding t0 (epoch seconds) and send request i at t0 + intended_i. SIGTERM or
SIGINT (a run cut short) stops the replay at once: the log is written with what was sent so far
(requests in flight and requests never sent are rows too, each saying so), and the process exits.

Each request carries one tensor of ``--input-elements`` FP32 values as binary data (the first
stage's real input size, ipa.pipelines.wire).

Run: ``python -m ipa.loadgen.replay --url URL --path /v2/models/P/infer --input-elements N
--send-times times.txt --out log.csv --ready-file R --start-file S``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import sys
import time

import gevent
import gevent.pool
from locust import events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.exception import StopUser

from ipa.loadgen import STOPPED_IN_FLIGHT, STOPPED_UNSENT

COLUMNS = ("id", "intended_s", "sent_s", "done_s", "http_status", "error")


def _error_code(body: bytes | None) -> str:
    if not body:
        return ""
    try:
        return str(json.loads(body).get("error", ""))[:300]
    except Exception:
        return body[:120].decode("latin-1", "replace")


def build_user(args, times: list[float], t0_box: list[float], rows: list, sent_at: list):
    # one request of the pipeline's real input size (ipa.pipelines.wire), as binary tensor data:
    # what Triton's clients and perf_analyzer send by default
    raw = bytes(4 * args.input_elements)
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, args.input_elements], "datatype": "FP32",
                                   "parameters": {"binary_data_size": len(raw)}}]}).encode()
    body = head + raw
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(head))}

    class Replay(FastHttpUser):
        host = args.url
        concurrency = args.connections  # connections in the client's pool, shared by all greenlets
        network_timeout = args.timeout_s
        connection_timeout = 5.0
        max_retries = 0

        def one(self, i: int, intended: float) -> None:
            t0 = t0_box[0]
            sent = time.time() - t0
            sent_at[i] = sent
            status, err = 0, ""
            try:
                with self.client.post(args.path, data=body, headers=headers,
                                      catch_response=True, name="infer") as resp:
                    status = int(resp.status_code or 0)
                    if status != 200:
                        err = _error_code(resp.content) or str(resp.error or "")
                    resp.success()  # outcomes are classified from this log, not Locust's stats
            except Exception as e:  # a broken connection is a failed request, never a lost one
                err = f"{type(e).__name__}: {e}"
            rows[i] = (i, intended, sent, time.time() - t0, status, err)

        @task
        def replay(self) -> None:
            pool = gevent.pool.Pool(args.pool)
            t0 = t0_box[0]
            for i, t in enumerate(times):
                delay = t0 + t - time.time()
                if delay > 0:
                    gevent.sleep(delay)
                pool.spawn(self.one, i, t)
            end = t0 + (times[-1] if times else 0.0) + args.drain_s
            pool.join(timeout=max(0.0, end - time.time()))
            pool.kill(block=True, timeout=2)
            write_rows(args.out, times, rows)
            gevent.spawn(self.environment.runner.quit)
            raise StopUser()

    return Replay


def write_rows(path: str, times: list[float], rows: list, sent_at: list | None = None) -> None:
    """The per-request log, one row per intended send. ``sent_at`` is given when the replay was
    stopped by a signal: unanswered rows then say whether the request was in flight or never sent."""
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for i, t in enumerate(times):
            r = rows[i]
            if r is not None:
                w.writerow((r[0], f"{r[1]:.6f}", f"{r[2]:.6f}", f"{r[3]:.6f}", r[4], r[5]))
            elif sent_at is None:  # never answered within the drain time: failed, and said so
                w.writerow((i, f"{t:.6f}", "", "", 0, "no response before the end of the run"))
            elif sent_at[i] is not None:
                w.writerow((i, f"{t:.6f}", f"{sent_at[i]:.6f}", "", 0, STOPPED_IN_FLIGHT))
            else:
                w.writerow((i, f"{t:.6f}", "", "", 0, STOPPED_UNSENT))
    os.replace(tmp, path)


def stop_on_signal(out: str, times: list[float], rows: list, sent_at: list) -> None:
    """On SIGTERM/SIGINT write the log now and exit. os._exit because nothing else needs cleaning
    up (the log is written atomically above) and Locust's greenlets must not keep sending."""
    def handler(signum: int) -> None:
        if not os.path.exists(out):  # else the replay had ended and its log is the full account
            write_rows(out, times, rows, sent_at)
        print(f"stopped by signal {signum}: {sum(s is not None for s in sent_at)} of {len(times)} requests "
              f"sent, {sum(r is not None for r in rows)} answered", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        # gevent runs the handler in a greenlet of its own: cooperative, so no request greenlet
        # runs while the log is written
        gevent.signal_handler(signum, handler, signum)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Open-loop Locust replay of intended send times")
    ap.add_argument("--url", required=True, help="base URL of the router")
    ap.add_argument("--path", required=True, help="infer path, e.g. /v2/models/video/infer")
    ap.add_argument("--send-times", required=True, help="file with one intended send time (s) per line")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--start-file", required=True)
    ap.add_argument("--input-elements", type=int, required=True,
                    help="FP32 elements of one request (the first stage's input size)")
    ap.add_argument("--drain-s", type=float, default=30.0, help="wait this long after the last send for answers")
    ap.add_argument("--timeout-s", type=float, default=120.0)
    ap.add_argument("--pool", type=int, default=20000, help="most requests in flight at once")
    ap.add_argument("--connections", type=int, default=1000)
    args = ap.parse_args(argv)
    with open(args.send_times) as f:
        times = [float(x) for x in f.read().split()]
    rows: list = [None] * len(times)
    sent_at: list = [None] * len(times)
    t0_box = [0.0]
    stop_on_signal(args.out, times, rows, sent_at)
    env = Environment(user_classes=[build_user(args, times, t0_box, rows, sent_at)], events=events, host=args.url)
    runner = env.create_local_runner()
    with open(args.ready_file, "w") as f:
        f.write(str(os.getpid()))
    while not os.path.exists(args.start_file):
        gevent.sleep(0.005)
    with open(args.start_file) as f:
        t0_box[0] = float(f.read())
    runner.start(1, spawn_rate=1)
    runner.greenlet.join()
    if not os.path.exists(args.out):  # the user died before writing: still account every request
        write_rows(args.out, times, rows)
    print(f"replayed {len(times)} requests, {sum(r is not None for r in rows)} answered", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
