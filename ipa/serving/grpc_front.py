"""The router's gRPC front: the Open Inference Protocol's ``GRPCInferenceService`` (ServerLive,
ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer) on grpc.aio, in the router's
own event loop.

A ModelInfer request is put in the REST form (``inputs`` with ``shape``/``datatype`` and either
typed ``contents`` or one ``raw_input_contents`` entry per input) and checked by the same
``v2.infer_input`` as a REST request, then goes down the same path (``Router.serve``): both
fronts refuse the same requests with the same codes, count them alike, and queue, batch and drop
alike. Errors are gRPC statuses whose details start with the V2 code (``bad-shape: ...``).

The generated messages (``ipa.serving.proto``) declare the protocol's own package, ``inference``,
as every V2 client does; protobuf allows one definition of a name per process, so this module is
imported by the router process only, never beside a client library's copy of the protocol.
"""
from __future__ import annotations

import time

import grpc
import numpy as np

from ipa.serving import v2
from ipa.serving.proto import grpc_predict_v2_pb2 as pb
from ipa.serving.proto import grpc_predict_v2_pb2_grpc as pb_grpc

# how each V2 error code is answered over gRPC
STATUS = {"bad-json": grpc.StatusCode.INVALID_ARGUMENT, "bad-request": grpc.StatusCode.INVALID_ARGUMENT,
          "bad-shape": grpc.StatusCode.INVALID_ARGUMENT, "bad-datatype": grpc.StatusCode.INVALID_ARGUMENT,
          "unknown-model": grpc.StatusCode.NOT_FOUND, "not-found": grpc.StatusCode.NOT_FOUND,
          v2.DROPPED: grpc.StatusCode.DEADLINE_EXCEEDED, v2.STAGE_FAILURE: grpc.StatusCode.UNAVAILABLE,
          "not-ready": grpc.StatusCode.UNAVAILABLE}
# the typed-contents field that carries each datatype
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
            "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
            "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
            "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def request_document(request: pb.ModelInferRequest) -> tuple[dict, bytes]:
    """A ModelInfer request in the REST form ``v2.infer_input`` checks: (document, binary blob)."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise v2.V2Error("bad-request", f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} "
                                        "inputs: with raw contents every input needs one, in order")
    inputs = []
    for i, t in enumerate(request.inputs):
        doc = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if raw:
            doc["parameters"] = {"binary_data_size": len(raw[i])}
        else:
            field = CONTENTS.get(t.datatype)
            doc["data"] = list(getattr(t.contents, field)) if field else []
        inputs.append(doc)
    return {"id": request.id, "inputs": inputs}, b"".join(raw)


def infer_response(model: str, answer) -> pb.ModelInferResponse:
    out = answer.output
    return pb.ModelInferResponse(
        model_name=model, id=answer.request_id,
        outputs=[pb.ModelInferResponse.InferOutputTensor(name=out.name, datatype=out.datatype, shape=list(out.shape))],
        raw_output_contents=[np.asarray(out.data, dtype=v2.NUMPY_DTYPES[out.datatype]).tobytes()],
        parameters={"latency_us": pb.InferParameter(int64_param=round(answer.latency_s * 1e6)),
                    "compute_us": pb.InferParameter(int64_param=round(answer.compute_s * 1e6))})


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The six calls, answered from the router's state."""

    def __init__(self, router):
        self.router = router

    @property
    def pipeline(self) -> str:
        return self.router.spec.pipeline

    async def _abort(self, context, error: v2.V2Error):
        await context.abort(STATUS.get(error.code, grpc.StatusCode.INVALID_ARGUMENT), str(error))

    async def _model(self, name: str, context) -> None:
        if name != self.pipeline:
            await self._abort(context, self.router.refused(v2.V2Error(
                "unknown-model", f"model {name!r} is not served here; the pipeline is {self.pipeline!r}")))

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=True)  # the router's own readiness, as on REST

    async def ModelReady(self, request, context):
        await self._model(request.name, context)
        return pb.ModelReadyResponse(ready=self.router.ready())

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="ipa-bench router", version="1", extensions=[v2.BINARY_EXTENSION])

    async def ModelMetadata(self, request, context):
        await self._model(request.name, context)
        meta = v2.model_metadata(self.pipeline, ["1"], "ipa-pipeline")
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in meta["inputs"]],
            outputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in meta["outputs"]])

    async def ModelInfer(self, request, context):
        arrived = time.monotonic()
        await self._model(request.model_name, context)
        try:
            doc, blob = request_document(request)
            tensor = v2.infer_input(doc, blob)
        except v2.V2Error as e:
            await self._abort(context, self.router.refused(e))
        try:
            answer = await self.router.serve(tensor, request.id, arrived)
        except v2.V2Error as e:
            await self._abort(context, e)
        if answer.outcome != "ok":
            await self._abort(context, v2.V2Error(answer.code, str(answer.payload)))
        return infer_response(self.pipeline, answer)


async def start(router, host: str, port: int) -> grpc.aio.Server:
    """The gRPC front of ``router`` listening on host:port (started; stop it with ``stop(grace)``)."""
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(router), server)
    if server.add_insecure_port(f"{host}:{port}") == 0:
        raise OSError(f"gRPC cannot listen on {host}:{port}")
    await server.start()
    return server
