"""The matrix as a Markdown table, the permanent failures' reasons, and the problems found."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from support.fault_matrix.checking import Row

COLUMNS: Final = (
    "fault",
    "sent",
    "delivered",
    "rejected",
    "retried (resends)",
    "duplicated",
    "lost",
    "accepted twice, dedup'd",
    "wrong state",
    "stale profile (late write)",
    "429/503 answers",
    "Klaviyo requests (faulted)",
    "s",
)


def _cells(row: Row) -> list[str]:
    share = row.injected / row.klaviyo_requests if row.klaviyo_requests else 0.0
    retry_answers = f"{row.answers[429]}/{row.answers[503]}"
    return [
        row.fault,
        str(row.sent),
        str(row.delivered),
        str(row.rejected),
        str(row.resends),
        str(row.duplicated),
        str(row.lost),
        str(row.accepted_twice),
        str(row.wrong + row.no_reason),
        str(row.stale),
        retry_answers,
        f"{row.klaviyo_requests} ({share:.0%})" if row.injected else f"{row.klaviyo_requests} (-)",
        f"{row.seconds:.1f}",
    ]


def table(rows: Sequence[Row]) -> str:
    """A Markdown table, aligned so it also reads in a terminal."""
    cells = [list(COLUMNS), *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(c) for c in cells[1:])])


def reasons(rows: Sequence[Row]) -> str:
    lines = ["Permanent failures, with the reason the service reported (one sample each):"]
    seen: set[str] = set()
    for row in rows:
        for key, count in sorted(row.reasons.items()):
            lines.append(f"  {row.fault}: {key} x{count}")
            if key not in seen:
                seen.add(key)
                lines.append(f"      {row.samples[key][:220]}")
    return "\n".join(lines)


def problems(rows: Sequence[Row]) -> str:
    return "\n".join(f"  {row.fault}: {p}" for row in rows for p in row.problems)
