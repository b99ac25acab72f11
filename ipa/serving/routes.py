"""The HTTP routes of every server here (router and stage), defined once.

Both serve one V2 model (the router its pipeline, a stage its stage) and the same side routes:
the Prometheus scrape, ``/admin/status`` and ``/admin/configuration``. What differs is what each
answers, so a server is anything with the members of ``Served``, and ``dispatch`` owns the paths,
the methods and the unknown-model and not-found answers.
"""
from __future__ import annotations

from typing import Protocol

from ipa.serving import v2
from ipa.serving.http import Request, Response
from ipa.serving.metrics import CONTENT_TYPE, Registry


class Served(Protocol):
    model: str  # the V2 model this server serves
    description: str  # how its unknown-model answer names it ("the pipeline", "this stage")
    server_name: str  # the name in server metadata (GET /v2)
    registry: Registry

    def server_ready(self) -> Response: ...
    def model_ready(self) -> Response: ...
    def model_metadata(self) -> dict: ...
    def status(self) -> dict: ...
    def count_refused(self, code: str) -> None: ...
    async def configure(self, body: bytes) -> Response: ...
    async def infer(self, req: Request) -> Response: ...


async def dispatch(server: Served, req: Request) -> Response:
    path = req.path.rstrip("/")
    if path == "/v2/health/live":
        return v2.ok({"live": True})
    if path == "/v2/health/ready":
        return server.server_ready()
    if path == "/metrics":
        return Response(200, server.registry.render(), CONTENT_TYPE)
    if path == "/admin/status":
        return v2.ok(server.status())
    if path == "/admin/configuration" and req.method == "POST":
        return await server.configure(req.body)
    if path == "/v2":
        return v2.ok({"name": server.server_name, "version": "1", "extensions": [v2.BINARY_EXTENSION]})
    route = v2.model_route(req.method, path)
    if route is not None:
        model, action = route
        if model != server.model:
            server.count_refused("unknown-model")
            return v2.error("unknown-model", f"model {model!r} is not served here; {server.description} "
                                             f"is {server.model!r}")
        if action == "metadata":
            return v2.ok(server.model_metadata())
        if action == "ready":
            return server.model_ready()
        if action == "infer":
            return await server.infer(req)
    return v2.error("not-found", f"no route for {req.method} {req.path}")
