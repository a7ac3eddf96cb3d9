"""The mixed benchmark workload: a fixed prompt list, output lengths cycling.

16 requests by default; request ``i`` uses prompt ``i % len(PROMPTS)`` and must generate exactly
``OUTPUT_LENGTHS[i % 4]`` tokens (16/32/64/128), forced with ``min_tokens`` so every run does
the same work whatever the model would say. Shared by the engine benchmark and the server
benchmark so both measure the same requests.
"""

from __future__ import annotations

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


def mixed_workload(num_requests: int = 16) -> list[WorkItem]:
    """The first ``num_requests`` items of the cycling workload."""
    if num_requests < 1:
        raise ValueError(f"num_requests: must be >= 1, got {num_requests}")
    return [WorkItem(i, PROMPTS[i % len(PROMPTS)], OUTPUT_LENGTHS[i % len(OUTPUT_LENGTHS)])
            for i in range(num_requests)]
