"""The pure parts of benchmarks/limits.py and benchmarks/run_all.py (no timing).

``limits.py --quick`` itself takes well over 10 s (it warms and times five hot
paths), so it is not run here; these checks cover the byte counts it prints
and how run_all.py reads the scripts' output and keeps RESULTS.md's tail.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def mods():
    sys.path.insert(0, str(BENCH))
    try:
        import limits
        import run_all
    finally:
        sys.path.remove(str(BENCH))
    return limits, run_all


def test_placebo_bytes_by_hand(mods):
    limits, _ = mods
    # T = 3 periods, 1 control: M = 3, Q = 5, P = 3 + 6 = 9; N = 30 rows, U = 10 units,
    # K = 4 treated, B = 2 draws; 8 bytes a number
    terms, _ = limits.placebo_bytes(30, 10, 4, 2, 3, 1, 2)
    expected = 30 * 5 * 8 + 10 * 9 * 8 + 81 * 8 + 2 * 4 * 5 * 8 + 2 * 9 * 8
    assert sum(terms.values()) == expected


def test_wildboot_and_feols_bytes_by_hand(mods):
    limits, _ = mods
    terms, _ = limits.wildboot_bytes(100, 7, 3, 11, 2)
    assert sum(terms.values()) == 100 * 4 * 8 + 100 * 8 + 2 * 7 * 3 * 8 + 11 * 7
    terms, _ = limits.feols_bytes(1000, 10, 2)
    assert sum(terms.values()) == 1000 * 10 * 8 + 1000 * 2 * 8


def test_split_output_separates_tables(mods):
    _, run_all = mods
    tables, other = run_all.split_output("load 1.0\n| a | b |\n|---|---|\n| 1 | 2 |\n\nnote\n| c |\n")
    assert tables == [["| a | b |", "|---|---|", "| 1 | 2 |"], ["| c |"]]
    assert other == ["load 1.0", "note"]


def test_kept_text_keeps_the_tail_below_the_marker(mods):
    _, run_all = mods
    prev = "# Benchmark results\n\n## old generated\n\n" + run_all.KEEP_MARKER + "\n\n## kept\n\ntext\n"
    assert run_all.kept_text(prev) == "## kept\n\ntext"
    # no marker: everything but the title is kept, one heading level down
    whole = run_all.kept_text("# Benchmark results\n\n## a\n\nx\n")
    assert "### a" in whole and "# Benchmark results" not in whole
    assert run_all.kept_text("") == ""
