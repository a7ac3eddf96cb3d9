"""Generate a completion over HTTP: the simplest use of the client.

    python client/generate_http.py [host:port]     # default localhost:8000 (`make serve`)
"""

import sys

from tritonllm.client import Client

url = sys.argv[1] if len(sys.argv) > 1 else "localhost:8000"

with Client(url=url) as client:
    completion = client.generate("The capital of France is", max_tokens=16)

print(repr(completion.text))
print(f"{completion.num_input_tokens} prompt tokens -> {completion.num_output_tokens} new tokens "
      f"in {completion.e2e_s:.2f} s")
