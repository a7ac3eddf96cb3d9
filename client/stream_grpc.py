"""Stream a completion over gRPC, printing text as the server generates it.

    python client/stream_grpc.py [host:port]       # default localhost:8001 (`make serve`)
"""

import sys

from tritonllm.client import Client

url = sys.argv[1] if len(sys.argv) > 1 else "localhost:8001"

with Client(protocol="grpc", url=url) as client:
    first = None
    for chunk in client.stream("Once upon a time, in a quiet village,", max_tokens=48):
        first = chunk.arrival_s if first is None else first
        print(chunk.text, end="", flush=True)  # deltas: their concatenation is the whole text
    print()

print(f"first text after {first:.2f} s, {chunk.index + 1} chunks in {chunk.arrival_s:.2f} s")
