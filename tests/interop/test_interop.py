"""One cache for Python and Node: real subprocesses of both languages on one store.

Run by the README test command (`scripts/test.sh`) after both SDKs are built:
the Python package installed in `.venv`, the Node addon at
`bindings/node/hitsave.node`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_PACKAGE = REPO / "bindings" / "node"


def node_available() -> bool:
    return (NODE_PACKAGE / "hitsave.node").is_file()


pytestmark = pytest.mark.skipif(
    not node_available() and os.environ.get("CI") != "true",
    reason="the Node addon is not built (node bindings/node/scripts/build.js --dev)",
)


class Store:
    """One store directory, used by both languages."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"

    def env(self) -> dict[str, str]:
        env = dict(os.environ, HITSAVE_CACHE_DIR=str(self.cache), PYTHONDONTWRITEBYTECODE="1")
        env.pop("HITSAVE_MODE", None)
        env.pop("HITSAVE_CONFIG", None)
        return env

    def python(self, code: str) -> object:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    def node(self, code: str) -> object:
        script = self.root / "script.js"
        script.write_text(f"const hitsave = require({json.dumps(str(NODE_PACKAGE))});\n" + textwrap.dedent(code))
        result = subprocess.run(
            ["node", str(script)], cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


PY_VALUES = """
import json, numpy as np
from hitsave import memo
runs = []
@memo(name="interop-values", version="1")
def values(kind):
    runs.append(kind)
    return {
        "int": 7, "neg": -3, "float": 2.5, "huge": 2**70, "text": "héllo", "bytes": b"\\x00\\xff",
        "list": [1, [2, None], True], "nested": {"a": {"b": [1.5]}},
        "vector": np.array([1.5, 2.5, 3.5]), "matrix": np.arange(6, dtype=np.int32).reshape(2, 3),
        "kind": kind,
    }
"""

NODE_SHOW = """
const { memo, NDArray } = hitsave;
let runs = 0;
const values = memo((kind) => { runs++; return null; }, { name: 'interop-values', version: '1' });
const v = values('a');
const matrix = v.matrix;
console.log(JSON.stringify({
  runs,
  int: v.int, neg: v.neg, float: v.float, huge: String(v.huge), hugeIsBigInt: typeof v.huge === 'bigint',
  text: v.text, bytes: Buffer.isBuffer(v.bytes) ? v.bytes.toString('hex') : null,
  list: v.list, nested: v.nested, kind: v.kind,
  vector: v.vector instanceof Float64Array ? Array.from(v.vector) : null,
  matrix: matrix instanceof NDArray ? { dtype: matrix.dtype, shape: matrix.shape, data: Array.from(matrix.data), typed: matrix.data.constructor.name } : null,
}));
"""


def test_python_writes_node_reads(store: Store) -> None:
    written = store.python(PY_VALUES + "\nvalues('a')\nprint(json.dumps(runs))")
    assert written == ["a"]
    read = store.node(NODE_SHOW)
    assert read == {
        "runs": 0,
        "int": 7, "neg": -3, "float": 2.5, "huge": str(2**70), "hugeIsBigInt": True,
        "text": "héllo", "bytes": "00ff", "list": [1, [2, None], True], "nested": {"a": {"b": [1.5]}}, "kind": "a",
        "vector": [1.5, 2.5, 3.5],
        "matrix": {"dtype": "int32", "shape": [2, 3], "data": [0, 1, 2, 3, 4, 5], "typed": "Int32Array"},
    }


def test_node_writes_python_reads(store: Store) -> None:
    store.node("""
        const { memo, NDArray } = hitsave;
        const f = memo((n) => ({
          n, half: n / 2, text: 'ünï', bytes: Buffer.from([1, 2, 3]), list: [1, 'two', [3.25, null]],
          map: new Map([[1, 'one'], [2, 'two']]), f32: new Float32Array([0.5, 1.5]),
          grid: new NDArray('uint16', [2, 2], new Uint16Array([1, 2, 3, 4])), big: 2n ** 64n,
        }), { name: 'interop-node', version: '3' });
        f(5);
        console.log(JSON.stringify({ ok: true }));
    """)
    read = store.python("""
        import json
        import numpy as np
        from hitsave import memo
        ran = []
        @memo(name="interop-node", version="3")
        def f(n):
            ran.append(n)
        v = f(5)
        print(json.dumps({
            "ran": ran, "n": v["n"], "half": v["half"], "text": v["text"], "bytes": v["bytes"].hex(),
            "list": v["list"], "map": {str(k): val for k, val in v["map"].items()},
            "f32": [v["f32"].dtype.name, v["f32"].tolist()],
            "grid": [v["grid"].dtype.name, list(v["grid"].shape), v["grid"].tolist()], "big": str(v["big"]),
        }))
    """)
    assert read == {
        "ran": [], "n": 5, "half": 2.5, "text": "ünï", "bytes": "010203", "list": [1, "two", [3.25, None]],
        "map": {"1": "one", "2": "two"}, "f32": ["float32", [0.5, 1.5]],
        "grid": ["uint16", [2, 2], [[1, 2], [3, 4]]], "big": str(2**64),
    }


def test_a_path_argument_counts_the_file_in_both_languages(store: Store) -> None:
    """A named function given a path (`load("data.txt")`): Python and Node
    derive one key from the text and the file's contents, so either reads
    what the other stored, and an edit of the file misses in both (it used
    to hit with the old contents)."""
    (store.root / "data.txt").write_text("1")
    py = """
        import json
        from hitsave import memo
        ran = []
        @memo(name="interop-load", version="1")
        def load(path):
            ran.append(path)
            with open(path) as handle:
                return handle.read().strip()
        print(json.dumps([load("data.txt"), len(ran)]))
    """
    node = """
        const fs = require('node:fs');
        let ran = 0;
        const load = hitsave.memo((p) => { ran++; return fs.readFileSync(p, 'utf8').trim(); }, { name: 'interop-load', version: '1' });
        console.log(JSON.stringify([load('data.txt'), ran]));
    """
    assert store.python(py) == ["1", 1]
    assert store.node(node) == ["1", 0]
    (store.root / "data.txt").write_text("22")
    assert store.node(node) == ["22", 1]
    assert store.python(py) == ["22", 0]


def test_a_directory_argument_counts_its_files_in_both_languages(store: Store) -> None:
    """A named function given a directory (`total("data")`): one key from
    the text and what the directory holds, in either language."""
    (store.root / "data").mkdir()
    (store.root / "data" / "a.txt").write_text("1")
    py = """
        import json, os
        from hitsave import memo
        ran = []
        @memo(name="interop-total", version="1")
        def total(d):
            ran.append(d)
            return sum(int(open(os.path.join(d, n)).read()) for n in os.listdir(d))
        print(json.dumps([total("data"), len(ran)]))
    """
    node = """
        const fs = require('node:fs');
        let ran = 0;
        const total = hitsave.memo((d) => { ran++; return fs.readdirSync(d).reduce((s, n) => s + Number(fs.readFileSync(d + '/' + n, 'utf8')), 0); }, { name: 'interop-total', version: '1' });
        console.log(JSON.stringify([total('data'), ran]));
    """
    assert store.python(py) == [1, 1]
    assert store.node(node) == [1, 0]
    (store.root / "data" / "b.txt").write_text("20")
    assert store.node(node) == [21, 1]
    assert store.python(py) == [21, 0]


def test_language_only_results_are_reported_not_guessed(store: Store) -> None:
    store.python("""
        import json
        from hitsave import memo
        @memo(name="py-only", version="1")
        def f(x):
            return {1, 2, 3}  # a set has no portable form: pickle
        f(1)
        print(json.dumps(True))
    """)
    result = store.node("""
        const f = hitsave.memo(() => 'computed in node', { name: 'py-only', version: '1' });
        try { f(1); console.log(JSON.stringify({ threw: false })); }
        catch (e) { console.log(JSON.stringify({ threw: true, code: e.code, message: e.message })); }
    """)
    assert result["threw"] and result["code"] == "foreign_codec"
    assert "python" in result["message"] and "pickle" in result["message"]

    store.node("""
        const f = hitsave.memo(() => new Date(0), { name: 'node-only', version: '1' });
        f(1);
        console.log(JSON.stringify(true));
    """)
    result = store.python("""
        import json
        from hitsave import memo, HitSaveError
        @memo(name="node-only", version="1")
        def f(x):
            return "computed in python"
        try:
            f(1)
            print(json.dumps({"threw": False}))
        except HitSaveError as error:
            print(json.dumps({"threw": True, "code": error.code, "message": str(error)}))
    """)
    assert result["threw"] and result["code"] == "foreign_codec"
    assert "node" in result["message"] and "v8" in result["message"]


def test_both_languages_derive_the_same_keys_for_every_vector(store: Store) -> None:
    node_keys = store.node("""
        const fs = require('node:fs');
        const path = require('node:path');
        const { tryNotation } = require(%s);
        const values = JSON.parse(fs.readFileSync(%s, 'utf8'));
        fs.mkdirSync('files-node', { recursive: true });
        const out = {};
        for (const vector of values.cases) {
          const built = tryNotation(vector.value, 'files-node');
          if (built === null) continue;
          const value = built.value;
          const args = hitsave.valueDigest([value, 'interop']);
          out[vector.name] = hitsave._native.deriveKey(args, undefined, 'vectors', '1');
        }
        console.log(JSON.stringify(out));
    """ % (json.dumps(str(NODE_PACKAGE / "test" / "notation.js")), json.dumps(str(REPO / "tests" / "vectors" / "values.json"))))
    python_keys = store.python("""
        import json, pathlib, sys
        sys.path.insert(0, %r)
        import test_vectors
        from hitsave import _native, value_digest
        files = pathlib.Path("files-python"); files.mkdir(exist_ok=True)
        out = {}
        for vector in test_vectors.VALUES["cases"]:
            try:
                value = test_vectors.from_notation(vector["value"], files)
            except test_vectors.NotRepresentable:
                continue
            out[vector["name"]] = _native.derive_key(value_digest([value, "interop"]), name="vectors", version="1")
        print(json.dumps(out))
    """ % str(REPO / "bindings" / "python" / "tests"))
    both = set(node_keys) & set(python_keys)
    assert len(both) > 50, sorted(both)
    assert {name: node_keys[name] for name in both} == {name: python_keys[name] for name in both}


def test_one_store_lists_both_languages(store: Store) -> None:
    store.python("""
        import json
        from hitsave import memo
        @memo
        def from_python(x):
            return x + 1
        from_python(1)
        print(json.dumps(True))
    """)
    store.node("""
        const fromNode = hitsave.memo(function fromNode(x) { return x + 2; });
        fromNode(1);
        console.log(JSON.stringify(true));
    """)
    listing = subprocess.run(
        [sys.executable, "-m", "hitsave", "ls", "--json"], env=store.env(), capture_output=True, text=True, timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    text = listing.stdout
    assert "from_python" in text and "fromNode" in text
    assert '"python"' in text and '"node"' in text


def test_large_arrays_cross_aligned_and_python_maps_them(store: Store) -> None:
    # Big arrays are written with padding before their data (docs/spec/values.md,
    # "Portable results") by both languages; both read the other's.
    written = store.python("""
        import json, numpy as np
        from hitsave import memo
        @memo(name="interop-big", version="1")
        def big(n):
            return {"label": "x" * 5, "f64": np.arange(n, dtype=np.float64) / 2, "u16": np.arange(n, dtype=np.uint16).reshape(-1, 8)}
        v = big(40000)
        print(json.dumps(float(v["f64"].sum())))
    """)
    read = store.node("""
        const { memo, NDArray } = hitsave;
        const big = memo(() => null, { name: 'interop-big', version: '1' });
        const v = big(40000);
        let sum = 0; for (const x of v.f64) sum += x;
        console.log(JSON.stringify({ sum, len: v.f64.length, u16: [v.u16.dtype, v.u16.shape, v.u16.data[8 * 4999 + 7]] }));
    """)
    assert read == {"sum": written, "len": 40000, "u16": ["uint16", [5000, 8], (8 * 4999 + 7) % 65536]}
    store.node("""
        const { memo } = hitsave;
        const wave = memo((n) => ({ tag: 'node', samples: Float32Array.from({ length: n }, (_, i) => i % 7) }), { name: 'interop-wave', version: '1' });
        wave(50000);
        console.log(JSON.stringify(true));
    """)
    seen = store.python("""
        import json, numpy as np
        from hitsave import memo, _native
        @memo(name="interop-wave", version="1")
        def wave(n):
            raise AssertionError("computed in Python")
        v = wave(50000)
        samples = v["samples"]
        base = samples
        while base is not None and not isinstance(base, _native.Mapped):
            base = getattr(base, "base", None)
        print(json.dumps([samples.dtype.name, int(samples.size), float(samples.sum()), base is not None, bool(samples.flags.aligned)]))
    """)
    expected_sum = float(sum(i % 7 for i in range(50000)))
    assert seen == ["float32", 50000, expected_sum, True, True]


def test_numbers_and_types_cross_languages_exactly_as_the_spec_says(store: Store) -> None:
    """docs/spec/values.md, "Across languages": a safe-integer JS number is an
    int, any other number a float; equal values share a key, values a
    function of either language can tell apart never do."""
    node = store.node("""
        const f = hitsave.memo((x) => x, { name: 'numbers', version: '1' });
        console.log(JSON.stringify({
          two: f.key(2), twoPointZero: f.key(2.0), half: f.key(2.5), negZero: f.key(-0), zero: f.key(0),
          big: f.key(2 ** 60), bigint: f.key(2n), object: f.key({ a: 1, b: [1, 'x'] }), flipped: f.key({ b: [1, 'x'], a: 1 }),
          map: f.key(new Map([['a', 1], ['b', [1, 'x']]])), list: f.key([1, 2]), date: f.key(new Date(0)),
        }));
    """)
    python = store.python("""
        import dataclasses, json
        from hitsave import memo
        @memo(name="numbers", version="1")
        def f(x):
            return x
        @dataclasses.dataclass
        class Date:
            time: float
        print(json.dumps({
            "two": f.key(2), "twoPointZero": f.key(2.0), "half": f.key(2.5), "negZero": f.key(-0.0), "zero": f.key(0),
            "big": f.key(float(2 ** 60)), "bigInt": f.key(2 ** 60), "object": f.key({"a": 1, "b": [1, "x"]}),
            "list": f.key([1, 2]), "tuple": f.key((1, 2)), "date": f.key(Date(0.0)),
        }))
    """)
    # Shared: ints, fractions, -0.0 and the float 2^60, lists, string-keyed objects in their order.
    for name in ("two", "half", "negZero", "zero", "big", "object", "list"):
        assert node[name] == python[name], name
    # JavaScript's 2.0 is its 2; Python's 2.0 is a float no JS call writes.
    assert node["twoPointZero"] == node["two"] != python["twoPointZero"]
    assert python["bigInt"] != node["big"] and node["bigint"] != python["two"]
    assert node["flipped"] != node["object"] and node["map"] != python["object"]
    assert python["tuple"] != python["list"] and node["date"] != python["date"]
