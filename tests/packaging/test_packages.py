"""The built packages install without Rust, in seconds, and work (#16).

Run after `scripts/package.sh` (scripts/test.sh runs both): every test starts
from a fresh environment in a temporary folder, with a PATH that has no cargo,
installs what is in dist/ the way a user would, and runs a memoized function
in two fresh processes: the second must hit (the body ran once).

Install times are printed (`-s`), never asserted: bench/install measures them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "dist"

# Only what a user without Rust has: the system tools and this Python's
# interpreter folder (pyenv, for `python -m venv`), never ~/.cargo/bin.
BASE_PATH = os.pathsep.join(
    [str(Path(sys.base_prefix) / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]
)


def one(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    assert len(found) == 1, f"dist/ must hold exactly one {pattern} (run scripts/package.sh): {found}"
    return found[0]


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CARGO", "RUSTUP", "HITSAVE_", "PYTHON", "VIRTUAL_ENV", "npm_", "NODE_"))
    }
    env.update(PATH=BASE_PATH, HOME=str(tmp / "home"), HITSAVE_CACHE_DIR=str(tmp / "cache"))
    env.update(extra)
    (tmp / "home").mkdir(exist_ok=True)
    assert shutil.which("cargo", path=env["PATH"]) is None, "the test PATH must have no cargo"
    return env


def run(cmd: list[str], env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"{cmd} exited {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


PY_APP = """
import sys
from hitsave import memo

@memo
def slow(x):
    with open(sys.argv[1], "a") as f:
        f.write("ran\\n")
    return {"double": x * 2}

print(slow(21)["double"])
"""

JS_APP = """
const fs = require('node:fs');
const { memo } = require('hitsave');
const slow = memo(function slow(x) {
  fs.appendFileSync(process.argv[2], 'ran\\n');
  return { double: x * 2 };
});
console.log(slow(21).double);
"""


def test_wheel_installs_without_rust_and_hits_across_processes(tmp_path):
    wheel = one("hitsave-*.whl")
    assert "abi3" in wheel.name and "manylinux" in wheel.name, wheel.name
    env = clean_env(tmp_path)
    run([sys.executable, "-m", "venv", str(tmp_path / "venv")], env, tmp_path)
    py = tmp_path / "venv" / "bin" / "python"
    started = time.monotonic()
    run([str(py), "-m", "pip", "install", "--no-index", "--disable-pip-version-check", str(wheel)], env, tmp_path)
    print(f"\npip install {wheel.name}: {time.monotonic() - started:.1f} s")

    project = tmp_path / "project"
    project.mkdir()
    (project / "app.py").write_text(PY_APP)
    count = tmp_path / "count"
    for _ in range(2):
        assert run([str(py), "app.py", str(count)], env, project).stdout.strip() == "42"
    assert count.read_text() == "ran\n", "the second process must hit"

    served = run([str(tmp_path / "venv" / "bin" / "hitsave"), "serve", "--help"], env, project)
    assert "--database-url" in served.stdout and "--admin-token" in served.stdout


def test_sdist_is_complete_and_unpinned(tmp_path):
    sdist = one("hitsave-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    # The component is embedded at build time: it must travel; the toolchain pin must not.
    for needed in ("pyproject.toml", "Cargo.lock", "build_backend/hitsave_build.py",
                   "core/component/hitsave_core.wasm", "python/hitsave/_memo.py"):
        assert needed in names, f"{needed} missing from {sdist.name}"
    assert "rust-toolchain.toml" not in names and "rust-toolchain" not in names


def test_sdist_builds_a_working_wheel(tmp_path):
    """What a user on another platform does: pip builds the sdist with their Rust."""
    sdist = one("hitsave-*.tar.gz")
    # This environment's maturin (no build isolation: no registry), the shared
    # target/ (package.sh built the same sources there: only the link is redone).
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
               CARGO_TARGET_DIR=str(ROOT / "target"))
    env.pop("RUSTUP_TOOLCHAIN", None)
    run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-index",
         "--disable-pip-version-check", "-w", str(tmp_path / "wheels"), str(sdist)], env, tmp_path)
    (built,) = (tmp_path / "wheels").glob("hitsave-*.whl")

    env = clean_env(tmp_path)
    run([sys.executable, "-m", "venv", str(tmp_path / "venv")], env, tmp_path)
    py = tmp_path / "venv" / "bin" / "python"
    run([str(py), "-m", "pip", "install", "--no-index", "--disable-pip-version-check", str(built)], env, tmp_path)
    (tmp_path / "app.py").write_text(PY_APP)
    count = tmp_path / "count"
    for _ in range(2):
        assert run([str(py), "app.py", str(count)], env, tmp_path).stdout.strip() == "42"
    assert count.read_text() == "ran\n"


def test_sdist_without_rust_says_what_to_install(tmp_path):
    """A source build with no cargo stops with one line; maturin never fetches a toolchain."""
    sdist = one("hitsave-*.tar.gz")
    env = clean_env(tmp_path)
    # This environment's maturin (no build isolation: the test needs no registry).
    done = run(
        [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(tmp_path / "site"), str(sdist)],
        env, tmp_path, check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "hitsave: building from source needs Rust 1.95 or newer (no cargo on PATH)" in out, out
    assert "https://rustup.rs" in out
    assert "Traceback" not in out and "installing into a temporary directory" not in out, out
    assert not (tmp_path / "site").exists() or not any((tmp_path / "site").iterdir())


def npm_project(tmp_path: Path, env: dict[str, str], *tarballs: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "user-project", "private": True}))
    started = time.monotonic()
    # --offline: the packages come from dist/, nothing from a registry.
    run(["npm", "install", "--offline", "--no-audit", "--no-fund", *map(str, tarballs)], env, project)
    print(f"\nnpm install {' '.join(t.name for t in tarballs)}: {time.monotonic() - started:.1f} s")
    return project


def test_npm_packages_install_without_rust_and_hit_across_processes(tmp_path):
    main, addon = one("hitsave-[0-9]*.tgz"), one("hitsave-linux-x64-gnu-*.tgz")
    with tarfile.open(main) as tar:
        meta = json.load(tar.extractfile("package/package.json"))
        names = tar.getnames()
    assert "install" not in meta.get("scripts", {}), "the package must not build on install"
    assert meta["optionalDependencies"] == {"@hitsave/linux-x64-gnu": meta["version"]}
    assert not any(n.endswith(".node") for n in names), "the JS package carries no addon"

    env = clean_env(tmp_path)
    project = npm_project(tmp_path, env, main, addon)
    assert (project / "node_modules/@hitsave/linux-x64-gnu/hitsave.linux-x64-gnu.node").is_file()
    (project / "app.js").write_text(JS_APP)
    count = tmp_path / "count"
    for _ in range(2):
        assert run(["node", "app.js", str(count)], env, project).stdout.strip() == "42"
    assert count.read_text() == "ran\n", "the second process must hit"
    served = run(["npx", "--offline", "hitsave", "serve", "--help"], env, project)
    assert "--database-url" in served.stdout


def test_npm_package_without_its_addon_says_what_to_do(tmp_path):
    """`--omit=optional`, or a platform with no prebuilt addon: one clear, typed error."""
    env = clean_env(tmp_path)
    project = npm_project(tmp_path, env, one("hitsave-[0-9]*.tgz"))
    done = run(
        ["node", "-e", "try { require('hitsave') } catch (e) { console.log(e.code); console.log(e.message) }"],
        env, project,
    )
    code, message = done.stdout.split("\n", 1)
    assert code == "addon_missing", done.stdout
    assert "@hitsave/linux-x64-gnu" in message and "https://rustup.rs" in message
