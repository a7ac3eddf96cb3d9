"""A chat: messages go to the server, which renders them with the model's chat template.
The conversation history travels with every request.

    python client/chat.py [host:port]              # default localhost:8000 (`make serve`)
"""

import sys

from tritonllm.client import Client

url = sys.argv[1] if len(sys.argv) > 1 else "localhost:8000"
messages = [{"role": "system", "content": "You are a concise assistant."}]

with Client(url=url) as client:
    for question in ("What is the capital of France?", "And what is the capital of Italy?"):
        messages.append({"role": "user", "content": question})
        reply = client.chat(messages, max_tokens=32).text
        messages.append({"role": "assistant", "content": reply})
        print(f"user:      {question}\nassistant: {reply}\n")
