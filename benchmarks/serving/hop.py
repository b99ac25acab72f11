"""One HTTP hop between two processes, as the router's to a stage: a checkout's
ipa.serving.http client against its server (or, with SERVER_TREE=DIR, another checkout's
server), a small JSON body, sequential requests 2 ms apart (each wakes an idle peer, as light
traffic does). Prints the round trip's p50 and p99 over 3,000 requests.

    python benchmarks/serving/hop.py TREE LABEL            # e.g. a worktree of an older commit
    SERVER_TREE=OTHER python benchmarks/serving/hop.py TREE LABEL
"""
import asyncio, sys, time, subprocess, os
tree, mode = sys.argv[1], sys.argv[2]
sys.path.insert(0, tree)
from ipa.serving import http
BODY = b'{"outputs":[{"name":"output","shape":[1,1],"datatype":"FP32","data":[3.0]}]}'
if mode == "server":
    async def handler(req):
        return http.Response(200, BODY)
    async def main():
        server = await http.serve(handler, "127.0.0.1", int(sys.argv[3]))
        await asyncio.sleep(3600)
    asyncio.run(main()); sys.exit()
port = 18000 + os.getpid() % 1000
p = subprocess.Popen([sys.executable, __file__, os.environ.get("SERVER_TREE", tree), "server", str(port)])
async def main():
    client = http.Client("127.0.0.1", port)
    body = b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}'
    for i in range(100):
        try:
            await client.request("GET", "/x"); break
        except Exception:
            await asyncio.sleep(0.1)
    for _ in range(200):
        await client.request("POST", "/v2/models/x/infer", body)
    ts = []
    for _ in range(3000):
        t = time.perf_counter()
        await client.request("POST", "/v2/models/x/infer", body)
        ts.append(time.perf_counter() - t)
        await asyncio.sleep(0.002)  # spaced, like 50 rps traffic: each request wakes an idle peer
    ts.sort()
    print(f"{mode}: p50 {ts[len(ts)//2]*1e3:.3f} ms  p99 {ts[int(len(ts)*.99)]*1e3:.3f} ms")
try:
    asyncio.run(main())
finally:
    p.kill()
