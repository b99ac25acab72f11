"""The Open Inference Protocol (KServe V2) REST payloads: parsing, checking, replying.

Requests carry ``inputs: [{name, shape, datatype, data}]`` with row-major ``data``; the first
dimension is the batch. The binary tensor data extension is spoken both ways: a request whose
``Inference-Header-Content-Length`` header gives the JSON part's length carries the tensors with
``parameters.binary_data_size`` as raw little-endian bytes after it, in input order; a request
asking for an output with ``parameters.binary_data`` (or ``parameters.binary_data_output``) gets
it the same way (what Triton's clients and perf_analyzer send by default). Errors are non-2xx replies with ``{"error": "..."}``; the error text
starts with a short code (``bad-json``, ``bad-shape``, ``bad-datatype``, ``unknown-model``,
``drop-limit-violation``, ``stage-failure``) so clients and metrics can classify it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ipa.serving.http import Response

try:  # orjson is several times faster on the JSON tensors; plain json works the same
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    loads = orjson.loads
except ImportError:  # pragma: no cover
    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    loads = json.loads

BINARY_HEADER = "inference-header-content-length"  # request headers arrive lower-cased
BINARY_EXTENSION = "binary_tensor_data"
# the V2 datatypes as numpy dtypes, little-endian on the wire
NUMPY_DTYPES = {"BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1",
                "INT16": "<i2", "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
NUMERIC = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64"}
DATATYPES = NUMERIC | {"BYTES"}
INPUT_NAME = "input"
INPUT_DATATYPE = "FP32"

# the two answers that end a request the pipeline accepted without a result: the load generator
# and the router's ledger classify replies by them
DROPPED = "drop-limit-violation"  # past the drop limit before or after a stage
STAGE_FAILURE = "stage-failure"  # a stage endpoint failed the batch
# error codes and the HTTP status each is answered with
STATUS = {"bad-json": 400, "bad-request": 400, "bad-shape": 400, "bad-datatype": 400, "unknown-model": 404,
          "not-found": 404, DROPPED: 503, STAGE_FAILURE: 502, "not-ready": 503}


class V2Error(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code

    def response(self) -> Response:
        return error(self.code, str(self).split(": ", 1)[1])


def error(code: str, message: str) -> Response:
    return Response(STATUS.get(code, 400), dumps({"error": f"{code}: {message}"}))


def ok(payload: Any) -> Response:
    return Response(200, dumps(payload))


def error_code(body: bytes) -> str:
    """The code of a V2 error body, or '' if it is not one."""
    try:
        text = loads(body).get("error", "")
    except Exception:
        return ""
    return str(text).split(":", 1)[0] if text else ""


@dataclass(frozen=True)
class Tensor:
    """A V2 tensor; ``data`` is flat, row-major, as a numpy array of the datatype (lists are
    converted), so real-size payloads are sliced, joined and put on the wire without a Python
    object per element."""

    name: str
    shape: tuple[int, ...]
    datatype: str
    data: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "data", np.asarray(self.data, NUMPY_DTYPES[self.datatype]).reshape(-1))

    @property
    def batch(self) -> int:
        return self.shape[0] if self.shape else 1

    def rows(self) -> list[np.ndarray]:
        """Split along the batch dimension (views, not copies)."""
        if not self.shape:
            return [self.data]
        return list(self.data.reshape(self.shape[0], -1))

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "datatype": self.datatype, "data": self.data.tolist()}

    def to_bytes(self) -> bytes:
        return self.data.tobytes()


def stack(name: str, datatype: str, rows: list[np.ndarray]) -> Tensor:
    """Join per-request rows (each of the same length) into one batch tensor."""
    width = len(rows[0]) if rows else 0
    if any(len(r) != width for r in rows):
        raise V2Error("bad-shape", f"cannot batch rows of different lengths {sorted({len(r) for r in rows})}")
    data = np.concatenate(rows) if rows else np.zeros(0)
    return Tensor(name, (len(rows), width), datatype, data)


def _flatten(data: Any) -> list:
    # the spec allows nested row-major arrays as well as flat ones
    if isinstance(data, list) and data and isinstance(data[0], list):
        out: list = []
        for d in data:
            out.extend(_flatten(d))
        return out
    return data


def _split_binary(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON part, binary part) of a request body; all JSON without the binary extension's header."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 <= n <= len(body):
        raise V2Error("bad-request", f"Inference-Header-Content-Length {header_length!r} is not a length within "
                                     f"the {len(body)}-byte body")
    return body[:n], body[n:]


def _binary_parts(inputs: list, blob: bytes) -> dict[int, bytes]:
    """Each binary input's bytes (by position in ``inputs``): the blob cut in input order by their
    ``binary_data_size``, which must add up to the blob exactly."""
    parts, offset = {}, 0
    for i, t in enumerate(inputs):
        size = ((t.get("parameters") or {}) if isinstance(t, dict) else {}).get("binary_data_size")
        if size is None:
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(blob):
            raise V2Error("bad-request", f"input {i}: binary_data_size {size!r} does not fit the "
                                         f"{len(blob) - offset} binary bytes left")
        parts[i] = blob[offset:offset + size]
        offset += size
    if offset != len(blob):
        raise V2Error("bad-request", f"{len(blob) - offset} binary bytes after the last binary input: the header "
                                     "length or the tensor sizes disagree with the body")
    return parts


def parse_infer(body: bytes, *, input_name: str = INPUT_NAME, datatype: str = INPUT_DATATYPE,
                header_length: str | None = None) -> tuple[Tensor, dict]:
    """The one input tensor of an infer request (checked), and the whole request document.
    ``header_length``: the request's Inference-Header-Content-Length (the binary extension)."""
    doc, blob = _document(body, header_length, "request")
    return infer_input(doc, blob, input_name=input_name, datatype=datatype), doc


def _document(body: bytes, header_length: str | None, what: str) -> tuple[Any, bytes]:
    """(JSON document, binary part) of a request or response body."""
    head, blob = _split_binary(body, header_length)
    try:
        return loads(head), blob
    except Exception as e:
        raise V2Error("bad-json", f"{what} body is not JSON ({type(e).__name__})") from None


def _from_binary(kind: str, name: str, shape: list, datatype: str, raw: bytes) -> Tensor:
    """An input or output (``kind``) from its raw bytes, which must be exactly what the shape and
    datatype need."""
    need = math.prod(shape) * _itemsize(datatype)
    if len(raw) != need:
        raise V2Error("bad-shape", f"{kind} {name!r}: shape {shape} of {datatype} needs {need} bytes, "
                                   f"binary_data_size is {len(raw)}")
    return Tensor(name, tuple(shape), datatype, np.frombuffer(raw, NUMPY_DTYPES[datatype]))


def _binary_meta(tensor: Tensor) -> tuple[dict, bytes]:
    """A tensor's JSON part and raw bytes under the binary extension."""
    raw = tensor.to_bytes()
    return ({"name": tensor.name, "shape": list(tensor.shape), "datatype": tensor.datatype,
             "parameters": {"binary_data_size": len(raw)}}, raw)


def infer_input(doc: Any, blob: bytes = b"", *, input_name: str = INPUT_NAME,
                datatype: str = INPUT_DATATYPE) -> Tensor:
    """The checked input tensor of a request document (REST JSON, or a gRPC request put in the
    same form): every front refuses the same requests with the same codes. ``blob``: the binary
    tensors, cut by each input's ``parameters.binary_data_size``."""
    if not isinstance(doc, dict):
        raise V2Error("bad-request", "request body must be a JSON object with 'inputs'")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Error("bad-request", "'inputs' must be a non-empty list of tensors")
    binary = _binary_parts(inputs, blob)
    index = next((i for i, t in enumerate(inputs) if isinstance(t, dict) and t.get("name") == input_name), None)
    if index is None:
        raise V2Error("bad-request", f"no input named {input_name!r}")
    tensor = inputs[index]
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise V2Error("bad-shape", f"input {input_name!r}: 'shape' must be a list of non-negative integers, "
                                   f"got {shape!r}")
    if len(shape) != 2 or shape[0] < 1:
        raise V2Error("bad-shape", f"input {input_name!r}: expected shape [batch >= 1, features], got {shape}")
    dt = tensor.get("datatype")
    if dt not in DATATYPES:
        raise V2Error("bad-datatype", f"input {input_name!r}: unknown datatype {dt!r}")
    if dt != datatype:
        raise V2Error("bad-datatype", f"input {input_name!r}: expected datatype {datatype}, got {dt}")
    if index in binary:
        return _from_binary("input", input_name, shape, dt, binary[index])
    data = _flatten(tensor.get("data"))
    if not isinstance(data, list):
        raise V2Error("bad-request", f"input {input_name!r}: 'data' must be a list")
    if len(data) != math.prod(shape):
        raise V2Error("bad-shape", f"input {input_name!r}: shape {shape} needs {math.prod(shape)} values, "
                                   f"got {len(data)}")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in data):
        raise V2Error("bad-datatype", f"input {input_name!r}: {datatype} data must be numbers")
    return Tensor(input_name, tuple(shape), dt, data)


def binary_infer_request(tensor: Tensor, request_id: str = "") -> tuple[bytes, dict[str, str]]:
    """An infer request with the tensor as binary data, asking for binary outputs: the body and
    the headers that go with it."""
    meta, raw = _binary_meta(tensor)
    doc: dict[str, Any] = {"inputs": [meta], "parameters": {"binary_data_output": True}}
    if request_id:
        doc["id"] = request_id
    head = dumps(doc)
    return head + raw, {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


def _itemsize(datatype: str) -> int:
    return np.dtype(NUMPY_DTYPES[datatype]).itemsize


def wants_binary(doc: dict, output: str = "output") -> bool:
    """Whether the request asked for ``output`` as binary data (per output, or for all)."""
    for o in doc.get("outputs") or []:
        if isinstance(o, dict) and o.get("name") == output:
            return bool((o.get("parameters") or {}).get("binary_data"))
    return bool((doc.get("parameters") or {}).get("binary_data_output"))


def infer_response(model: str, tensor: Tensor, request_id: str = "", parameters: dict | None = None,
                   version: str = "", binary: bool = False) -> Response:
    out, raw = _binary_meta(tensor) if binary else (tensor.to_dict(), b"")
    doc: dict[str, Any] = {"model_name": model, "id": request_id, "outputs": [out]}
    if version:
        doc["model_version"] = version
    if parameters:
        doc["parameters"] = parameters
    if not binary:
        return ok(doc)
    head = dumps(doc)
    return Response(200, head + raw, "application/octet-stream", {"Inference-Header-Content-Length": str(len(head))})


def output_tensor(doc: dict, name: str = "output", blob: bytes = b"") -> Tensor:
    """An output of a response document; ``blob``: its binary part (the binary extension), cut by
    each output's ``parameters.binary_data_size`` in output order."""
    outputs = doc.get("outputs", [])
    binary = _binary_parts(outputs, blob)
    for i, t in enumerate(outputs):
        if t.get("name") == name:
            if i in binary:
                return _from_binary("output", name, t["shape"], t["datatype"], binary[i])
            return Tensor(name, tuple(t["shape"]), t["datatype"], _flatten(t["data"]))
    raise V2Error("bad-request", f"response has no output named {name!r}")


def parse_infer_response(body: bytes, header_length: str | None = None, name: str = "output") -> tuple[Tensor, dict]:
    """The named output of an infer response (JSON, or with the binary extension when
    ``header_length`` is the response's Inference-Header-Content-Length), and its document."""
    doc, blob = _document(body, header_length, "response")
    return output_tensor(doc, name, blob), doc


MODEL_ACTIONS = {("GET", ""): "metadata", ("GET", "ready"): "ready", ("POST", "infer"): "infer"}


def model_route(method: str, path: str) -> tuple[str, str | None] | None:
    """A request under ``/v2/models/`` as (model name, action): ``metadata`` (GET
    /v2/models/{name}), ``ready`` (GET .../ready) or ``infer`` (POST .../infer), action None for
    anything else there. None for a path outside ``/v2/models/``."""
    if not path.startswith("/v2/models/"):
        return None
    name, _, rest = path[len("/v2/models/"):].partition("/")
    return name, MODEL_ACTIONS.get((method, rest))


def model_metadata(name: str, versions: list[str], platform: str, width: int = -1, parameters: dict | None = None) -> dict:
    doc = {"name": name, "versions": versions, "platform": platform,
           "inputs": [{"name": INPUT_NAME, "datatype": INPUT_DATATYPE, "shape": [-1, width]}],
           "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, -1]}]}
    if parameters:
        doc["parameters"] = parameters
    return doc
