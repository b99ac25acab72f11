"""The per-request record every backend returns and every run folder's numbers come from.

One row per request the workload intended to send, whatever happened to it:

* ``id``: its index in the workload's send times;
* ``intended_s``, ``sent_s``, ``done_s``: when it was due, sent and answered, seconds from the
  run's start (``done_s`` empty when no answer came);
* ``status``: one of ``STATUSES``: ``ok`` (answered within the SLA), ``late`` (answered after
  it), ``dropped`` (answered with a drop reply at the drop limit), ``failed`` (anything else,
  unanswered included);
* ``latency_s``: ``done_s - intended_s``, so a load generator that falls behind is charged;
* ``detail``: why a request was dropped or failed, empty otherwise.
"""
REQUEST_COLUMNS = ("id", "intended_s", "sent_s", "done_s", "status", "latency_s", "detail")
STATUSES = ("ok", "late", "dropped", "failed")
