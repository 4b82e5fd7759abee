import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
VECTORS = REPO / "tests" / "vectors"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own store; the compiled component is shared."""
    monkeypatch.setenv("HITSAVE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HITSAVE_CONFIG", raising=False)
    monkeypatch.delenv("HITSAVE_MODE", raising=False)
    monkeypatch.delenv("HITSAVE_MAX_SIZE", raising=False)
    import hitsave._memo as memo_module

    memo_module._store = None
    memo_module._store_failed = False
    yield tmp_path / "cache"


class Project:
    """A real project on disk, run in fresh interpreters like a user runs it."""

    def __init__(self, root: Path, cache: Path) -> None:
        self.root = root
        self.cache = cache

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment the project's processes run in: its store, plus `extra`."""
        environment = dict(os.environ, HITSAVE_CACHE_DIR=str(self.cache), PYTHONDONTWRITEBYTECODE="1")
        environment.update(extra or {})
        return environment

    def spawn(self, code: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Starts `code` in a fresh interpreter without waiting; its stdout is piped."""
        return subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)], cwd=self.root, env=self.env(env), stdout=subprocess.PIPE, text=True
        )

    def run(self, code: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=self.root,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result


@pytest.fixture
def project(tmp_path, isolated_cache):
    root = tmp_path / "project"
    root.mkdir()
    return Project(root, isolated_cache)
