"""The benchmark workloads: the mixed workload (a fixed prompt list, output lengths cycling),
the input-grounded workload (tasks whose answer repeats much of a given text) and the
long-prompt workload (documents of 1k and 4k tokens and a short answer: prefill-bound).

16 requests by default; request ``i`` uses prompt ``i % len(PROMPTS)`` and must generate exactly
``OUTPUT_LENGTHS[i % 4]`` tokens (16/32/64/128), forced with ``min_tokens`` so every run does
the same work whatever the model would say. Shared by the engine benchmark and the server
benchmark so both measure the same requests.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

OUTPUT_LENGTHS = (16, 32, 64, 128)

PROMPTS = (
    "What is the capital of France?",
    "Explain in simple terms how a rainbow forms.",
    "Write a short poem about the sea at night.",
    "List three tips for writing clean Python code.",
    "Why is the sky blue?",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "How do I boil an egg?",
    "Give me a recipe for a quick vegetable soup.",
    "What are the main differences between a cat and a dog as pets?",
    "Translate 'good morning, how are you?' into French and Spanish.",
    "Describe the water cycle for a ten-year-old.",
    "What is machine learning?",
    "Suggest a name for a small coffee shop by the river.",
    "How many planets are in the solar system? Name them.",
    "Write a haiku about autumn leaves.",
    "What should I pack for a weekend hiking trip?",
)


@dataclass(frozen=True)
class WorkItem:
    """One benchmark request: a prompt and the exact number of tokens to generate."""

    index: int
    prompt: str
    output_tokens: int
    prompt_tokens: int | None = None  # where the workload sized the prompt in tokens


def mixed_workload(num_requests: int = 16) -> list[WorkItem]:
    """The first ``num_requests`` items of the cycling workload."""
    if num_requests < 1:
        raise ValueError(f"num_requests: must be >= 1, got {num_requests}")
    return [WorkItem(i, PROMPTS[i % len(PROMPTS)], OUTPUT_LENGTHS[i % len(OUTPUT_LENGTHS)])
            for i in range(num_requests)]


# Input-grounded tasks: a given code block or passage, and a task whose answer quotes much of it
# (edit, copy, extract, answer from it): what speculation by n-gram lookup is for.
_CODE = '''def mean(values):
    """The arithmetic mean of a list of numbers."""
    total = 0
    for value in values:
        total += value
    return total / len(values)


def variance(values):
    """The population variance of a list of numbers."""
    m = mean(values)
    return sum((value - m) ** 2 for value in values) / len(values)
'''
_PASSAGE = ("The Loire is the longest river in France. It rises in the Massif Central and flows "
            "north and then west for about 1,000 kilometres before it reaches the Atlantic "
            "Ocean at Saint-Nazaire. Its valley is known for its castles, such as Chambord and "
            "Chenonceau, and for its vineyards. In 2000 the central part of the valley became "
            "a UNESCO World Heritage Site. The river is shallow and its flow changes a lot "
            "between seasons, so it carries little shipping today.")
GROUNDED_TASKS = (
    f"Add type hints to this code and return the whole code:\n\n{_CODE}",
    f"Copy this code exactly, with the function variance renamed to var:\n\n{_CODE}",
    f"Repeat this passage word for word:\n\n{_PASSAGE}",
    f"From this passage, quote every sentence that mentions the valley:\n\n{_PASSAGE}",
    f"Rewrite this code so that mean uses the built-in sum:\n\n{_CODE}",
    f"Answer from the passage, quoting it: where does the Loire reach the ocean?\n\n{_PASSAGE}",
)
GROUNDED_OUTPUT_LENGTHS = (64, 128)


def grounded_workload(num_requests: int = 8) -> list[WorkItem]:
    """The first ``num_requests`` input-grounded items (chat prompts, exact output lengths)."""
    if num_requests < 1:
        raise ValueError(f"num_requests: must be >= 1, got {num_requests}")
    return [WorkItem(i, GROUNDED_TASKS[i % len(GROUNDED_TASKS)],
                     GROUNDED_OUTPUT_LENGTHS[i % len(GROUNDED_OUTPUT_LENGTHS)])
            for i in range(num_requests)]


# Long prompts (RAG context, chat history): the time to the first token is the prompt's prefill.
LONG_PROMPT_TOKENS = (1024, 4096)
LONG_OUTPUT_TOKENS = 32
_WORDS = sorted({w.strip(".,?!'():").lower() for text in PROMPTS + (_PASSAGE,)
                 for w in text.split()} - {""})


def long_prompt_workload(encode: Callable[[str], list[int]], num_requests: int = 6,
                         lengths: tuple[int, ...] = LONG_PROMPT_TOKENS) -> list[WorkItem]:
    """``num_requests`` items, prompt lengths cycling through ``lengths`` (tokens, counted by
    ``encode``: the served model's tokenizer), each a document of its own (different from its
    first token, so no server reuses another request's cached prefix) and a question;
    ``LONG_OUTPUT_TOKENS`` output tokens each."""
    if num_requests < 1:
        raise ValueError(f"num_requests: must be >= 1, got {num_requests}")
    items = []
    for i in range(num_requests):
        target = lengths[i % len(lengths)]
        words = random.Random(i).choices(_WORDS, k=target)  # > 1 token per word on average

        def prompt(count: int) -> str:
            return (f"Document {i}: {' '.join(words[:count])}.\n\nQuestion: what is this "
                    "document about? Answer in one sentence.")
        low, high = 0, len(words)  # the most words whose prompt fits in target tokens
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if len(encode(prompt(mid))) <= target else (low, mid - 1)
        text = prompt(low)
        items.append(WorkItem(i, text, LONG_OUTPUT_TOKENS, len(encode(text))))
    return items
