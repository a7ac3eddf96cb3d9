"""Prompt pools on disk: the tokenizer work done once, in a child process, shared by all.

Loading a tokenizer and building exact-length prompts takes seconds of pure CPU. Inside a
Locust process that would stall the gevent hub (a worker then misses its heartbeats and the
master drops it), so the pool is built by ``python -m tritonllm.loadtest.pool`` in a child
process (waiting on it is cooperative under gevent) and cached as JSON under
``<cache>/loadtest/pools/<key>.json``; the key hashes the workload config, the tokenizer
directory and the prompt file's content. Every Locust process then just reads the file.

File format: ``{"end_id": int, "workload": {...}, "prompts": [Prompt fields, ...]}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from tritonllm.loadtest.workloads import Prompt, WorkloadConfig, build_prompts
from tritonllm.model_source import cache_root

FORMAT_VERSION = 2  # 2: prompts carry their guide


def pool_path(config: WorkloadConfig, model_dir: Path) -> Path:
    """Where the pool for ``config`` and this tokenizer lives (content-addressed)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([FORMAT_VERSION, asdict(config), str(model_dir)]).encode())
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (model_dir / name).is_file():
            digest.update((model_dir / name).read_bytes())
    if config.prompt_file:
        digest.update(Path(config.prompt_file).read_bytes())
    return cache_root() / "loadtest" / "pools" / f"{digest.hexdigest()[:24]}.json"


def build_pool(config: WorkloadConfig, model_dir: Path, path: Path) -> None:
    """Build the pool in this process and write it atomically to ``path``."""
    from tritonllm.tokenizer import TextCodec

    codec = TextCodec.from_dir(model_dir)
    prompts = build_prompts(config, codec)
    doc = {"end_id": codec.end_id, "workload": asdict(config),
           "prompts": [asdict(p) for p in prompts]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as fh:
        json.dump(doc, fh)
    os.replace(fh.name, path)  # readers never see a half-written pool


def ensure_pool(config: WorkloadConfig, model_dir: Path) -> Path:
    """The pool's path, building it in a child process first when it is not cached."""
    path = pool_path(config, model_dir)
    if not path.is_file():
        cmd = [sys.executable, "-m", "tritonllm.loadtest.pool", "--config",
               json.dumps(asdict(config)), "--model-dir", str(model_dir), "--out", str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise ValueError(f"building the prompt pool failed:\n{done.stderr.strip()[-2000:]}")
    return path


def read_pool(path: Path) -> tuple[list[Prompt], int]:
    """(prompts, end_id) from a pool file."""
    doc = json.loads(Path(path).read_text())
    prompts = [Prompt(text=p["text"], token_ids=tuple(p["token_ids"]), max_tokens=p["max_tokens"],
                      min_tokens=p["min_tokens"], chat=p["chat"],
                      guide=tuple(p["guide"]) if p.get("guide") else None)
               for p in doc["prompts"]]
    return prompts, int(doc["end_id"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a load-test prompt pool file.")
    parser.add_argument("--config", required=True, help="WorkloadConfig fields as JSON")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        config = WorkloadConfig(**json.loads(args.config))
        build_pool(config, Path(args.model_dir), Path(args.out))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
