"""Guided decoding: grammars compiled with xgrammar, one matcher per guided request.

A request's :class:`Guide` names a guide type and its text with TensorRT-LLM's names and
meanings (its Triton backend's ``guided_decoding_guide_type`` / ``guided_decoding_guide``):

- ``json``: any JSON value; the guide text is not used;
- ``json_schema``: JSON matching the schema in the guide text;
- ``regex``: text matching the regular expression;
- ``ebnf_grammar``: text in the grammar (GBNF-style EBNF, with a ``root`` rule).

:class:`Grammars` compiles a guide once (an LRU cache keyed by type and text) and makes a
matcher for each request that uses it. Each step the sampler asks :meth:`Grammars.allowed` for
the tokens the grammar allows next and bans the rest; the engine advances the matcher with the
token it appends. The model's end tokens are allowed exactly when the grammar is complete, so a
guided request ends on an end token once its output is whole. Preemption recomputes the K/V of
tokens already generated and keeps them, so a matcher stays valid across it; a request that
finishes for any reason drops its matcher.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

# TensorRT-LLM's guide type names (its Triton backend's utils.cc, getGuidedDecodingParams).
GUIDE_TYPES = ("json", "json_schema", "regex", "ebnf_grammar")
# Compiled grammars kept for reuse. A JSON schema compiles in about a millisecond, but a large
# grammar can take much longer, and clients tend to send the same few schemas again and again.
GRAMMAR_CACHE_SIZE = 256


@dataclass(frozen=True)
class Guide:
    """What a guided request's output must match (see the module docstring)."""

    type: str
    text: str = ""

    def __post_init__(self) -> None:
        if self.type not in GUIDE_TYPES:
            raise ValueError(f"guided_decoding_guide_type: must be one of {list(GUIDE_TYPES)}, "
                             f"got {self.type!r}")
        if not isinstance(self.text, str):
            raise ValueError("guided_decoding_guide: must be a string")
        if self.type != "json" and not self.text.strip():
            raise ValueError(f"guided_decoding_guide: required (non-empty) for guide type "
                             f"{self.type!r}")


class Grammars:
    """The compiler for one tokenizer and vocabulary, its cache, and the step's masking.

    ``tokenizer``: a Hugging Face tokenizer or the directory holding one; ``vocab_size``: the
    model's (its logits' width; may exceed the tokenizer's); ``stop_token_ids``: the model's end
    tokens, the ones a complete grammar allows. Thread-safe: requests compile on the threads
    that submit them, while the engine thread masks and advances.
    """

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: list[int],
                 cache_size: int = GRAMMAR_CACHE_SIZE) -> None:
        import torch
        import xgrammar  # heavy (~1 s): imported when a deployment can guide

        if isinstance(tokenizer, str) or hasattr(tokenizer, "__fspath__"):
            from transformers import AutoTokenizer
            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        self._xgr = xgrammar
        self.vocab_size = vocab_size
        self.stop_token_ids = list(stop_token_ids)
        info = xgrammar.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=self.stop_token_ids or None)
        self._compiler = xgrammar.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self._cache: OrderedDict[Guide, object] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._shifts = torch.arange(32, dtype=torch.int32)
        self.compiles = 0  # grammars compiled (cache misses)

    def compile(self, guide: Guide):
        """The compiled grammar for ``guide``, from the cache when it was compiled before.
        ValueError naming ``guided_decoding_guide`` with the compiler's message otherwise."""
        with self._lock:
            compiled = self._cache.get(guide)
            if compiled is not None:
                self._cache.move_to_end(guide)
                return compiled
        compiled = self._compile(guide)
        with self._lock:
            self.compiles += 1
            self._cache[guide] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def _compile(self, guide: Guide):
        try:
            if guide.type == "json":
                return self._compiler.compile_builtin_json_grammar()
            if guide.type == "json_schema":
                json.loads(guide.text)  # a clearer message than the compiler's for bad JSON
                return self._compiler.compile_json_schema(guide.text)
            if guide.type == "regex":
                return self._compiler.compile_regex(guide.text)
            return self._compiler.compile_grammar(guide.text)
        except (RuntimeError, ValueError) as exc:
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
            raise ValueError(f"guided_decoding_guide: the {guide.type} guide does not compile: "
                             f"{_without_log_prefix(message)}") from None

    def matcher(self, guide: Guide) -> "Matcher":
        """A new matcher at the start of ``guide``'s grammar."""
        return Matcher(self._xgr.GrammarMatcher(self.compile(guide)))

    def allowed(self, matchers: list["Matcher"]):
        """``bool [len(matchers), vocab_size]``: the tokens each matcher allows next."""
        bitmask = self._xgr.allocate_token_bitmask(len(matchers), self.vocab_size)
        for row, matcher in enumerate(matchers):
            matcher.fill(bitmask, row)
        return self._unpack(bitmask)

    def allowed_along(self, matcher: "Matcher", drafts: list[int]):
        """``bool [1 + len(drafts), vocab_size]``: what ``matcher`` allows next now and after
        each draft, the drafts accepted one by one and then rolled back (the matcher ends
        where it began). Past a draft the grammar refuses (or after the end), a row repeats
        the last mask: those positions are never reached, as that draft cannot be chosen."""
        bitmask = self._xgr.allocate_token_bitmask(1 + len(drafts), self.vocab_size)
        matcher.fill(bitmask, 0)
        advanced = filled = 0  # drafts accepted; the last row filled
        for draft in drafts:
            if not matcher.accept(draft):
                break
            advanced += 1
            if matcher.is_terminated:  # the draft ended the output: nothing follows it
                break
            matcher.fill(bitmask, advanced)
            filled = advanced
        bitmask[filled + 1:] = bitmask[filled]
        matcher.rollback(advanced)
        return self._unpack(bitmask)

    def _unpack(self, bitmask):
        bits = (bitmask.unsqueeze(-1) >> self._shifts) & 1  # bit j of word i is token 32*i + j
        return bits.bool().flatten(1)[:, :self.vocab_size]


class GuidedDecoding:
    """What an engine can guide with: ``grammars`` when it has the tokenizer and xgrammar,
    else None and ``unavailable`` says why (guided requests are then refused, saying it)."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: list[int]) -> None:
        self.grammars: Grammars | None = None
        self.unavailable = "this engine was started without the tokenizer"
        if tokenizer is not None:
            try:
                self.grammars = Grammars(tokenizer, vocab_size, stop_token_ids)
            except ImportError as exc:  # the engine serves on without guided decoding
                self.unavailable = f"xgrammar cannot be imported ({exc})"

    def matcher(self, guide: Guide | None) -> "Matcher | None":
        """A matcher for a guided request (compiling its guide now), else None; ValueError
        naming the input when the guide cannot be served."""
        if guide is None:
            return None
        if self.grammars is None:
            raise ValueError("guided_decoding_guide_type: guided decoding is not available: "
                             f"{self.unavailable}")
        return self.grammars.matcher(guide)


class Matcher:
    """One request's place in its grammar."""

    def __init__(self, matcher) -> None:
        self._matcher = matcher

    def fill(self, bitmask, row: int) -> None:
        self._matcher.fill_next_token_bitmask(bitmask, row)

    def accept(self, token: int) -> bool:
        """Advance past ``token``; False when the grammar does not allow it."""
        return self._matcher.accept_token(token)

    def rollback(self, count: int) -> None:
        """Undo the last ``count`` accepted tokens."""
        if count:
            self._matcher.rollback(count)

    @property
    def is_terminated(self) -> bool:
        """True once the grammar accepted an end token: nothing may follow."""
        return self._matcher.is_terminated()


def _without_log_prefix(message: str) -> str:
    """xgrammar's C++ messages start with ``[hh:mm:ss] /path/file.cc:line:``; drop that."""
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", message)
