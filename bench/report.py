"""Printing the run as one Markdown table plus the targets."""
from __future__ import annotations

from bench.results import Results, Target


def print_table(results: Results, targets: list[Target], machine: str, elapsed_s: float) -> None:
    print(f"\nMachine: {machine}. Whole run: {elapsed_s:.0f}s.\n")
    print("| row | measure | value | unit | note |")
    print("|---|---|---:|---|---|")
    for m in results.measures:
        print(f"| {m.row} | {m.label} | {m.shown()} | {m.unit} | {m.note} |")
    print("\n| target | measured | verdict |")
    print("|---|---|---|")
    for t in targets:
        verdict = "n/a" if t.met is None else "met" if t.met else "**missed**"
        print(f"| {t.goal} | {t.measured} | {verdict} |")
