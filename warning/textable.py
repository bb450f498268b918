"""Plain-text tables for the terminal that stay aligned with Chinese (double-width) characters."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


def width(text: str) -> int:
    """Columns `text` takes on a terminal: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def render(header: Sequence[str], rows: Sequence[Sequence[object]], *, numeric_right: bool = True) -> str:
    """Rows under a header, columns padded to the widest cell; numbers right-aligned."""
    cells = [
        [str(c) for c in header],
        *[[f"{c:,}" if isinstance(c, int) else str(c) for c in r] for r in rows],
    ]
    widths = [max(width(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for index, row in enumerate(cells):
        parts = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - width(cell))
            is_number = index > 0 and numeric_right and isinstance(rows[index - 1][i], int)
            parts.append(pad + cell if is_number else cell + pad)
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
