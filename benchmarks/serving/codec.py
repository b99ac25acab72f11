"""The V2 codec's cost per stage hop (router -> stage -> router) on a four-value payload, in one
checkout: the batch joined, the request built and parsed, the answer built and parsed; no sockets.
Trees before a0ed894 (JSON between router and stages, list-backed tensors) take the JSON branch,
so two trees compare in one session:

    python benchmarks/serving/codec.py OLD_TREE; python benchmarks/serving/codec.py NEW_TREE
"""
import sys, timeit, json
tree = sys.argv[1]; sys.path.insert(0, tree)
from ipa.serving import v2
req = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]}).encode()
t, doc = v2.parse_infer(req)
def hop():
    rows = t.rows()
    batch = v2.stack(v2.INPUT_NAME, v2.INPUT_DATATYPE, rows)
    if hasattr(v2, "binary_infer_request"):
        body, h = v2.binary_infer_request(batch)
        st, d = v2.parse_infer(body, header_length=h["Inference-Header-Content-Length"])
        out = v2.Tensor("output", (1, 1), "FP32", [1.0])
        r = v2.infer_response("s", out, "", {"compute_s": 0.01}, binary=True)
        n = r.headers["Inference-Header-Content-Length"]
        o, _ = v2.parse_infer_response(r.body, n)
    else:
        body = v2.infer_request(batch)
        st, d = v2.parse_infer(body)
        out = v2.Tensor("output", (1, 1), "FP32", [float(sum(row)) for row in st.rows()])
        r = v2.infer_response("s", out, "", {"compute_s": 0.01})
        o = v2.output_tensor(v2.loads(r.body))
    return o.rows()
n = 20000
best = min(timeit.repeat(hop, number=n, repeat=5)) / n
print(f"{tree}: {best*1e6:.1f} us per hop")
