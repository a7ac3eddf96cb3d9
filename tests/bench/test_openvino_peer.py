"""The OpenVINO peer's pure parts: install steps, the IR conversion per weight format, the server's
command line, the payload; and its server script's own logic (text pieces, generation settings,
the engine loop, the streamed wire format) against a stand-in for ``openvino_genai``, so nothing
here needs OpenVINO installed."""

import argparse
import ast
import importlib.util
import queue
import sys
import threading
import types
from pathlib import Path

import pytest

from tritonllm.bench import openvino_peer, peers, serving_bench
from tritonllm.bench.openvino_peer import OpenVinoPeer
from tritonllm.bench.peer_bench import output_tokens, prompt_for, stream_one
from tritonllm.bench.workload import WorkItem

ITEM = WorkItem(3, "Why is the sky blue?", 16)


def test_install_pins_the_release_and_drops_the_cuda_torchvision(tmp_path):
    peer = OpenVinoPeer(tmp_path / "openvino")
    venv, install, uninstall = peer.install_steps()
    assert venv.done == tmp_path / "openvino/venv/bin/python"
    assert install.argv[:4] == (str(tmp_path / "openvino/venv/bin/python"), "-m", "pip",
                                "install")
    assert set(install.argv[4:]) == {
        "openvino-genai==2026.4.1.0", "optimum-intel[openvino]==2.2.0", "optimum==2.3.0",
        "nncf==3.4.0", "torch==2.13.0", "transformers==4.57.6"}
    assert install.done == peer.venv / "bin" / "optimum-cli"
    assert uninstall.argv[-3:] == ("uninstall", "-y", "torchvision")
    assert uninstall.marker and uninstall.done.name == "installed-2026.4.1.0"
    assert not peer.installed()


@pytest.mark.parametrize("weights, extra", [
    ("fp32", ()), ("int8", ()),
    ("int4", ("--sym", "--group-size", "64", "--ratio", "1.0"))])
def test_each_weight_format_is_converted_once_per_checkpoint(tmp_path, weights, extra):
    peer, model = OpenVinoPeer(tmp_path / "openvino", weights), tmp_path / "SmolLM2"
    out = peer.ir_dir(model)
    assert out.name == weights and out.parent.parent == tmp_path / "openvino/ir"
    assert out.parent.name.startswith("SmolLM2-")
    assert out != peer.ir_dir(tmp_path / "other" / "SmolLM2")  # same name, another checkpoint
    (convert,) = peer.prepare_steps(model)
    assert convert.argv == (str(peer.venv / "bin/optimum-cli"), "export", "openvino",
                            "--model", str(model), "--task", "text-generation-with-past",
                            "--weight-format", weights, *extra, str(out) + ".part")
    assert convert.atomic and convert.done == out  # renamed once complete


def test_an_unknown_weight_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="weights: must be one of fp32, int8, int4, got 'nf4'"):
        OpenVinoPeer(tmp_path, "nf4")


def test_server_command_runs_our_script_with_the_peers_python(tmp_path):
    peer = OpenVinoPeer(tmp_path / "openvino", "int8", threads=3)
    command = peer.server_command(tmp_path / "SmolLM2", 8123)
    assert command[:2] == [str(peer.venv / "bin/python"), str(openvino_peer.SERVER_SCRIPT)]
    flags = dict(zip(command[2::2], command[3::2]))
    assert flags == {"--model": str(peer.ir_dir(tmp_path / "SmolLM2")),
                     "--served-model-name": peers.SERVED_MODEL, "--host": "127.0.0.1",
                     "--port": "8123", "--threads": "3", "--max-num-seqs": "8",
                     "--cache-gb": "2"}
    assert peer.server_env() == {} and peer.label == "OpenVINO GenAI INT8 IR"


def test_the_server_script_imports_only_the_standard_library_and_openvino_genai():
    tree = ast.parse(openvino_peer.SERVER_SCRIPT.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == {"openvino_genai"}


def test_payload_asks_for_the_exact_length(tmp_path):
    body = OpenVinoPeer(tmp_path).body(prompt_for(ITEM), "r1")
    assert (body["max_tokens"], body["min_tokens"], body["ignore_eos"]) == (16, 16, True)
    assert body["prompt"] == ITEM.prompt and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True} and body["temperature"] == 0


def test_make_peers_runs_openvino_once_per_weight_format(tmp_path):
    chosen = peers.make_peers(["openvino", "llama.cpp"], tmp_path, ["f32"], 2, ["fp32", "int4"])
    assert [p.label for p in chosen] == ["OpenVINO GenAI FP32 IR", "OpenVINO GenAI INT4 IR",
                                         "llama.cpp server F32 GGUF"]
    assert chosen[0].root == tmp_path / "openvino" and chosen[1].threads == 2
    assert [p.label for p in peers.make_peers(["openvino"], tmp_path, [], 2)] == [
        "OpenVINO GenAI FP32 IR"]  # fp32 unless told
    parser = argparse.ArgumentParser()
    serving_bench.add_arguments(parser)
    assert parser.parse_args([]).openvino_weights == ["fp32"]
    args = parser.parse_args(["--peer", "openvino", "--openvino-weights", "int8", "int4"])
    assert args.peer == ["openvino"] and args.openvino_weights == ["int8", "int4"]


# ---- the server script, on a stand-in for openvino_genai -----------------------------------

class FakeConfig:
    """GenerationConfig: attributes set one by one."""


@pytest.fixture
def server(monkeypatch):
    fake = types.SimpleNamespace(
        __version__="fake", GenerationConfig=FakeConfig,
        GenerationStatus=types.SimpleNamespace(RUNNING="running", FINISHED="finished"))
    monkeypatch.setitem(sys.modules, "openvino_genai", fake)
    spec = importlib.util.spec_from_file_location("openvino_server", openvino_peer.SERVER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BYTES = {1: b"caf", 2: b"\xc3", 3: b"\xa9", 4: b" ok"}  # token 2 + 3: "é" split in two


def byte_decode(ids):
    return b"".join(BYTES[i] for i in ids).decode("utf-8", errors="replace")


def test_text_pieces_hold_back_a_split_character(server):
    pieces = server.TextPieces(byte_decode)
    assert pieces.add([1]) == "caf"
    assert pieces.add([2]) == ""  # half a character: held back
    assert pieces.add([3]) == "é"
    assert pieces.add([4]) == " ok"
    pieces.add([2])
    assert pieces.flush() == "\ufffd"  # the stream ended inside a character: given as it is
    assert pieces.ids == [1, 2, 3, 4, 2]


def test_text_pieces_keep_the_space_a_window_start_would_drop(server):
    words = {1: "▁Hello", 2: "▁world", 3: "!"}

    def spm_decode(ids):  # a sentencepiece decoder drops the space of its first word
        return "".join(words[i] for i in ids).replace("▁", " ").lstrip(" ")
    pieces = server.TextPieces(spm_decode)
    assert [pieces.add([i]) for i in (1, 2, 3)] == ["Hello", " world", "!"]


def test_generation_config_forces_exact_lengths_and_greedy(server):
    config = server.generation_config({"max_tokens": 16, "min_tokens": 16, "ignore_eos": True,
                                       "temperature": 0}, eos_token_id=2)
    assert (config.max_new_tokens, config.min_new_tokens, config.ignore_eos) == (16, 16, True)
    assert config.do_sample is False and config.eos_token_id == 2
    sampled = server.generation_config({"max_tokens": 4, "temperature": 0.7, "seed": 5}, 2)
    assert (sampled.do_sample, sampled.temperature, sampled.rng_seed) == (True, 0.7, 5)
    for bad in ({"max_tokens": 0}, {"max_tokens": 4, "min_tokens": 5}, {"max_tokens": "x"}):
        with pytest.raises(server.BadRequest):
            server.generation_config(bad, 2)
    with pytest.raises(server.BadRequest):
        server.prompt_text({"prompt": ["a", "b"]})
    assert server.prompt_text({"prompt": ["a"]}) == "a"


class FakeHandle:
    def __init__(self, length):
        self.length, self.made, self.unread, self.status = length, 0, [], "running"

    def can_read(self):
        return bool(self.unread)

    def read(self):
        token, done = self.unread.pop(0)
        reason = types.SimpleNamespace(name="LENGTH" if done else "NONE")
        return {0: types.SimpleNamespace(generated_ids=[token], finish_reason=reason)}

    def get_status(self):
        return self.status

    def cancel(self):
        self.status = "cancel"


class FakePipeline:
    """Each step makes one token (its count so far) for every running request."""

    def __init__(self):
        self.handles, self.steps = [], 0

    def get_tokenizer(self):
        return None

    def add_request(self, request_id, input_ids, config):
        self.handles.append(FakeHandle(config.max_new_tokens))
        return self.handles[-1]

    def has_non_finished_requests(self):
        return any(h.status == "running" for h in self.handles)

    def step(self):
        self.steps += 1
        for handle in (h for h in self.handles if h.status == "running"):
            handle.made += 1
            handle.unread.append((handle.made, handle.made == handle.length))
            if handle.made == handle.length:
                handle.status = "finished"


def _config(length):
    config = FakeConfig()
    config.max_new_tokens = length
    return config


def test_the_engine_steps_requests_together_and_ends_each_at_its_length(server):
    pipeline = FakePipeline()
    engine = server.Engine(pipeline)
    streams = [engine.submit(None, _config(n)) for n in (3, 5)]
    received = []
    for _, out in streams:
        items = []
        while not isinstance(item := out.get(timeout=10), tuple):
            items.append(item)
            engine.consumed()
        received.append((items, item))
    assert received == [([[1], [2], [3]], ("end", "length")),
                        ([[1], [2], [3], [4], [5]], ("end", "length"))]
    assert pipeline.steps <= 6  # shared steps, not 3 + 5


class FakeIds:
    def __init__(self, n):
        self.n = n

    def get_shape(self):
        return [1, self.n]


class FakeEngine:
    """Answers every request with tokens 0, 1, ... as its own queue items."""

    def __init__(self):
        self.tokenizer = types.SimpleNamespace(
            encode=lambda text: types.SimpleNamespace(input_ids=FakeIds(len(text.split()))),
            decode=lambda ids: "".join(f" t{i}" for i in ids), get_eos_token_id=lambda: 2)
        self.cancelled = []

    def submit(self, input_ids, config):
        out = queue.Queue()
        for i in range(config.max_new_tokens):
            out.put([i])
        out.put(("end", "length"))
        return 7, out

    def consumed(self):
        pass

    def cancel(self, request_id):
        self.cancelled.append(request_id)


def test_the_stream_reads_as_one_chunk_per_token_with_usage(server, tmp_path):
    import requests

    from http.server import ThreadingHTTPServer

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), server.make_handler(FakeEngine(), "peer"))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        assert requests.get(f"{url}/health", timeout=5).status_code == 200
        assert requests.get(f"{url}/v1/models", timeout=5).json()["data"][0]["id"] == "peer"
        record = stream_one(url, OpenVinoPeer(tmp_path), ITEM, "r1")
        assert record.error is None and output_tokens(record) == 16
        assert len(record.chunk_times) == 16 and record.input_tokens == 5
        whole = requests.post(f"{url}/v1/completions", timeout=5, json={
            "prompt": "hi", "max_tokens": 3, "temperature": 0}).json()
        assert whole["choices"][0]["text"] == " t0 t1 t2"
        assert whole["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
        missing = requests.post(f"{url}/v1/completions", json={"max_tokens": 3}, timeout=5)
        assert missing.status_code == 400 and "prompt" in missing.json()["error"]["message"]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_script_lies_in_the_package():
    assert openvino_peer.SERVER_SCRIPT.is_file()
    assert Path(openvino_peer.__file__).parent in openvino_peer.SERVER_SCRIPT.parents
