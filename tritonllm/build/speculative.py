"""The build profile's ``speculative:`` section: which speculative decoding a deployment runs.

Each target runs its own modes. The CPU engine runs ``ngram`` (prompt lookup: ``max_draft_len``
tokens after a match of the last ``max_matching_ngram_size`` or fewer) and ``draft_target``
(the same-vocabulary model ``speculative_model_dir`` drafts ``max_draft_len`` tokens); these
are :class:`~tritonllm.engine.EngineConfig`'s settings of the same names. GPU engines run
``lookahead``: TensorRT-LLM's draft-free lookahead decoding with window W
(``lookahead_window_size``), n-gram size N (``lookahead_ngram_size``) and verification set G
(``lookahead_verification_set_size``), built for :attr:`SpeculativeSpec.lookahead_max_draft_len`
draft tokens. The planner refuses a mode its target does not run, and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonllm.engine.config import SPECULATIVE_MODES, EngineConfig

MODES = SPECULATIVE_MODES + ("lookahead",)


@dataclass(frozen=True)
class SpeculativeSpec:
    """Off by default; see the module docstring."""

    mode: str = "off"
    max_draft_len: int = EngineConfig.max_draft_len  # the CPU engine's defaults
    max_matching_ngram_size: int = EngineConfig.max_matching_ngram_size
    speculative_model_dir: str = ""
    lookahead_window_size: int = 4
    lookahead_ngram_size: int = 3
    lookahead_verification_set_size: int = 4

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"speculative.mode: {self.mode!r} is not one of {MODES}")
        # TensorRT-LLM's LookaheadDecodingConfig checks W >= 1, N >= 1, G >= 0
        # (cpp/tensorrt_llm/executor/decodingConfig.cpp).
        for name, floor in (("max_draft_len", 1), ("max_matching_ngram_size", 1),
                            ("lookahead_window_size", 1), ("lookahead_ngram_size", 1),
                            ("lookahead_verification_set_size", 0)):
            value = getattr(self, name)
            if value < floor:
                raise ValueError(f"speculative.{name}: must be >= {floor}, got {value}")
        if (self.mode == "draft_target") != bool(self.speculative_model_dir):
            raise ValueError("speculative.speculative_model_dir: the draft model's checkpoint "
                             "directory, needed with mode draft_target and only then")
        if self.lookahead_ngram_size == 1 and (self.lookahead_window_size,
                                               self.lookahead_verification_set_size) != (1, 0):
            raise ValueError("speculative.lookahead_ngram_size: 1 needs lookahead_window_size 1 "
                             "and lookahead_verification_set_size 0 (that is plain decoding)")

    @property
    def lookahead_max_draft_len(self) -> int:
        """The draft tokens a lookahead step verifies at most, which trtllm-build's
        ``--max_draft_len`` must equal: ``(N == 1 ? 0 : N - 2) + (W - 1 + G) * (N - 1)``
        (TensorRT-LLM ``cpp/tensorrt_llm/executor/decodingConfig.cpp``, lines 85-95 at commit
        0371ba0f; its ``examples/lookahead/README.md`` asks for equality)."""
        w, n, g = (self.lookahead_window_size, self.lookahead_ngram_size,
                   self.lookahead_verification_set_size)
        return (0 if n == 1 else n - 2) + (w - 1 + g) * (n - 1)

    def build_flags(self, cpu_target: bool) -> dict:
        """trtllm-build's ``--speculative_decoding_mode`` / ``--max_draft_len`` values: empty
        unless a GPU engine is built for lookahead."""
        if self.mode != "lookahead" or cpu_target:
            return {}
        return {"speculative_decoding_mode": "lookahead_decoding",
                "max_draft_len": self.lookahead_max_draft_len}
