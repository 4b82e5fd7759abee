"""Machines sharing results through a real HitSave server on 127.0.0.1, from
Python and from Node: each "machine" is its own store directory (and its own
process), as on separate computers.

Needs the server binary (`cargo build -p hitsave-server`, done by
`scripts/test.sh`), the Python package and the Node addon.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_PACKAGE = REPO / "bindings" / "node"
SERVER = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug" / "hitsave-server"
ADMIN = "admin-token-for-interop"

pytestmark = pytest.mark.skipif(
    not SERVER.exists() or not (NODE_PACKAGE / "hitsave.node").exists(),
    reason="needs target/debug/hitsave-server and the Node addon (scripts/test.sh builds both)",
)


class Cloud:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.process = subprocess.Popen(
            [str(SERVER), "serve", "--listen", "127.0.0.1:0", "--data", str(root / "server")],
            env=dict(os.environ, HITSAVE_SERVER_ADMIN_TOKEN=ADMIN),
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        assert line.startswith("listening on "), line
        self.url = line.split()[-1]
        request = urllib.request.Request(
            f"{self.url}/v1/projects",
            data=json.dumps({"name": "team"}).encode(),
            headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        )
        self.key = json.load(urllib.request.urlopen(request, timeout=10))["key"]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()

    def machine(self, name: str, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        for variable in ("HITSAVE_MODE", "HITSAVE_CONFIG", "HITSAVE_CLOUD_URL", "HITSAVE_API_KEY"):
            env.pop(variable, None)
        env.update(
            HITSAVE_CACHE_DIR=str(self.root / f"machine-{name}"),
            HITSAVE_CLOUD_URL=self.url,
            HITSAVE_API_KEY=self.key,
            HITSAVE_SIGNING_KEY="team signing secret",
            XDG_CONFIG_HOME=str(self.root / f"config-{name}"),
            PYTHONDONTWRITEBYTECODE="1",
        )
        env.update(extra)
        return env


@pytest.fixture
def cloud(tmp_path: Path):
    server = Cloud(tmp_path)
    yield server
    server.stop()


def python(env: dict[str, str], code: str, cwd: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def node(env: dict[str, str], code: str, cwd: Path) -> dict:
    script = cwd / "script.js"
    script.write_text(f"const hitsave = require({json.dumps(str(NODE_PACKAGE))});\n" + textwrap.dedent(code))
    result = subprocess.run(["node", str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


PY_SHARED = textwrap.dedent("""
    import json
    from hitsave import memo
    runs = []
    @memo(name="cloud-shared", version="1")
    def f(x):
        runs.append(x)
        return {"x": x, "square": x * x, "tags": ["a", "b"]}
""")

NODE_SHARED = """
    let runs = 0;
    const f = hitsave.memo((x) => { runs++; return { x, square: x * x, tags: ['a', 'b'] }; }, { name: 'cloud-shared', version: '1' });
"""


def test_python_on_one_machine_node_on_another(cloud: Cloud, tmp_path: Path) -> None:
    out = python(cloud.machine("a"), PY_SHARED + "\nv = f(3)\nprint(json.dumps({'v': v, 'runs': runs}))", tmp_path)
    assert out == {"v": {"x": 3, "square": 9, "tags": ["a", "b"]}, "runs": [3]}
    out = node(cloud.machine("b"), NODE_SHARED + "console.log(JSON.stringify({ v: f(3), runs }));", tmp_path)
    assert out == {"v": {"x": 3, "square": 9, "tags": ["a", "b"]}, "runs": 0}, "machine b hits what machine a uploaded"

    out = node(cloud.machine("b"), NODE_SHARED + "console.log(JSON.stringify({ v: f(4), runs }));", tmp_path)
    assert out["runs"] == 1
    out = python(cloud.machine("c"), PY_SHARED + "\nv = f(4)\nprint(json.dumps({'v': v, 'runs': runs}))", tmp_path)
    assert out == {"v": {"x": 4, "square": 16, "tags": ["a", "b"]}, "runs": []}


def test_the_same_project_on_two_machines_shares_by_code_fingerprint(cloud: Cloud, tmp_path: Path) -> None:
    project = {
        "model.py": "SCALE = 3\n\ndef scale(x):\n    return x * SCALE\n",
        "train.py": "import json\nfrom hitsave import memo\nfrom model import scale\nruns = []\n\n@memo\ndef train(x):\n    runs.append(x)\n    return scale(x) + 1\n\nprint(json.dumps({'value': train(5), 'runs': runs}))\n",
        "package.json": '{"name": "proj"}',
        "train.js": f"const {{ memo }} = require({json.dumps(str(NODE_PACKAGE))});\nconst {{ scale }} = require('./scale');\nlet runs = 0;\nconst train = memo(function train(x) {{ runs++; return scale(x) + 1; }});\nconsole.log(JSON.stringify({{ value: train(5), runs }}));\n",
        "scale.js": "const SCALE = 3;\nexports.scale = (x) => x * SCALE;\n",
    }
    checkouts = []
    for name in ("laptop", "ci"):
        checkout = tmp_path / name / "project"
        checkout.mkdir(parents=True)
        for file, text in project.items():
            (checkout / file).write_text(text)
        checkouts.append(checkout)

    def run(command: list[str], machine: str, checkout: Path) -> dict:
        result = subprocess.run(command, cwd=checkout, env=cloud.machine(machine), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    assert run([sys.executable, "train.py"], "laptop", checkouts[0]) == {"value": 16, "runs": [5]}
    assert run([sys.executable, "train.py"], "ci", checkouts[1]) == {"value": 16, "runs": []}
    assert run(["node", "train.js"], "laptop", checkouts[0]) == {"value": 16, "runs": 1}
    assert run(["node", "train.js"], "ci", checkouts[1]) == {"value": 16, "runs": 0}
    # An edit on one machine is a new function identity: a miss there, nothing wrong served.
    (checkouts[1] / "model.py").write_text(project["model.py"].replace("SCALE = 3", "SCALE = 4"))
    assert run([sys.executable, "train.py"], "ci", checkouts[1]) == {"value": 21, "runs": [5]}


def test_download_in_bulk_from_python_and_node(cloud: Cloud, tmp_path: Path) -> None:
    python(cloud.machine("a"), PY_SHARED + "\nfor i in range(6): f(i)\nprint(json.dumps(True))", tmp_path)
    out = python(
        cloud.machine("b"),
        PY_SHARED + "\ncount = f.download()\nprint(json.dumps({'count': count, 'hit': f.lookup(2)}))",
        tmp_path,
    )
    assert out == {"count": 6, "hit": {"x": 2, "square": 4, "tags": ["a", "b"]}}
    out = node(
        cloud.machine("c"),
        NODE_SHARED + "f.download().then((count) => console.log(JSON.stringify({ count, again: 0, hit: f.lookup(5) })));",
        tmp_path,
    )
    assert out == {"count": 6, "again": 0, "hit": {"x": 5, "square": 25, "tags": ["a", "b"]}}


def test_language_only_results_cross_machines_only_when_signed(cloud: Cloud, tmp_path: Path) -> None:
    code = """
        import json
        from hitsave import memo
        runs = []
        @memo(name="py-only-cloud", version="1")
        def f(x):
            runs.append(x)
            return {x, x + 1}   # a set: pickled, Python-only
        print(json.dumps({"v": sorted(f(1)), "runs": runs}))
    """
    assert python(cloud.machine("a"), code, tmp_path) == {"v": [1, 2], "runs": [1]}
    assert python(cloud.machine("b"), code, tmp_path) == {"v": [1, 2], "runs": []}
    untrusted = cloud.machine("c", HITSAVE_SIGNING_KEY="a different secret")
    assert python(untrusted, code, tmp_path) == {"v": [1, 2], "runs": [1]}, "an unverifiable pickle is never loaded"


def test_an_unreachable_server_means_local_only_with_one_warning(tmp_path: Path) -> None:
    env = dict(os.environ, HITSAVE_CACHE_DIR=str(tmp_path / "cache"), HITSAVE_CLOUD_URL="http://127.0.0.1:9",
               HITSAVE_API_KEY="hs_0_0", HITSAVE_UPLOAD_WAIT="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("HITSAVE_MODE", None)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", PY_SHARED + "\nprint(json.dumps([f(1), f(2), f(1), runs]))"],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[3] == [1, 2]
    assert result.stderr.count("warning[cloud_unavailable]") == 1, result.stderr
    assert time.monotonic() - start < 30


def test_a_forked_child_reads_through_and_uploads_with_its_own_client(cloud: Cloud, tmp_path: Path) -> None:
    # Machine b computes f(5) and uploads it.
    out = python(cloud.machine("b"), PY_SHARED + "\nf(5)\nprint(json.dumps(runs))", tmp_path)
    assert out == [5]
    # Machine a uses the cloud in the parent, then forks (as multiprocessing does on
    # Linux): the child's HTTP client and uploader must be its own, not the parent's
    # threads, which a child does not have.
    code = PY_SHARED + textwrap.dedent("""
        import os, sys
        f(1)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            value = f(5)   # a cloud hit, read through by the child
            f(6)           # computed in the child, uploaded by the child
            from hitsave import _memo
            _memo._open_store().drain_uploads()
            os.write(write, json.dumps({"value": value, "runs": runs}).encode())
            os._exit(0)
        os.close(write)
        _, status = os.waitpid(pid, 0)
        child = json.loads(os.read(read, 65536))
        print(json.dumps({"child": child, "status": status}))
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cloud.machine("a"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "cloud_unavailable" not in result.stderr, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"child": {"value": {"x": 5, "square": 25, "tags": ["a", "b"]}, "runs": [1, 6]}, "status": 0}
    # What the child computed reached the cloud: machine c hits it.
    out = python(cloud.machine("c"), PY_SHARED + "\nf(6)\nprint(json.dumps(runs))", tmp_path)
    assert out == []
