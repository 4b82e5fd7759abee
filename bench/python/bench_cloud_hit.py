"""A large result from the team server (#15): what a fresh machine's first
call costs when a teammate already computed it, through `@memo` as users call
it, against reading the same array from local disk with `np.load` in the same
run.

    cargo build --release -p hitsave-server
    .venv/bin/python bench/python/bench_cloud_hit.py    # rewrites its section of docs/benchmarks.md

`HITSAVE_BENCH_RESULT_MIB` (default 512) sets the result's size. The server
runs on 127.0.0.1 with its embedded storage. Every measurement runs in a fresh
process, so peak memory (`ru_maxrss`) is its own; each one sums the array, so
every page of it is read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVER = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release" / "hitsave-server"
MIB = 1 << 20

COMMON = """
import json, resource, time
import numpy as np
N = {n}
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
"""

MEMO = COMMON + """
import hitsave
@hitsave.memo
def make(n):
    global ran
    ran = True
    time.sleep(1.0)
    return np.arange(n // 8, dtype=np.float64)
ran = False
base = peak()
start = time.perf_counter()
total = float(make(N).sum())
took = time.perf_counter() - start
print(json.dumps(dict(ran=ran, total=total, seconds=took, growth=peak() - base)))
"""

NP_LOAD = COMMON + """
import sys
base = peak()
start = time.perf_counter()
total = float(np.load(sys.argv[1]).sum())
took = time.perf_counter() - start
print(json.dumps(dict(total=total, seconds=took, growth=peak() - base)))
"""

SAVE = """
import sys
np.save(sys.argv[1], np.arange(N // 8, dtype=np.float64))
print("{}")
"""


def child(code: str, cwd: Path, env: dict[str, str], *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"bench child failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    n = int(os.environ.get("HITSAVE_BENCH_RESULT_MIB", "512")) * MIB
    root = Path(tempfile.mkdtemp(prefix="hitsave-bench-cloud-"))
    server = subprocess.Popen(
        [str(SERVER), "serve", "--listen", "127.0.0.1:0", "--data", str(root / "server")],
        env=dict(os.environ, HITSAVE_SERVER_ADMIN_TOKEN="bench-admin"),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = server.stdout.readline().split()[-1]
        request = urllib.request.Request(
            f"{url}/v1/projects",
            data=json.dumps({"name": "bench"}).encode(),
            headers={"Authorization": "Bearer bench-admin", "Content-Type": "application/json"},
        )
        key = json.load(urllib.request.urlopen(request, timeout=10))["key"]

        def machine(name: str) -> dict[str, str]:
            return dict(
                os.environ,
                HITSAVE_CACHE_DIR=str(root / name),
                HITSAVE_CLOUD_URL=url,
                HITSAVE_API_KEY=key,
                HITSAVE_UPLOAD_WAIT="300",
                HITSAVE_MAX_SIZE="8GiB",
            )

        project = root / "project"
        project.mkdir()
        code = MEMO.format(n=n)
        first = child(code, project, machine("a"))
        assert first["ran"], first
        hit = child(code, project, machine("b"))
        assert not hit["ran"] and hit["total"] == first["total"], hit
        local = child(code, project, machine("b"))
        assert not local["ran"], local
        # Written by a child: a process's peak memory counts its parent's at the fork.
        child(COMMON.format(n=n) + SAVE, project, dict(os.environ), str(root / "array.npy"))
        loaded = child(NP_LOAD.format(n=n), project, dict(os.environ), str(root / "array.npy"))
        assert loaded["total"] == first["total"], loaded
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(root, ignore_errors=True)

    size = f"{n // MIB} MiB"

    def cell(result: dict) -> str:
        return f"{result['seconds'] * 1000:.0f} ms, +{result['growth'] / MIB:.0f} MiB"

    peer = f"`np.load` from local disk {cell(loaded)}"
    rows = [
        (
            f"A {size} numpy result a teammate computed: a fresh machine's first call (a cloud hit), summed "
            "(time; peak memory growth)",
            peer,
            cell(hit),
            "peak ≤ 1.2× the result (a cloud hit holds no second copy)",
            "met" if hit["growth"] <= 1.2 * n else "missed",
        ),
        (f"The same call again on that machine (a local hit), summed", peer, cell(local), "—", ""),
    ]
    sys.path.insert(0, str(REPO / "bench"))
    from sections import cores, cpu_model, write_section

    write_section(
        "cloud-hit",
        "Cloud: a large result on a fresh machine",
        f"`bench/python/bench_cloud_hit.py` on {cpu_model()} ({cores()} cores), a release server on 127.0.0.1 "
        "with embedded storage. A cloud hit is received straight into the local store's file and mapped, as a "
        "local hit is: before this row existed, the same 512 MiB hit took 2.92 s and +1,577 MiB (the download "
        "held in memory, then decoded from that copy).",
        rows,
    )


if __name__ == "__main__":
    main()
