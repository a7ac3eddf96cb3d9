"""Workloads: the prompts a load test sends, with exact token counts.

Kinds (``WorkloadConfig.kind``):

- ``synthetic``: input and output lengths drawn from normal distributions (mean, stddev in
  tokens, rounded, clipped to >= 1); stddev 0 gives fixed lengths such as TensorRT-LLM's
  published 128/128, 128/2048, 2048/128 and 1000/1000 tables. Prompt text is built from REAL
  vocabulary tokens (space-prefixed lowercase words) and re-encoded with the served model's
  tokenizer until the count is exact, so the server sees the intended number of input tokens.
- ``file``: a JSONL prompt file, one object per line: ``{"text": "..."}`` (or ``"prompt"``) or
  ``{"messages": [{"role": ..., "content": ...}, ...]}`` (sent with ``apply_chat_template``),
  optionally with ``"max_tokens"``.
- ``shared_prefix``: ``prefix_groups`` distinct prefixes of ``prefix_tokens`` tokens; prompt
  ``i`` is prefix ``i % prefix_groups`` followed by a unique synthetic suffix, for KV-cache
  reuse tests. ``input_tokens`` is the whole prompt's mean length.
- ``json_schema``: structured outputs: the chat prompts of the guided-decoding benchmark's
  schemas (``tritonllm.loadtest.json_schemas``), each request guided by its schema
  (``response_format`` on the OpenAI API, ``guided_decoding_guide_type`` / ``_guide`` on the
  ensemble and the engine); the schema decides the length, ``output_tokens`` caps it.

Output length: ``max_tokens`` is the drawn output length; when ``force_output_length`` the
request also carries ``min_tokens = max_tokens`` so the server generates exactly that many.

Spec strings (``--workload``): ``IN/OUT`` (fixed lengths, e.g. ``128/128``), a YAML file of
:class:`WorkloadConfig` fields, a ``.jsonl`` prompt file, or inline ``key=value,...`` fields
(e.g. ``input_tokens=64,input_tokens_stddev=16,output_tokens=32``).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, fields
from pathlib import Path

from tritonllm.contract import parse_bool

KINDS = ("synthetic", "file", "shared_prefix", "json_schema")
_WORD = re.compile(r"Ġ[a-z]{3,10}")  # byte-level BPE spells a leading space as "Ġ"
_MAX_ATTEMPTS = 20


@dataclass(frozen=True)
class Prompt:
    """One request's content. ``text`` is ``text_input`` as sent (a JSON array of messages when
    ``chat``); ``token_ids`` are the ids the server's preprocessing makes of it (the engine-level
    user sends them directly). ``min_tokens`` is ``None`` unless the output length is forced.
    ``guide``: ``(guided_decoding_guide_type, guided_decoding_guide)`` for guided requests."""

    text: str
    token_ids: tuple[int, ...]
    max_tokens: int
    min_tokens: int | None = None
    chat: bool = False
    guide: tuple[str, str] | None = None

    @property
    def input_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class WorkloadConfig:
    """What to send; lengths in tokens. See the module docstring for each kind."""

    kind: str = "synthetic"
    input_tokens: int = 128
    input_tokens_stddev: float = 0.0
    output_tokens: int = 128
    output_tokens_stddev: float = 0.0
    force_output_length: bool = True
    prompt_file: str | None = None
    prefix_tokens: int = 0
    prefix_groups: int = 1
    num_prompts: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"workload.kind: must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("input_tokens", "output_tokens", "num_prompts", "prefix_groups"):
            if getattr(self, name) < 1:
                raise ValueError(f"workload.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("input_tokens_stddev", "output_tokens_stddev"):
            if getattr(self, name) < 0:
                raise ValueError(f"workload.{name}: must be >= 0, got {getattr(self, name)}")
        if self.kind == "file" and not self.prompt_file:
            raise ValueError("workload.prompt_file: required when kind is 'file'")
        if self.kind == "json_schema" and self.force_output_length:
            raise ValueError("workload.force_output_length: must be false for kind json_schema "
                             "(each schema decides its reply's length)")
        if self.kind == "shared_prefix" and not 1 <= self.prefix_tokens < self.input_tokens:
            raise ValueError(
                f"workload.prefix_tokens: must lie in [1, input_tokens={self.input_tokens}) "
                f"for a shared_prefix workload, got {self.prefix_tokens}")

    def describe(self) -> str:
        if self.kind == "file":
            return f"prompts from {self.prompt_file}, output {self._length('output')}"
        if self.kind == "json_schema":
            return f"JSON-schema prompts (guided), output up to {self.output_tokens} tokens"
        text = f"input {self._length('input')}, output {self._length('output')} tokens"
        if self.kind == "shared_prefix":
            text += f", {self.prefix_groups} shared prefix(es) of {self.prefix_tokens} tokens"
        return text

    def _length(self, which: str) -> str:
        mean, sd = getattr(self, f"{which}_tokens"), getattr(self, f"{which}_tokens_stddev")
        return f"{mean}±{sd:g}" if sd else str(mean)


def parse_spec(spec: str) -> WorkloadConfig:
    """A ``--workload`` string to a config (grammar in the module docstring)."""
    spec = spec.strip()
    fixed = re.fullmatch(r"(\d+)/(\d+)", spec)
    if fixed:
        return WorkloadConfig(input_tokens=int(fixed.group(1)), output_tokens=int(fixed.group(2)))
    if spec.endswith((".yaml", ".yml")):
        return _from_yaml(Path(spec))
    if spec.endswith(".jsonl"):
        return WorkloadConfig(kind="file", prompt_file=spec, force_output_length=False)
    return _from_mapping(dict(_split_inline(spec)), source=spec)


def _split_inline(spec: str):
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(
                f"workload: {item!r} is not key=value; write IN/OUT (e.g. 128/128), a .yaml or "
                f".jsonl file, or key=value pairs")
        yield key.strip(), value.strip()


def _from_yaml(path: Path) -> WorkloadConfig:
    import yaml

    if not path.is_file():
        raise ValueError(f"workload: no such file {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"workload: {path} must hold a mapping of WorkloadConfig fields")
    if data.get("prompt_file") and not Path(data["prompt_file"]).is_absolute():
        data["prompt_file"] = str(path.parent / data["prompt_file"])
    return _from_mapping(data, source=str(path))


def _from_mapping(data: dict, source: str) -> WorkloadConfig:
    types = {f.name: f.type for f in fields(WorkloadConfig)}
    unknown = set(data) - set(types)
    if unknown:
        raise ValueError(f"workload: unknown field(s) {sorted(unknown)} in {source}; "
                         f"known: {', '.join(types)}")
    return WorkloadConfig(**{k: _coerce(k, v, types[k]) for k, v in data.items()})


def _coerce(name: str, value, type_name: str):
    if not isinstance(value, str):
        return value
    try:
        if type_name == "int":
            return int(value)
        if type_name == "float":
            return float(value)
        if type_name == "bool":
            return parse_bool(value, f"workload.{name}")
    except ValueError:
        raise ValueError(f"workload.{name}: {value!r} is not a valid {type_name}") from None
    return value


class PromptFactory:
    """Builds exact-length synthetic text from one tokenizer (``tritonllm.tokenizer.TextCodec``)."""

    def __init__(self, codec, rng: random.Random) -> None:
        self.codec = codec
        self.rng = rng
        vocab = codec.tokenizer.get_vocab()
        self._words = sorted(i for tok, i in vocab.items() if _WORD.fullmatch(tok))
        if len(self._words) < 100:
            raise ValueError("tokenizer: too few word tokens to build synthetic prompts "
                             "(expected a byte-level BPE vocabulary)")
        self._specials = len(codec.encode(""))  # tokens the tokenizer adds itself (BOS)

    def text(self, n_tokens: int, prefix: str = "") -> tuple[str, tuple[int, ...]]:
        """``prefix`` + new words such that the whole text encodes to exactly ``n_tokens``."""
        have = len(self.codec.encode(prefix)) if prefix else self._specials
        need = n_tokens - have
        if need < 1:
            raise ValueError(f"input_tokens: {n_tokens} leaves no room after {have} tokens "
                             "of prefix and special tokens")
        for _ in range(_MAX_ATTEMPTS):
            text = prefix + self.codec.tokenizer.decode(self.rng.choices(self._words, k=need))
            ids = self.codec.encode(text)
            if len(ids) == n_tokens:
                return text, tuple(ids)
        raise RuntimeError(f"could not build a prompt of exactly {n_tokens} tokens "
                           f"in {_MAX_ATTEMPTS} attempts")


def _draw(rng: random.Random, mean: int, stddev: float) -> int:
    return max(1, round(rng.gauss(mean, stddev))) if stddev else mean


def build_prompts(config: WorkloadConfig, codec) -> list[Prompt]:
    """The workload's prompt pool (``num_prompts`` prompts, or every line of a prompt file),
    deterministic for a given ``seed``."""
    rng = random.Random(config.seed)
    if config.kind == "file":
        return _file_prompts(config, codec, rng)
    if config.kind == "json_schema":
        return _schema_prompts(config, codec)
    factory = PromptFactory(codec, rng)
    prefixes = _prefixes(config, factory)
    return [_synthetic_prompt(config, factory, prefixes, i) for i in range(config.num_prompts)]


def _prefixes(config: WorkloadConfig, factory: PromptFactory) -> list[str]:
    if config.kind != "shared_prefix":
        return [""]
    return [factory.text(config.prefix_tokens)[0] for _ in range(config.prefix_groups)]


def _synthetic_prompt(config: WorkloadConfig, factory: PromptFactory, prefixes: list[str],
                      index: int) -> Prompt:
    rng = factory.rng
    prefix = prefixes[index % len(prefixes)]
    floor = config.prefix_tokens + 1 if prefix else 1
    n_in = max(floor, _draw(rng, config.input_tokens, config.input_tokens_stddev))
    text, ids = factory.text(n_in, prefix)
    return _prompt(config, text, ids, _draw(rng, config.output_tokens, config.output_tokens_stddev))


def _prompt(config: WorkloadConfig, text: str, ids, max_tokens: int, chat: bool = False):
    forced = max_tokens if config.force_output_length else None
    return Prompt(text=text, token_ids=tuple(ids), max_tokens=max_tokens, min_tokens=forced,
                  chat=chat)


def _schema_prompts(config: WorkloadConfig, codec) -> list[Prompt]:
    from tritonllm.loadtest.json_schemas import SCHEMA_TASKS

    prompts = []
    for index in range(config.num_prompts):
        task = SCHEMA_TASKS[index % len(SCHEMA_TASKS)]
        text = json.dumps(task.messages())
        prompts.append(Prompt(text=text, token_ids=tuple(codec.encode_chat(text)),
                              max_tokens=config.output_tokens, chat=True,
                              guide=("json_schema", json.dumps(task.schema))))
    return prompts


def _file_prompts(config: WorkloadConfig, codec, rng: random.Random) -> list[Prompt]:
    path = Path(config.prompt_file)
    if not path.is_file():
        raise ValueError(f"workload.prompt_file: no such file {path}")
    prompts = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            prompts.append(_file_prompt(config, codec, rng, line, f"{path}:{number}"))
    if not prompts:
        raise ValueError(f"workload.prompt_file: {path} holds no prompts")
    return prompts


def _file_prompt(config: WorkloadConfig, codec, rng: random.Random, line: str, where: str):
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not a JSON object ({exc})") from None
    if not isinstance(item, dict):
        raise ValueError(f"{where}: each line must be a JSON object")
    max_tokens = int(item.get("max_tokens") or _draw(rng, config.output_tokens,
                                                     config.output_tokens_stddev))
    if "messages" in item:
        text = json.dumps(item["messages"])
        return _prompt(config, text, codec.encode_chat(text), max_tokens, chat=True)
    text = item.get("text", item.get("prompt"))
    if not isinstance(text, str) or not text:
        raise ValueError(f'{where}: needs a non-empty "text" (or "prompt") or "messages"')
    return _prompt(config, text, codec.encode(text), max_tokens)
