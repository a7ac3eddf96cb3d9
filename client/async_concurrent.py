"""Send several requests at once from one AsyncClient; the server batches them in flight.

    python client/async_concurrent.py [host:port]  # default localhost:8000 (`make serve`)
"""

import asyncio
import sys
import time

from tritonllm.client import AsyncClient

PROMPTS = [
    "The capital of France is",
    "The largest planet in the solar system is",
    "Water boils at a temperature of",
    "The author of Hamlet is",
]


async def main(url: str) -> None:
    async with AsyncClient(url=url) as client:
        start = time.perf_counter()
        completions = await asyncio.gather(
            *(client.generate(prompt, max_tokens=24) for prompt in PROMPTS))
        elapsed = time.perf_counter() - start
    for prompt, completion in zip(PROMPTS, completions):
        print(f"{prompt!r} -> {completion.text!r}")
    tokens = sum(c.num_output_tokens for c in completions)
    print(f"{len(PROMPTS)} concurrent requests, {tokens} tokens in {elapsed:.2f} s "
          f"({tokens / elapsed:.1f} tokens/s)")


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "localhost:8000"))
