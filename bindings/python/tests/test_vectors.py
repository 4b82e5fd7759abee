"""The shared vectors (tests/vectors) through the Python walker: Python
values built from the notation must give the digests Rust pins."""

import json
import math
import pathlib
import struct
import threading

import pytest

import hitsave
from hitsave import _native
from conftest import VECTORS

np = pytest.importorskip("numpy")


class NotRepresentable(Exception):
    """A notation value Python cannot express (e.g. a dict with keys 1 and 1.0)."""


def hashable(value):
    if isinstance(value, (list, dict, set)):
        raise NotRepresentable("a Python dict key or set member cannot be a list, dict or set")
    return value


TYPED = {
    "py:builtins.tuple": tuple,
    "py:builtins.frozenset": frozenset,
    "py:builtins.bytearray": bytearray,
    "py:pathlib.PurePosixPath": pathlib.PurePosixPath,
}


def from_notation(node, tmp_path):
    if node is None or isinstance(node, (bool, str)):
        return node
    if isinstance(node, int):
        return node
    if isinstance(node, float):
        return node
    if isinstance(node, list):
        return [from_notation(item, tmp_path) for item in node]
    if "record" in node:
        # A Python object is a record of what pickle saves of it, not of bare fields.
        raise NotRepresentable("record")
    if "typed" in node:
        if node["typed"] not in TYPED:
            raise NotRepresentable(node["typed"])
        return TYPED[node["typed"]](from_notation(node["value"], tmp_path))
    (tag, body), = node.items()
    if tag in ("int", "bigint"):
        return int(body)
    if tag == "float":
        return float(body)
    if tag == "float_bits":
        return struct.unpack("<d", bytes.fromhex(body)[::-1])[0]
    if tag == "bytes":
        return bytes.fromhex(body)
    if tag == "map":
        result = {hashable(from_notation(k, tmp_path)): from_notation(v, tmp_path) for k, v in body}
        if len(result) != len(body):
            raise NotRepresentable("keys equal in Python")
        return result
    if tag == "set":
        members = {hashable(from_notation(item, tmp_path)) for item in body}
        if len(members) != len({json.dumps(item) for item in body}):
            raise NotRepresentable("members equal in Python (1 and 1.0)")
        return members
    if tag == "array":
        data = bytes.fromhex(body["data"])
        return np.frombuffer(data, dtype=np.dtype(body["dtype"]).newbyteorder("<")).reshape(body["shape"]).copy()
    if tag == "file":
        path = tmp_path / f"file-{len(list(tmp_path.iterdir()))}"
        path.write_bytes(bytes.fromhex(body))
        return hitsave.File(path)
    if tag == "unhashable":
        return threading.Lock()
    raise NotRepresentable(tag)


def load(name):
    return json.loads((VECTORS / name).read_text())


VALUES = load("values.json")


@pytest.mark.parametrize("case", VALUES["cases"], ids=lambda case: case["name"])
def test_value_vector(case, tmp_path):
    try:
        value = from_notation(case["value"], tmp_path)
    except NotRepresentable:
        pytest.skip("not expressible as a Python value")
    assert _native.canonical_bytes(value).hex() == case["canonical"]
    assert hitsave.value_digest(value) == case["digest"]


@pytest.mark.parametrize("case", [c for c in VALUES["errors"] if c["value"] is not None], ids=lambda case: case["name"])
def test_value_error_vector(case, tmp_path):
    if "array" in json.dumps(case["value"]):
        pytest.skip("numpy cannot build an array whose data contradicts its dtype or shape")
    if "{member" in (case["path"] or ""):
        pytest.skip("a Python set's iteration order is not the notation's order")
    try:
        value = from_notation(case["value"], tmp_path)
    except NotRepresentable:
        pytest.skip("not expressible as a Python value")
    with pytest.raises(hitsave.HitSaveError) as raised:
        hitsave.value_digest(value)
    assert raised.value.code == case["code"]
    assert raised.value.path == case["path"]


@pytest.mark.parametrize("case", load("keys.json")["cases"], ids=lambda case: case["name"])
def test_key_vector(case, tmp_path):
    arguments = hitsave.value_digest(from_notation(case["arguments"], tmp_path))
    assert arguments == case["arguments_digest"]
    assert _native.derive_key(arguments, **case["identity"]) == case["key"]


@pytest.mark.parametrize("case", load("graphs.json")["fingerprints"], ids=lambda case: case["name"])
def test_graph_vector(case):
    nodes = [(n["kind"], n["name"], n["content"], n["deps"]) for n in case["nodes"]]
    assert _native.fingerprints(nodes) == [case["fingerprints"][n["name"]] for n in case["nodes"]]


def test_python_specific_values():
    # Strided arrays in C order equal their C-order copies; a transposed one
    # does not (`np.ravel(a, order='K')` reads memory order): it is its copy
    # marked with its layout. A big-endian array is its little-endian copy
    # marked big-endian (`a.tobytes()` tells them apart); a numpy scalar is
    # not its Python value; bytes-like types stay apart.
    assert hitsave.value_digest(np.float64(2.0)) != hitsave.value_digest(2.0)
    a = np.arange(12, dtype="<i4").reshape(3, 4)
    assert hitsave.value_digest(a[:, ::2]) == hitsave.value_digest(np.ascontiguousarray(a[:, ::2]))
    assert hitsave.value_digest(a.T) != hitsave.value_digest(np.ascontiguousarray(a.T))
    assert hitsave.value_digest(a.T) == hitsave.value_digest(np.asfortranarray(a.T.copy()))
    big_endian = a.astype(">i4")
    assert hitsave.value_digest(big_endian) != hitsave.value_digest(a)
    assert hitsave.value_digest(big_endian.T) == hitsave.value_digest(np.asfortranarray(a.T, dtype=">i4"))
    assert hitsave.value_digest(big_endian.T) != hitsave.value_digest(np.ascontiguousarray(a.T, dtype=">i4"))
    assert hitsave.value_digest(big_endian) != hitsave.value_digest(big_endian.astype(">i8"))
    assert len({hitsave.value_digest(v) for v in (b"xy", bytearray(b"xy"), memoryview(b"xy"))}) == 3
    assert hitsave.value_digest(True) != hitsave.value_digest(1)
    assert hitsave.value_digest(math.nan) == hitsave.value_digest(float("-nan"))
    big = np.zeros(1 << 20, dtype=np.uint8)
    assert hitsave.value_digest(big) == hitsave.value_digest(big.copy())
