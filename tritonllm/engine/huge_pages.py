"""Memory for what a decode step reads end to end (weights, the KV cache), in transparent huge
pages where the kernel grants them.

A decode step streams every weight once. In 4 KiB pages that is a TLB miss and page walk every
4 KiB (int8 SmolLM2: ~34,000 per step); in 2 MiB pages, 512 times fewer. Measured here: an
int8 SmolLM2 decode step at B=1, two threads, 17.7 → 15.7 ms (docs/cpu-engine.md, "CPU
kernels"). Linux grants them to regions marked ``MADV_HUGEPAGE`` when
``/sys/kernel/mm/transparent_hugepage/enabled`` is ``always`` or ``madvise`` (the common
default); with ``never``, or off Linux, this is ordinary memory and nothing else changes.

The memory is a private anonymous ``mmap``, marked before its first touch (a page touched
before is already a small page), then written once, so it is claimed at start (as
``torch.zeros`` claims it) and not, page by page, under load. Packing the weights briefly holds
them twice while the model loads.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import torch

HUGE_PAGE = 2 << 20
ALIGN = 64  # each packed tensor starts on a cache line
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def thp_mode() -> str:
    """The kernel's transparent huge page mode (``always``, ``madvise``, ``never``), or
    ``unavailable``."""
    try:
        text = THP_SETTING.read_text()
    except OSError:
        return "unavailable"
    return text[text.index("[") + 1:text.index("]")] if "[" in text else text.strip()


def zeros(nbytes: int) -> torch.Tensor:
    """``nbytes`` zero bytes (uint8), starting on a 2 MiB boundary, in huge pages where granted.
    The tensor keeps its mapping alive."""
    length = -(-max(nbytes, 1) // HUGE_PAGE) * HUGE_PAGE + HUGE_PAGE  # room to align the start
    mapping = mmap.mmap(-1, length, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # not shmem
    if hasattr(mapping, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            mapping.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # a kernel built without THP: small pages, as before
            pass
    raw = torch.frombuffer(mapping, dtype=torch.uint8)
    start = -raw.data_ptr() % HUGE_PAGE
    return raw[start:start + nbytes].zero_()  # fault every page in now


def pack(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of ``tensors`` (contiguous, same dtypes and shapes) laid out in this order in one
    :func:`zeros` region: reading them in this order walks memory forward."""
    offsets, total = [], 0
    for t in tensors:
        total = -(-total // ALIGN) * ALIGN
        offsets.append(total)
        total += t.numel() * t.element_size()
    region = zeros(total)
    copies = []
    for t, offset in zip(tensors, offsets):
        nbytes = t.numel() * t.element_size()
        copy = region[offset:offset + nbytes].view(t.dtype).view(t.shape)
        copies.append(copy.copy_(t))
    return copies


def huge_bytes(t: torch.Tensor) -> int | None:
    """Bytes of the mapping holding ``t`` that are backed by huge pages (``AnonHugePages`` of
    ``/proc/self/smaps``), or None where that cannot be read."""
    address = t.data_ptr()
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return None
    inside = False
    for line in lines:
        head = line.split(" ", 1)[0]
        if "-" in head and ":" not in head:  # a mapping's header: "start-end perms ..."
            start, end = (int(x, 16) for x in head.split("-"))
            inside = start <= address < end
        elif inside and line.startswith("AnonHugePages:"):
            return int(line.split()[1]) * 1024
    return None
