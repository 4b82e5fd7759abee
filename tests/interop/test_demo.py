"""The README's first command runs `examples/demo.py`, which checks itself
(a hit must not compute, a miss after an edit must, Python and Node share a
result both ways). This test runs it, so a demo that no longer shows what
the README promises fails CI instead of a new user's first try."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (REPO / "bindings" / "node" / "hitsave.node").is_file() and os.environ.get("CI") != "true",
    reason="the Node addon is not built (node bindings/node/scripts/build.js --dev)",
)


def test_the_demo_shows_hits_misses_and_sharing(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HITSAVE_")}
    env["TMPDIR"] = str(tmp_path)  # the demo's fresh project and store
    run = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("-> hit: nothing computed") == 5
    assert run.stdout.count("-> miss: computed and stored") == 4
    assert "The demo checked every step" in run.stdout
