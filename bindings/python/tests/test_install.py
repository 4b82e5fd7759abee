"""`pip install ./bindings/python` into a fresh virtual environment, as a user does it.

pip builds the package through its PEP 517 backend in an isolated build
environment (maturin fetched from PyPI per pyproject.toml), installs the
wheel, and the installed package must work: `@memo` hits across processes,
`python -m hitsave` and the `hitsave` console script run the CLI.

The one liberty taken: the wheel is built in the dev profile into the
repository's target/ (`--config-settings build-args=--profile=dev`), reusing
the compiled dependencies of the rest of the suite; a release build from
scratch takes ~10 minutes on a 2-core machine and differs only in compiler
optimisation. Opt out with HITSAVE_SKIP_INSTALL_TEST=1 (offline machines).
"""

import os
import subprocess
import textwrap
import venv
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.skipif(os.environ.get("HITSAVE_SKIP_INSTALL_TEST") == "1", reason="HITSAVE_SKIP_INSTALL_TEST=1")


def test_pip_install_from_a_checkout_gives_a_working_package(tmp_path):
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    environment = dict(os.environ, CARGO_TARGET_DIR=str(REPO / "target"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    environment.pop("VIRTUAL_ENV", None)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(REPO / "bindings" / "python"),
         "--config-settings", "build-args=--profile=dev"],
        env=environment, capture_output=True, text=True, timeout=1800,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    cache = tmp_path / "cache"
    run_env = dict(environment, HITSAVE_CACHE_DIR=str(cache))
    project = tmp_path / "project"
    project.mkdir()
    (project / "job.py").write_text(textwrap.dedent("""
        from hitsave import memo

        @memo
        def square(x):
            print("computing", flush=True)
            return x * x

        print(square(12))
    """))
    outputs = [
        subprocess.run([str(python), "job.py"], cwd=project, env=run_env, capture_output=True, text=True, timeout=120, check=True).stdout
        for _ in range(2)
    ]
    assert outputs == ["computing\n144\n", "144\n"], outputs
    # The installed package is the one in the new environment, not the test suite's.
    where = subprocess.run([str(python), "-c", "import hitsave; print(hitsave.__file__)"], env=run_env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(env_dir)), where.stdout

    listed = subprocess.run([str(env_dir / "bin" / "hitsave"), "ls"], env=run_env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and "square" in listed.stdout, listed.stdout + listed.stderr
    stats = subprocess.run([str(python), "-m", "hitsave", "stats"], env=run_env, capture_output=True, text=True, timeout=60)
    assert stats.returncode == 0, stats.stderr


def test_the_packages_hitsave_serves(tmp_path):
    """`python -m hitsave serve` is the server itself (not "this build has
    no server"): it creates a project, listens, answers, and stops on SIGTERM."""
    import json
    import signal
    import subprocess
    import sys
    import urllib.request

    server = subprocess.Popen(
        [sys.executable, "-m", "hitsave", "serve", "--listen", "127.0.0.1:0", "--create-project", "team", "--data", str(tmp_path / "server")],
        stdout=subprocess.PIPE,
        text=True,
        env={**__import__("os").environ, "HITSAVE_SERVER_LOG": "off"},
    )
    try:
        key = server.stdout.readline().strip().removeprefix("project team: ")
        url = server.stdout.readline().strip().removeprefix("listening on ")
        assert key.startswith("hs_") and url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(f"{url}/v1/whoami", headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.load(answer)["project"] == "team"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
