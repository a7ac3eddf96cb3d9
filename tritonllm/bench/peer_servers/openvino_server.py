"""An OpenAI-compatible completions server on OpenVINO GenAI's continuous batching, for the
OpenVINO peer of ``tritonllm bench serving`` (``tritonllm/bench/openvino_peer.py``).

Run with the peer's own python (this file imports only the standard library and
``openvino_genai``, never tritonllm)::

    python openvino_server.py --model IR_DIR --port 8000 --threads 2

- ``GET /health``: 200 once the pipeline is compiled (the HTTP port opens only then).
- ``GET /v1/models``: the one model, named ``--served-model-name``.
- ``POST /v1/completions``: ``prompt`` (a string, or a list of one), ``max_tokens``,
  ``min_tokens``, ``ignore_eos``, ``temperature`` (0: greedy), ``top_p``, ``seed``, ``stream``
  and ``stream_options.include_usage``. Streamed as server-sent events: one chunk per engine
  step that made text (one token, or more where a character spans tokens), a last chunk with
  ``finish_reason``, a usage chunk (``prompt_tokens``, ``completion_tokens``) when asked, then
  ``data: [DONE]``.

One engine thread owns the ``ContinuousBatchingPipeline``: it adds the requests the HTTP threads
queued (``add_request`` with the prompt's token ids), calls ``step()`` while
``has_non_finished_requests()``, and after each step moves every request's new token ids
(``GenerationHandle.can_read()`` / ``read()``) to that request's queue. Each HTTP thread turns
its ids into text itself (see :class:`TextPieces`). A client that goes away has its request
cancelled (``GenerationHandle.cancel()``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openvino_genai

REPLACEMENT = "\ufffd"  # what the detokenizer yields for an incomplete UTF-8 sequence
RUNNING = openvino_genai.GenerationStatus.RUNNING
HANDOFF_S = 0.02  # the longest the engine waits for readers to write what a step made


class TextPieces:
    """The text of a growing token sequence, one piece per call of :meth:`add`.

    Each piece is the decoded window ``ids[start:]`` minus the decoded ``ids[start:emitted]``,
    where ``start`` is where the previous piece began: decoding from a few tokens back keeps the
    spacing that tokenizers put at word starts. A piece ending in an incomplete character is held
    back (empty result) until the tokens that complete it arrive; :meth:`flush` gives what is
    left at the end."""

    def __init__(self, decode) -> None:
        self._decode = decode
        self.ids: list[int] = []
        self._start = 0
        self._emitted = 0

    def add(self, new_ids) -> str:
        self.ids.extend(new_ids)
        return self._piece(final=False)

    def flush(self) -> str:
        return self._piece(final=True)

    def _piece(self, final: bool) -> str:
        if self._emitted == len(self.ids):
            return ""
        before = self._decode(self.ids[self._start:self._emitted]) if (
            self._emitted > self._start) else ""
        after = self._decode(self.ids[self._start:])
        if not final and (after.endswith(REPLACEMENT) or len(after) <= len(before)):
            return ""
        self._start, self._emitted = self._emitted, len(self.ids)
        return after[len(before):]


class Engine:
    """The pipeline, owned by one engine thread: HTTP threads :meth:`submit` a request and read
    its queue; the engine thread adds it, steps and distributes. A request's queue receives
    lists of new token ids, then ``("end", finish_reason)``; or an exception.

    ``step()`` holds the GIL while it runs, so a reader woken after a step would only get to
    run once the next step is over, a step late. After distributing, the engine thread waits
    instead (up to :data:`HANDOFF_S`) until every reader says :meth:`consumed` for what it got:
    each chunk is written as soon as the step that made it ends."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.tokenizer = pipeline.get_tokenizer()
        self._wake = threading.Condition()
        self._incoming: list = []
        self._cancelled: set[int] = set()
        self._ids = itertools.count()
        self._handed = threading.Condition()
        self._unread = 0  # items put in readers' queues and not yet consumed
        threading.Thread(target=self._run, name="engine", daemon=True).start()

    def submit(self, input_ids, config) -> tuple[int, queue.Queue]:
        out: queue.Queue = queue.Queue()
        with self._wake:
            request_id = next(self._ids)
            self._incoming.append((request_id, input_ids, config, out))
            self._wake.notify()
        return request_id, out

    def consumed(self) -> None:
        """A reader has acted on one item of its queue (written its chunk)."""
        with self._handed:
            self._unread = max(0, self._unread - 1)
            if not self._unread:
                self._handed.notify()

    def _hand_over(self, out: queue.Queue, item) -> None:
        with self._handed:
            self._unread += 1
        out.put(item)

    def cancel(self, request_id: int) -> None:
        with self._wake:
            self._cancelled.add(request_id)
            self._wake.notify()

    def _run(self) -> None:
        active: dict[int, tuple] = {}  # request id -> (handle, its queue)
        while True:
            with self._wake:
                while not self._incoming and not self._cancelled and not active:
                    self._wake.wait()
                incoming, self._incoming = self._incoming, []
                cancelled, self._cancelled = self._cancelled, set()
            for request_id, input_ids, config, out in incoming:
                try:
                    active[request_id] = (self.pipeline.add_request(request_id, input_ids,
                                                                    config), out)
                except Exception as error:  # a config the pipeline rejects
                    self._hand_over(out, error)
            for request_id in cancelled:
                if request_id in active:
                    active.pop(request_id)[0].cancel()
            if self.pipeline.has_non_finished_requests():
                try:
                    self.pipeline.step()
                except Exception as error:
                    for handle, out in active.values():
                        handle.cancel()
                        self._hand_over(out, error)
                    active.clear()
            for request_id, (handle, out) in list(active.items()):
                finish = self._drain(handle, out)
                if finish is not None or handle.get_status() != RUNNING:
                    self._hand_over(out, ("end", finish or _finish_reason(handle)))
                    del active[request_id]
            with self._handed:  # a reader whose client is gone never answers: a timeout
                self._handed.wait_for(lambda: not self._unread, HANDOFF_S)
                self._unread = 0

    def _drain(self, handle, out: queue.Queue) -> str | None:
        """Hand the handle's new token ids to ``out``; the finish reason if the outputs tell
        one."""
        finish = None
        while handle.can_read():
            for output in handle.read().values():  # one sequence: greedy or sampled, no beams
                if output.generated_ids:
                    self._hand_over(out, list(output.generated_ids))
                finish = _reason(output.finish_reason) or finish
        return finish


def _reason(finish_reason) -> str | None:
    name = getattr(finish_reason, "name", str(finish_reason)).lower()
    return {"length": "length", "stop": "stop"}.get(name)


def _finish_reason(handle) -> str:
    return "stop" if handle.get_status() == openvino_genai.GenerationStatus.FINISHED else "abort"


class BadRequest(ValueError):
    pass


def generation_config(body: dict, eos_token_id: int):
    """The request's generation settings; exact lengths with ``min_tokens`` = ``max_tokens``
    and ``ignore_eos``."""
    config = openvino_genai.GenerationConfig()
    try:
        config.max_new_tokens = int(body.get("max_tokens", 16))
        config.min_new_tokens = int(body.get("min_tokens") or 0)
        temperature = float(body.get("temperature", 1.0))
        top_p = float(body.get("top_p", 1.0))
    except (TypeError, ValueError) as error:
        raise BadRequest(str(error)) from None
    if config.max_new_tokens < 1 or config.min_new_tokens > config.max_new_tokens:
        raise BadRequest("need 1 <= max_tokens and min_tokens <= max_tokens")
    config.ignore_eos = bool(body.get("ignore_eos", False))
    config.eos_token_id = eos_token_id
    if temperature > 0:
        config.do_sample, config.temperature, config.top_p = True, temperature, top_p
        if body.get("seed") is not None:
            config.rng_seed = int(body["seed"])
    else:
        config.do_sample = False
    return config


def prompt_text(body: dict) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadRequest("prompt: a string (or a list of one) is required")
    return prompt


def make_handler(engine: Engine, model_name: str):
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.1 for chunked transfer: clients that read a body without a length to its end
        # before handing any of it over (urllib3 with chunk_size=None) stream chunked ones
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/health":
                self._json(200, {"status": "ok"})
            elif self.path == "/v1/models":
                self._json(200, {"object": "list", "data": [
                    {"id": model_name, "object": "model", "owned_by": "openvino"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            if self.path != "/v1/completions":
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                prompt = prompt_text(body)
                config = generation_config(body, engine.tokenizer.get_eos_token_id())
            except (BadRequest, json.JSONDecodeError, TypeError, AttributeError) as error:
                return self._json(400, {"error": {"message": str(error)}})
            input_ids = engine.tokenizer.encode(prompt).input_ids
            request_id, out = engine.submit(input_ids, config)
            completion = Completion(model_name, f"cmpl-{request_id}", input_ids.get_shape()[1],
                                    TextPieces(engine.tokenizer.decode))
            try:
                if body.get("stream"):
                    self._stream(completion, out, bool((body.get("stream_options") or {})
                                                       .get("include_usage")))
                else:
                    self._whole(completion, out)
            except (BrokenPipeError, ConnectionResetError):
                print(f"request {request_id}: the client went away, cancelled", flush=True)
                engine.cancel(request_id)

        def _stream(self, completion: "Completion", out: queue.Queue, usage: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                for text, finish in completion.pieces(out, engine.consumed):
                    self._event(completion.chunk(text, finish))
            except RuntimeError as error:  # the client reads it as a server-reported error
                self._event({"error": {"message": str(error)}})
            else:
                if usage:
                    self._event({**completion.chunk(None, None), "usage": completion.usage()})
                self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")  # the last chunk: the body ends

        def _whole(self, completion: "Completion", out: queue.Queue) -> None:
            parts, finish = [], None
            try:
                for text, finish in completion.pieces(out, engine.consumed):
                    parts.append(text)
            except RuntimeError as error:
                return self._json(500, {"error": {"message": str(error)}})
            self._json(200, {**completion.chunk("".join(parts), finish),
                             "usage": completion.usage()})

        def _event(self, payload: dict) -> None:
            self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class Completion:
    """One request's response: its text pieces as they come, the OpenAI chunk and usage."""

    def __init__(self, model: str, completion_id: str, prompt_tokens: int,
                 pieces: TextPieces) -> None:
        self.model, self.id, self.prompt_tokens = model, completion_id, prompt_tokens
        self.text = pieces
        self.created = int(time.time())

    def pieces(self, out: queue.Queue, consumed):
        """``(text, None)`` per step that made text, then ``(rest, finish_reason)``;
        ``consumed()`` once each item of ``out`` is acted on (its piece written: the caller
        asked for the next one, or dropped the generator)."""
        while True:
            item = out.get()
            try:
                if isinstance(item, Exception):
                    raise RuntimeError(f"generation failed: {item}")
                if isinstance(item, tuple):
                    yield self.text.flush(), item[1]
                    return
                if text := self.text.add(item):
                    yield text, None
            finally:
                consumed()

    def chunk(self, text: str | None, finish: str | None) -> dict:
        choices = [] if text is None else [
            {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]
        return {"id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model, "choices": choices}

    def usage(self) -> dict:
        completion = len(self.text.ids)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the IR dir (optimum-cli's output)")
    parser.add_argument("--served-model-name", default="peer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=0,
                        help="the CPU plugin's INFERENCE_NUM_THREADS (0: its own choice)")
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--cache-gb", type=int, default=2, help="KV cache size in GB")
    parser.add_argument("--precision", default="f32",
                        help="INFERENCE_PRECISION_HINT and KV_CACHE_PRECISION (default f32)")
    args = parser.parse_args(argv)

    scheduler = openvino_genai.SchedulerConfig()
    scheduler.max_num_seqs = args.max_num_seqs
    scheduler.cache_size = args.cache_gb
    properties = {"INFERENCE_NUM_THREADS": args.threads,
                  "INFERENCE_PRECISION_HINT": args.precision,
                  "KV_CACHE_PRECISION": args.precision}
    started = time.perf_counter()
    pipeline = openvino_genai.ContinuousBatchingPipeline(
        args.model, scheduler, "CPU", properties,
        {"INFERENCE_NUM_THREADS": args.threads})
    print(f"pipeline ready in {time.perf_counter() - started:.1f} s "
          f"(openvino_genai {openvino_genai.__version__}, {properties})", flush=True)
    server = ThreadingHTTPServer((args.host, args.port),
                                 make_handler(Engine(pipeline), args.served_model_name))
    server.daemon_threads = True
    print(f"serving {args.served_model_name} on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
