"""The rules that tie an engine's limits together (TensorRT-LLM's ``max_*`` meanings), in one
place for the build profile, the CPU engine's config and the model-repository renderer."""


def check_limits(*, max_input_len: int, max_seq_len: int, max_batch_size: int | None = None,
                 max_num_tokens: int | None = None, prefix: str = "") -> None:
    """ValueError naming the field (with ``prefix``, e.g. ``limits.``) and the limit."""
    if max_input_len >= max_seq_len:
        raise ValueError(f"{prefix}max_input_len: {max_input_len} must be < max_seq_len "
                         f"({max_seq_len}), leaving room for at least one generated token")
    if max_batch_size is not None and max_num_tokens is not None \
            and max_num_tokens < max_batch_size:
        raise ValueError(f"{prefix}max_num_tokens: {max_num_tokens} must be >= max_batch_size "
                         f"({max_batch_size}) so every running request can decode in one step")
