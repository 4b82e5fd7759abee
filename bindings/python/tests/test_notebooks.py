"""Notebook code: functions defined in IPython cells (no file behind them)
are fingerprinted from the cell source, hit after a kernel restart, and miss
when a cell they depend on changes."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("IPython")

RUNNER = textwrap.dedent(
    """
    import json, sys
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    for cell in json.loads(sys.argv[1]):
        result = shell.run_cell(cell)
        if not result.success:
            raise SystemExit(f"cell failed: {result.error_in_exec or result.error_before_exec}")
    """
)


def kernel(cells, cache):
    """Runs cells in a fresh IPython shell (a kernel restart each time); returns the last line printed."""
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(cells)],
        env=dict(os.environ, HITSAVE_CACHE_DIR=str(cache)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout.strip().splitlines()[-1]


CELLS = [
    "from hitsave import memo\nruns = []\nSCALE = 3",
    "def helper(x):\n    return x * SCALE",
    "@memo\ndef slow(x):\n    runs.append(x)\n    return helper(x) + 1",
    "print(slow(2), runs)",
]


def test_cells_hit_after_a_restart_and_miss_after_an_edit(isolated_cache):
    assert kernel(CELLS, isolated_cache) == "7 [2]"
    assert kernel(CELLS, isolated_cache) == "7 []", "a restarted kernel hits"
    commented = list(CELLS)
    commented[1] = "# the helper\ndef helper(x):\n    return x * SCALE  # scale it"
    assert kernel(commented, isolated_cache) == "7 []", "comments in a cell do not count"
    edited = list(CELLS)
    edited[1] = "def helper(x):\n    return x * SCALE * 10"
    assert kernel(edited, isolated_cache) == "61 [2]", "an edit in a cell the function reaches misses"
    constant = list(CELLS)
    constant[0] = "from hitsave import memo\nruns = []\nSCALE = 4"
    assert kernel(constant, isolated_cache) == "9 [2]"
    assert kernel(CELLS, isolated_cache) == "7 []", "reverting hits again"
