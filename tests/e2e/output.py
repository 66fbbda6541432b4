"""Parsing kubectl's column output for the e2e suites: cells are found by
the header's column offsets (kubectl aligns with a tabwriter), so empty
cells and headers with spaces ("NOMINATED NODE") parse right."""

from __future__ import annotations

import re

AGE = re.compile(r"^\d+(s|m\d*s?|m|h\d*m?|d\d*h?|y\d*d?)$")
_COLUMN = re.compile(r"\S+(?: \S+)*")


def header(text: str) -> list[str]:
    """The column names of the first line."""
    return _COLUMN.findall(text.splitlines()[0])


def table(text: str) -> list[dict[str, str]]:
    """Rows as column name -> cell text ("" for an empty cell)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    columns = [(m.group(), m.start()) for m in _COLUMN.finditer(lines[0])]
    rows = []
    for line in lines[1:]:
        row = {}
        for i, (name, start) in enumerate(columns):
            end = columns[i + 1][1] if i + 1 < len(columns) else len(line)
            row[name] = line[start:end].strip()
        rows.append(row)
    return rows
