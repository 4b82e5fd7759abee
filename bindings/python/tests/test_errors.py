import re
import threading

import pytest

import hitsave
from hitsave import _native
from conftest import REPO


def test_error_codes_match_rust_and_docs():
    documented = re.findall(r"^\| `([a-z0-9_]+)` \|", (REPO / "docs" / "errors.md").read_text(), re.MULTILINE)
    assert _native.error_codes() == documented
    for code in documented:
        name = "".join(part.capitalize() for part in code.split("_")).replace("Utf8", "UTF8").replace("Io", "IO") + "Error"
        cls = getattr(hitsave, name)
        assert issubclass(cls, hitsave.HitSaveError), name


def test_unhashable_argument_names_its_path_and_type():
    @hitsave.memo
    def f(a, b):
        return a

    with pytest.raises(hitsave.UnhashableValueError) as raised:
        f(1, {"x": [0, 0, 0, threading.Lock()]})
    assert raised.value.code == "unhashable_value"
    assert raised.value.path == 'args[1]["x"][3]'
    assert "_thread.lock" in str(raised.value)
    assert isinstance(raised.value, TypeError)


def test_generators_are_refused_and_stateless_objects_hash_by_their_type():
    with pytest.raises(hitsave.UnhashableValueError):
        hitsave.value_digest(x for x in range(3))
    # A bare object() (a sentinel default) has no state: what pickle saves of
    # it is its type, so two of them are the same value, and not None.
    assert hitsave.value_digest(object()) == hitsave.value_digest(object())
    assert hitsave.value_digest(object()) != hitsave.value_digest(None)


def test_bad_identity_is_a_typed_error():
    f = hitsave.memo(name="", version="1")(lambda x: x)
    with pytest.raises(hitsave.InvalidIdentityError) as raised:
        f(1)
    assert raised.value.code == "invalid_identity"


def test_a_cycle_is_named_where_it_closes_and_sharing_is_no_cycle():
    @hitsave.memo
    def f(a, b):
        return a

    node = {"name": "root", "children": []}
    node["children"].append({"name": "leaf", "parent": node})
    with pytest.raises(hitsave.UnhashableValueError) as raised:
        f.key(1, {"x": node})
    assert raised.value.path == 'args[1]["x"]["children"][0]["parent"]'
    assert "cyclic dict" in str(raised.value)
    items = []
    items.append(items)
    with pytest.raises(hitsave.UnhashableValueError, match="cyclic list"):
        hitsave.value_digest(items)
    # One object reached twice is no cycle, but not two equal copies either
    # (a function appending to one sees the other change).
    shared = {"n": 1}
    assert f.key(1, [shared, shared]) == f.key(1, [shared, shared])
    assert f.key(1, [shared, shared]) != f.key(1, [{"n": 1}, {"n": 1}])
