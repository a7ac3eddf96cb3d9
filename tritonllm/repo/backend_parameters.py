"""The ``tensorrtllm`` backend's parameters that must be present in ``tensorrt_llm``'s
``config.pbtxt``: the backend reads them with ``GetParameter`` outside any try/catch, and
``GetParameter`` throws "Cannot find parameter with name" for an absent key, so the model instance
fails to load (on every rank, after the engine build).

Read in tensorrtllm_backend at commit c2e65b88d85255be30cf50440a91662abeb497dd
(``inflight_batcher_llm/src/model_instance_state.cc``; ``GetParameter<std::string>`` in
``model_state.cc`` lines 249-269) and in TensorRT-LLM's ``triton_backend/inflight_batcher_llm/src/
model_instance_state.cc`` at commit c8c6df08bd0ead54cd47f7973e1e425c28a174cd, where these reads
sit on the same lines. docs/compatibility.md has the whole audit (every parameter, guarded or
not).
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "model_instance_state.cc"


@dataclass(frozen=True)
class RequiredParameter:
    """``line``: where the unguarded read is; ``off_values``: values the backend reads as unset
    (empty: the parameter needs a real value); ``allowed``: the only values it accepts (empty:
    any)."""

    name: str
    line: int
    off_values: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()

    def problem(self, value: str | None) -> str | None:
        """Why ``value`` (None: absent) would stop the backend from loading, or None."""
        if value is None:
            return f"{self.name}: absent ({SOURCE}:{self.line} reads it unguarded)"
        if self.allowed and value not in self.allowed + self.off_values:
            return f"{self.name}: {value!r} is not one of {self.allowed}"
        if value == "" and "" not in self.off_values:
            return f"{self.name}: empty, and the backend needs a value"
        return None


REQUIRED = (
    RequiredParameter("gpt_model_type", 62, allowed=("V1", "v1", "inflight_batching",
                                                     "inflight_fused_batching")),
    # getGuidedDecodingConfigFromParams(): "" or the literal ${...} placeholder means "off".
    RequiredParameter("tokenizer_dir", 413, off_values=("", "${tokenizer_dir}")),
    RequiredParameter("xgrammar_tokenizer_info_path", 414,
                      off_values=("", "${xgrammar_tokenizer_info_path}")),
    RequiredParameter("guided_decoding_backend", 415,
                      off_values=("", "${guided_decoding_backend}"), allowed=("xgrammar",)),
    # Guarded read, but the engine directory it names is checked unguarded (lines 771-772):
    # without it (or an encoder engine) the instance refuses to start.
    RequiredParameter("gpt_model_path", 746),
)


# With decoding_mode "lookahead" the backend parses these three with std::stoul, unguarded
# (model_instance_state.cc lines 632-634 at c8c6df08): absent or not a number, it refuses to
# load ("Decoding mode is set to lookahead but lookahead parameters are not specified").
LOOKAHEAD_SIZES = ("lookahead_window_size", "lookahead_ngram_size",
                   "lookahead_verification_set_size")


def problems(parameters: dict[str, str]) -> list[str]:
    """Every reason these ``tensorrt_llm`` parameters would fail to load (empty: none)."""
    found = [p.problem(parameters.get(p.name)) for p in REQUIRED]
    if parameters.get("decoding_mode") == "lookahead":
        found += [f"{name}: {parameters.get(name)!r} is not a size, and decoding_mode "
                  f"lookahead needs one ({SOURCE}:632-634)"
                  for name in LOOKAHEAD_SIZES if not parameters.get(name, "").isdigit()]
    return [problem for problem in found if problem]
