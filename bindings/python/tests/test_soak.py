"""Soak runs behind the opt-in flag (docs/development.md, "Slow tests").

`HITSAVE_SOAK=1` fills a million entries through `@memo` and stores a 1 GiB
result, against diskcache, joblib.Memory and np.save in the same run
(`bench/python/bench_scale.py`), and checks every target of #17 the bench
reports: the 1 GiB result's time and peak memory, the fill rate against
diskcache, the put rate at a million entries against the first 10,000, the
p99 of a miss, and the peak memory of `verify` and `gc`. Run it with the
release wheel and the peers installed (the numbers of a debug build mean
nothing); `HITSAVE_SOAK_ENTRIES` sets the fill."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(not os.environ.get("HITSAVE_SOAK"), reason="a 10-minute soak: HITSAVE_SOAK=1")
def test_costs_stay_flat_at_a_million_entries(tmp_path):
    for peer in ("diskcache", "joblib", "numpy"):
        pytest.importorskip(peer)
    sys.path.insert(0, str(REPO / "bench" / "python"))
    import bench_scale

    rows = bench_scale.run(tmp_path, int(os.environ.get("HITSAVE_SOAK_ENTRIES", "1000000")))
    for row in rows:
        print(" | ".join(row))
    missed = [row for row in rows if row[4] not in ("met", "—")]
    assert not missed, "\n".join(" | ".join(row) for row in missed)
