"""Install time of the built packages against the peers a user would pick (#16).

    bash scripts/package.sh                                  # dist/: wheel, sdist, npm tarballs
    .venv/bin/python bench/install/bench_install.py          # rewrites its section of docs/benchmarks.md

Each run makes a fresh environment (a new venv; a new npm project) and times
only the install command, as a user types it: HitSave from dist/, joblib from
PyPI, p-memoize from the npm registry. The registries' packages come through
pip's and npm's caches after the first run, as they do for a user who has
installed anything before; HitSave's come from local files. No cargo on PATH.
Medians of RUNS runs.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
PATH = os.pathsep.join([str(Path(sys.base_prefix) / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])


def env(tmp: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CARGO", "RUSTUP", "VIRTUAL_ENV", "PYTHON"))}
    e["PATH"] = PATH
    assert shutil.which("cargo", path=PATH) is None
    return e


def timed(cmd, cwd: Path, e) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=e, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def pip_install(*what: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        e = env(tmp)
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "v")], check=True, env=e)
        return timed([str(tmp / "v/bin/python"), "-m", "pip", "install", "--disable-pip-version-check", "-q", *what], tmp, e)


def npm_install(*what: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "package.json").write_text(json.dumps({"name": "p", "private": True}))
        return timed(["npm", "install", "--no-audit", "--no-fund", "--silent", *what], tmp, env(tmp))


def median(fn, *args) -> float:
    fn(*args)  # one run to warm the registry clients' caches, not counted
    return statistics.median(fn(*args) for _ in range(RUNS))


def size(p: Path) -> str:
    n = p.stat().st_size
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def main() -> None:
    wheel = next(DIST.glob("hitsave-*.whl"))
    tgz = next(DIST.glob("hitsave-[0-9]*.tgz"))
    addon = next(DIST.glob("hitsave-linux-x64-gnu-*.tgz"))
    ours_py = median(pip_install, "--no-index", str(wheel))
    joblib = median(pip_install, "joblib")
    ours_js = median(npm_install, "--offline", str(tgz), str(addon))
    pmemo = median(npm_install, "p-memoize")
    rows = [
        (f"`pip install` the wheel into a fresh venv ({wheel.name}, {size(wheel)})",
         f"`pip install joblib` {joblib:.2f} s", f"{ours_py:.2f} s", "seconds, no Rust (#16)", "met" if ours_py < 10 else "**missed**"),
        (f"`npm install` the package and its prebuilt addon into a fresh project ({size(tgz)} + {size(addon)})",
         f"`npm install p-memoize` {pmemo:.2f} s", f"{ours_js:.2f} s", "seconds, no Rust (#16)", "met" if ours_js < 10 else "**missed**"),
    ]
    write_section(rows)


def write_section(rows) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from sections import cores, cpu_model, write_section as write

    npm = subprocess.run(["npm", "--version"], capture_output=True, text=True).stdout.strip()
    write(
        "install",
        "Install: the built packages",
        f"`.venv/bin/python bench/install/bench_install.py` after `bash scripts/package.sh` — {cores()} cores, "
        f"{cpu_model()}, Python {platform.python_version()}, npm {npm}; a fresh venv or npm project per run, no cargo "
        f"on PATH, medians of {RUNS} (registries' packages through warm caches).",
        rows,
    )


if __name__ == "__main__":
    main()
