"""Writes one benchmark's section of docs/benchmarks.md (between its
`<!-- bench:NAME -->` markers, or appended), shared by the Python benches."""

from __future__ import annotations

import os
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def write_section(marker: str, title: str, intro: str, rows) -> None:
    """`rows`: (what, peers, HitSave, target, verdict) tuples."""
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text()
    start, end = f"<!-- bench:{marker} -->", f"<!-- /bench:{marker} -->"
    body = [start, f"## {title}", "", intro, "", "| what | peers | HitSave | target | |", "|---|---|---|---|---|"]
    body += [f"| {what} | {peers} | {ours} | {target} | {verdict} |" for what, peers, ours, target, verdict in rows]
    body.append(end)
    section = "\n".join(body)
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)
    for row in rows:
        print(" | ".join(row))


def cores() -> int:
    return os.cpu_count() or 1
