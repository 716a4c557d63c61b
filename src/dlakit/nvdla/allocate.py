"""memory allocation: every feature surface gets an address in one address space, surfaces whose
lifetimes do not overlap share bytes.

Lifetimes are in layer positions (the execution order): a buffer lives from the first layer that
writes any tensor placed in it to the last layer that reads one (model outputs live to the
end). Buffers are placed largest first at the lowest aligned address free for their whole
lifetime (greedy first fit), the usual heuristic of inference memory planners.
"""

from __future__ import annotations

from dataclasses import dataclass

ALIGN = 256


@dataclass
class Buffer:
    name: str
    size: int
    first: int
    last: int
    offset: int = -1


def align(value: int, to: int = ALIGN) -> int:
    return -(-value // to) * to


def place(buffers: list[Buffer]) -> int:
    """Assign ``offset`` to every buffer; returns the peak (bytes spanned)."""
    placed: list[Buffer] = []
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.name)):
        busy = sorted(
            (p.offset, p.offset + align(p.size))
            for p in placed
            if not (p.last < buf.first or buf.last < p.first)
        )
        offset = 0
        for lo, hi in busy:
            if offset + align(buf.size) <= lo:
                break
            offset = max(offset, hi)
        buf.offset = offset
        placed.append(buf)
    return max((b.offset + align(b.size) for b in placed), default=0)
