"""Sections of docs/benchmarks.md written by a benchmark of their own, which ``make bench``
(``bench/run.py``, which rewrites the file) keeps as they are, markers included."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

BEGIN: Final = "<!-- kept by make bench: {name} -->"
END: Final = "<!-- end: {name} -->"
#: The kept sections, by name: the make target that writes each.
NAMES: Final = ("bench-replicas",)


def _pattern(name: str) -> re.Pattern[str]:
    begin, end = BEGIN.format(name=name), END.format(name=name)
    return re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)


def replace(document: str, body: str, name: str = "bench-replicas") -> str:
    """``document`` with section ``name`` holding ``body`` (appended when it has none)."""
    section = f"{BEGIN.format(name=name)}\n{body.strip()}\n{END.format(name=name)}"
    if _pattern(name).search(document):
        return _pattern(name).sub(lambda _: section, document)
    return document.rstrip("\n") + "\n\n" + section + "\n"


def kept(previous: Path) -> str:
    """The kept sections of the document as it was, to append to the rewritten one."""
    if not previous.exists():
        return ""
    text = previous.read_text(encoding="utf-8")
    found = [m.group(0) for name in NAMES if (m := _pattern(name).search(text))]
    return "".join(f"\n{section}\n" for section in found)
