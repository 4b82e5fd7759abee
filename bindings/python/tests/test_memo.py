"""@memo as a user uses it: real projects on disk, edited between runs of
fresh interpreters, sharing one store."""

import asyncio
import dataclasses
import json
import os
import re
import sys
import threading

import pytest

import hitsave

CALL = """
import app
print("result", app.compute(3))
"""


def ran(result):
    return "computing" in result.stdout


def write_app(project, helper_body="return x + 1", extra=""):
    project.write(
        "app.py",
        f'''
        from hitsave import memo
        import helpers

        SCALE = 10

        @memo
        def compute(x):
            """Docstring."""
            print("computing")
            return helpers.helper(x) * SCALE
        {extra}
        ''',
    )
    project.write(
        "helpers.py",
        f"""
        def helper(x):
            {helper_body}

        def unrelated():
            return 0
        """,
    )


def test_second_run_hits_and_an_edit_in_an_imported_module_misses(project):
    write_app(project)
    first = project.run(CALL)
    assert ran(first) and "result 40" in first.stdout
    second = project.run(CALL)
    assert not ran(second) and "result 40" in second.stdout
    write_app(project, helper_body="return x + 2")
    third = project.run(CALL)
    assert ran(third) and "result 50" in third.stdout
    # Reverting the edit finds the old result again.
    write_app(project)
    fourth = project.run(CALL)
    assert not ran(fourth) and "result 40" in fourth.stdout


def test_comments_docstrings_and_unreached_edits_do_not_count(project):
    write_app(project)
    project.run(CALL)
    project.write(
        "helpers.py",
        """
        def helper(x):
            # a comment

            return x + 1

        def unrelated():
            return 12345
        """,
    )
    assert not ran(project.run(CALL))


def test_global_constant_edit_misses(project):
    write_app(project)
    project.run(CALL)
    project.write("app.py", (project.root / "app.py").read_text().replace("SCALE = 10", "SCALE = 11"))
    result = project.run(CALL)
    assert ran(result) and "result 44" in result.stdout


def test_globals_in_lambdas_comprehensions_and_nested_functions_count(project):
    project.write(
        "app.py",
        """
        from hitsave import memo

        OFFSET = 1

        @memo
        def compute(x):
            print("computing")
            inner = lambda v: v + OFFSET
            def nested(v):
                return inner(v)
            return sum(nested(i) for i in range(x))
        """,
    )
    project.run(CALL)
    assert not ran(project.run(CALL))
    project.write("app.py", (project.root / "app.py").read_text().replace("OFFSET = 1", "OFFSET = 2"))
    assert ran(project.run(CALL))


def test_base_class_edit_misses(project):
    project.write(
        "shapes.py",
        """
        class Base:
            def area(self):
                return 1
        """,
    )
    project.write(
        "app.py",
        """
        from hitsave import memo
        from shapes import Base

        class Square(Base):
            pass

        @memo
        def compute(x):
            print("computing")
            return Square().area() * x
        """,
    )
    project.run(CALL)
    assert not ran(project.run(CALL))
    project.write("shapes.py", (project.root / "shapes.py").read_text().replace("return 1", "return 2"))
    assert ran(project.run(CALL))


def test_keyword_order_and_defaults_do_not_change_the_key():
    @hitsave.memo
    def f(a, b=2, *, c=3):
        return a + b + c

    assert f.key(1) == f.key(1, 2) == f.key(a=1, c=3, b=2) == f.key(1, b=2, c=3)
    assert f.key(1) != f.key(2)


def test_a_callable_without_a_signature_is_keyed_by_its_arguments_as_given():
    # `hitsave.memo(str)` raised Python's ValueError ("no signature found for
    # builtin type") at its first call: builtin types and some C functions
    # have no signature to bind by. They are keyed as `(*args, **kwargs)`.
    parse = hitsave.memo(int)
    assert (parse("10", base=2), parse("10", base=8), parse("10")) == (2, 8, 10)
    assert parse.key("10", base=2) != parse.key("10", base=8)
    assert parse.key("10", base=2) == parse.key("10", **{"base": 2})
    assert hitsave.memo(str)(12) == "12"
    assert hitsave.memo(bytes)(bytearray(b"ab")) == b"ab"


def test_explicit_identity_ignore_lookup_clear_and_why():
    calls = []

    @hitsave.memo(name="train", version="1", ignore=["verbose"])
    def train(epochs, verbose=False):
        calls.append(epochs)
        return epochs * 2

    assert train.lookup(3) is hitsave.MISS
    assert train(3, verbose=True) == 6
    assert train(3, verbose=False) == 6
    assert calls == [3]
    assert train.lookup(3) == 6
    assert train.why(3) == "hit"
    assert train.why(4).startswith("miss")
    assert train.clear() == 1
    assert train.lookup(3) is hitsave.MISS


def test_threads_share_results():
    calls = []

    @hitsave.memo
    def f(x):
        calls.append(x)
        return x * x

    threads = [threading.Thread(target=lambda i=i: [f(i % 4) for _ in range(20)]) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(calls)) == [0, 1, 2, 3]
    assert [f(i) for i in range(4)] == [0, 1, 4, 9]


def test_async_calls_of_one_key_run_once_and_failures_are_not_cached():
    calls = []

    @hitsave.memo
    async def fetch(x):
        calls.append(x)
        await asyncio.sleep(0.05)
        if x < 0:
            raise ValueError("negative")
        return x + 1

    async def main():
        results = await asyncio.gather(*(fetch(5) for _ in range(5)))
        assert results == [6] * 5
        with pytest.raises(ValueError):
            await fetch(-1)
        with pytest.raises(ValueError):
            await fetch(-1)

    asyncio.run(main())
    assert calls == [5, -1, -1]


def test_methods_hash_self_by_its_fields():
    class Model:
        def __init__(self, scale):
            self.scale = scale

        @hitsave.memo
        def predict(self, x):
            return self.scale * x

    assert Model(2).predict(3) == 6
    assert Model(3).predict(3) == 9
    assert Model(2).predict.__self__ if hasattr(Model(2).predict, "__self__") else True


def test_processes_share_one_store(project):
    write_app(project)
    results = [project.run(CALL) for _ in range(3)]
    assert sum(ran(result) for result in results) == 1


def test_an_unusable_store_still_returns_the_value(project, tmp_path):
    write_app(project)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    result = project.run(CALL, env={"HITSAVE_CACHE_DIR": str(blocker / "cache")})
    assert "result 40" in result.stdout
    assert "warning[store_io]" in result.stderr


def test_mode_off_calls_through(project):
    write_app(project)
    assert ran(project.run(CALL, env={"HITSAVE_MODE": "off"}))
    assert ran(project.run(CALL, env={"HITSAVE_MODE": "off"}))


def test_cli_is_reachable_from_python(project):
    write_app(project)
    project.run(CALL)
    listing = project.run("import sys, runpy; sys.argv = ['hitsave', 'ls']; runpy.run_module('hitsave', run_name='__main__')", check=False)
    assert listing.returncode == 0, listing.stderr
    assert "app:compute" in listing.stdout and "python" in listing.stdout


def test_plain_functions_bind_like_python_does():
    @hitsave.memo
    def f(a, b=2):
        return a + b

    assert f.key(1) == f.key(1, 2) == f.key(a=1) == f.key(b=2, a=1) == f.key(1, b=2)
    assert f.key(1) != f.key(1, 3)
    for bad in [lambda: f.key(), lambda: f.key(1, a=2), lambda: f.key(1, c=3), lambda: f.key(1, 2, 3)]:
        with pytest.raises(TypeError):
            bad()

    @hitsave.memo(ignore=["verbose"])
    def g(x, verbose=False):
        return x

    assert g.key(1, True) == g.key(1) == g.key(1, verbose=True)


def test_results_come_back_exactly_portable_or_pickled(isolated_cache):
    np = pytest.importorskip("numpy")
    values = [
        None, True, 7, 2**100, -3.5, 1.0, "héllo", b"\x00\xff", [1, [2.0, None]], {"a": 1, 2: [3]},
        np.arange(6, dtype=np.float32).reshape(2, 3),
        (1, 2), {1, 2}, bytearray(b"x"), {"t": (1,)},
    ]
    for index, value in enumerate(values):
        @hitsave.memo(name=f"identity-{index}", version="1")
        def identity(x):
            return x

        first = identity(value)
        again = identity(value)
        store = hitsave._memo._open_store()
        codec = store.get(identity.key(value))[0]
        if isinstance(value, np.ndarray):
            assert again.dtype == value.dtype and again.shape == value.shape and (again == value).all()
            again[0, 0] = 99  # writable, like the original
            assert codec == "portable"
        else:
            assert type(again) is type(value) and again == value, (value, again)
            exact = isinstance(value, (type(None), bool, int, float, str, bytes, list)) or (isinstance(value, dict) and value != {"t": (1,)})
            assert codec == ("portable" if exact else "pickle"), (value, codec)
        assert first == value if not isinstance(value, np.ndarray) else True


def test_relative_imports_inside_a_package_count(project):
    project.write("pkg/__init__.py", "")
    project.write(
        "pkg/helpers.py",
        """
        def helper(x):
            return x + 1
        """,
    )
    project.write(
        "pkg/app.py",
        """
        from hitsave import memo
        from .helpers import helper
        from . import helpers

        @memo
        def compute(x):
            print("computing")
            return helper(x) + helpers.helper(x)
        """,
    )
    call = "from pkg import app; print('result', app.compute(3))"
    assert ran(project.run(call))
    assert not ran(project.run(call))
    project.write("pkg/helpers.py", (project.root / "pkg/helpers.py").read_text().replace("x + 1", "x + 2"))
    result = project.run(call)
    assert ran(result) and "result 10" in result.stdout


def test_decorated_dependencies_count_through_the_wrapper(project):
    project.write(
        "app.py",
        """
        import functools
        from hitsave import memo

        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return fn(*args)
            return wrapper

        @logged
        def helper(x):
            return x * 2

        @memo
        def compute(x):
            print("computing")
            return helper(x)
        """,
    )
    assert ran(project.run(CALL))
    assert not ran(project.run(CALL))
    project.write("app.py", (project.root / "app.py").read_text().replace("x * 2", "x * 3"))
    result = project.run(CALL)
    assert ran(result) and "result 9" in result.stdout


DEPENDENCY_SHAPES = """
import functools
from hitsave import memo

def twice(fn):                      # a decorator of the project
    @functools.wraps(fn)
    def inner(*args):
        return fn(*args) * 2        # EDIT-wrapper
    return inner

SCALE = 1                           # EDIT-property

class Model:
    def __init__(self):
        self.k = 1
    def __call__(self, x):
        return x * self.k + 0       # EDIT-call
    @property
    def scale(self):
        return SCALE
    @functools.cached_property
    def bias(self):
        return helper()
    @twice
    def doubled(self, x):
        return x

def helper():
    return 0                        # EDIT-cached

def make(k):
    def add(x):
        return x + k()
    return add

def one():
    return 1

def two():
    return 2                        # EDIT-closure

add1, add2 = make(one), make(two)
offset = lambda x: x + 0            # EDIT-lambda
model = Model()

@memo
@twice
def decorated(x):
    return x

@memo
def uses_model(x):
    return model(x) + model.scale + model.bias + model.doubled(x)

@memo
def uses_closures(x):
    return add1(x) + add2(x)

used_lambda = memo(lambda x: offset(x))

def rate():
    return 1                        # EDIT-classattr

class Predictor:
    def predict(self, x):
        return x * 2                # EDIT-classinst

class Pipeline:
    model = Predictor()
    RATE = rate()

@memo
def uses_pipeline(x):
    return Pipeline.model.predict(x) + Pipeline.RATE

def triple(x):
    return x * 3                    # EDIT-list

class Scorer:
    def score(self, x):
        return x + 0                # EDIT-registry

STEPS = [triple, abs]
REGISTRY = {"s": Scorer()}

@memo
def uses_containers(x):
    return STEPS[0](x) + REGISTRY["s"].score(x)

def scaled_by(a, x):
    return a * x - 1                # EDIT-partial

by_two = functools.partial(scaled_by, 2)

@memo
def uses_partial(x):
    return by_two(x)
"""


@pytest.mark.parametrize(
    "mark, function",
    [
        ("EDIT-wrapper", "decorated"),      # the decorator's wrapper is code of its own
        ("EDIT-call", "uses_model"),        # a module-level instance runs its class's __call__
        ("EDIT-property", "uses_model"),    # a property's getter reads a global
        ("EDIT-cached", "uses_model"),      # a cached_property's function calls a helper
        ("EDIT-closure", "uses_closures"),  # the second closure one factory made
        ("EDIT-lambda", "used_lambda"),     # a lambda read by a lambda
        ("EDIT-classinst", "uses_pipeline"),  # a class attribute holding an instance of a project class
        ("EDIT-classattr", "uses_pipeline"),  # a class attribute computed by a module function
        ("EDIT-list", "uses_containers"),   # a function in a list of steps (with a builtin)
        ("EDIT-registry", "uses_containers"),  # an instance of a project class in a registry dict
        ("EDIT-partial", "uses_partial"),   # a module-level partial (was named by its address: never hit)
    ],
)
def test_code_reached_through_wrappers_instances_properties_and_closures_counts(project, mark, function):
    # Each of these edits used to keep hitting results of the old code.
    project.write("shapes.py", DEPENDENCY_SHAPES)
    call = f"import shapes; print(shapes.{function}.why(3), shapes.{function}(3))"
    first = project.run(call).stdout.split()
    assert first[0] == "miss:", first
    assert project.run(call).stdout.split()[0] == "hit"
    source = (project.root / "shapes.py").read_text()
    line = next(line for line in source.splitlines() if mark in line)
    edited = line.replace("* 2 ", "* 3 ").replace("+ 0 ", "+ 5 ").replace("= 1 ", "= 4 ").replace("return 0 ", "return 6 ").replace("return 2 ", "return 7 ").replace("return 1 ", "return 8 ").replace("x * 3 ", "x * 9 ").replace("- 1 ", "- 4 ")
    assert edited != line, line
    project.write("shapes.py", source.replace(line, edited))
    after = project.run(call).stdout.split()
    assert after[0] == "miss:" and after[-1] != first[-1], (first, after)


def test_a_forked_child_uses_the_store(project):
    write_app(project)
    result = project.run(
        """
        import os, sys, app
        print("parent", app.compute(3))
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            print("child", app.compute(3), app.compute(4))
            sys.stdout.flush()
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent sees the child's result:", app.compute.lookup(4))
        """
    )
    # compute(3) once in the parent; the child hits it and computes compute(4) once.
    assert result.stdout.count("computing") == 2, result.stdout
    assert "child 40 50" in result.stdout
    assert "parent sees the child's result: 50" in result.stdout


def test_large_array_results_load_by_memory_map(project):
    pytest.importorskip("numpy")
    project.write(
        "arrays.py",
        """
        import time
        import numpy as np
        from hitsave import memo

        @memo
        def big(n):
            print("computing", flush=True)
            time.sleep(0.2)  # slow enough to be worth storing (docs/spec/policy.md)
            return {"grid": np.arange(n, dtype=np.float64).reshape(-1, 4), "ids": np.arange(n, dtype=np.int32), "small": np.ones(3, dtype=np.uint8)}
        """,
    )
    check = """
        import numpy as np
        import arrays
        from hitsave import _native

        def mapped(array):
            base = array
            while base is not None and not isinstance(base, _native.Mapped):
                base = getattr(base, "base", None) if not isinstance(base, memoryview) else base.obj
            return base is not None

        n = 1 << 20
        out = arrays.big(n)
        assert out["grid"].shape == (n // 4, 4) and out["grid"].dtype == np.float64
        assert (out["grid"].ravel() == np.arange(n)).all() and (out["ids"] == np.arange(n, dtype=np.int32)).all()
        print("mapped", mapped(out["grid"]), mapped(out["ids"]), mapped(out["small"]))
        print("aligned", out["grid"].flags.aligned, out["ids"].flags.aligned)
        out["grid"][0, 0] = -1.0   # writable, like the array the function returned
        assert arrays.big(n)["grid"][0, 0] == 0.0, "a write to one result never reaches the store"
        """
    first = project.run(check)
    assert first.stdout.count("computing") == 1
    assert "mapped False False False" in first.stdout  # computed: the function's own arrays
    second = project.run(check)
    assert "computing" not in second.stdout, second.stdout
    # Large arrays are views of the mapped result; the small one is copied.
    assert "mapped True True False" in second.stdout, second.stdout
    assert "aligned True True" in second.stdout
    verify = project.run("import subprocess, sys; subprocess.run([sys.executable, '-m', 'hitsave', 'verify'], check=True)")
    assert verify.returncode == 0


@pytest.mark.parametrize("lock_wait, computations", [(None, 1), ("0", 2)])
def test_two_processes_missing_one_key_compute_it_once(project, lock_wait, computations):
    project.write(
        "slow.py",
        """
        import time
        from hitsave import memo

        @memo
        def slow(x):
            print("computing", flush=True)
            time.sleep(2.5)
            return x * 2
        """,
    )
    env = {} if lock_wait is None else {"HITSAVE_LOCK_WAIT": lock_wait}
    start = project.root / "go"
    code = f"""
        import os, time
        from slow import slow
        slow.key(0)  # analysis and the core loaded before the race, so both start together
        while not os.path.exists({str(start)!r}):
            time.sleep(0.005)
        print("result", slow(21), flush=True)
        """
    import time

    children = [project.spawn(code, env) for _ in range(2)]
    time.sleep(1.5)  # both ready and waiting
    start.touch()
    outputs = [child.communicate(timeout=60)[0] for child in children]
    assert all("result 42" in out for out in outputs), outputs
    # With the compute lock (default) the second process waits and hits; with
    # HITSAVE_LOCK_WAIT=0 both compute (what the lock prevents).
    assert sum(out.count("computing") for out in outputs) == computations, outputs


def test_threads_missing_one_key_compute_it_once():
    import time

    runs = []

    @hitsave.memo(name="slow-threads", version="1")
    def slow(x):
        runs.append(x)
        time.sleep(0.5)
        return x + 1

    results = []
    threads = [threading.Thread(target=lambda: results.append(slow(1))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [2, 2, 2, 2] and runs == [1]


def test_pickled_results_keep_large_buffers_out_of_band(project):
    pytest.importorskip("numpy")
    project.write(
        "objects.py",
        """
        import time
        import numpy as np
        from hitsave import memo

        @memo
        def pair(n):
            print("computing", flush=True)
            time.sleep(0.2)
            # A tuple has no portable form: pickled, with the arrays' data out of band.
            return (np.arange(n, dtype=np.int64), np.asfortranarray(np.arange(n, dtype=np.float32).reshape(-1, 8)), np.ones(4), "label")

        @memo
        def small(n):
            return (np.arange(n, dtype=np.int16), "tiny")
        """,
    )
    check = """
        import numpy as np
        import objects
        from hitsave import _native

        def mapped(array):
            base = array
            while base is not None and not isinstance(base, _native.Mapped):
                base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
            return base is not None

        n = 1 << 18
        a, f, small_part, label = objects.pair(n)
        assert (a == np.arange(n)).all() and label == "label" and (small_part == 1).all()
        assert f.flags.f_contiguous and (f == np.arange(n, dtype=np.float32).reshape(-1, 8)).all()
        print("mapped", mapped(a), mapped(f), a.flags.writeable, a.flags.aligned)
        a[0] = -5
        assert objects.pair(n)[0][0] == 0
        s, _ = objects.small(2100)  # 4200 bytes: out of band, but the whole result is inline in the index
        s[0] = 9                     # copied out of the index, so writable
        print("small", int(s[1]), s.flags.writeable)
        """
    first = project.run(check)
    assert first.stdout.count("computing") == 1 and "mapped False False True True" in first.stdout, first.stdout
    second = project.run(check)
    assert "computing" not in second.stdout
    assert "mapped True True True True" in second.stdout, second.stdout
    assert "small 1 True" in second.stdout


@pytest.mark.parametrize("shape", ["array", "pickled", "bytes"])
def test_a_large_result_is_stored_without_a_copy_in_memory(project, shape):
    """A result's large buffers are written to the store from where they lie
    (docs/python.md, "Results"): storing a 160 MiB result raises the process's
    peak memory by the result and little more, not by two more copies (the
    encoded stream and a bytes object, before)."""
    pytest.importorskip("numpy")
    make = {
        "array": "np.arange(n // 8, dtype=np.float64)",
        "pickled": "(np.arange(n // 8, dtype=np.float64), 'label')",  # a tuple: pickled, data out of band
        "bytes": "bytes(range(256)) * (n // 256)",
    }[shape]
    project.write(
        "heavy.py",
        f"""
        import time
        import numpy as np
        from hitsave import memo

        @memo
        def heavy(n):
            print("computing", flush=True)
            time.sleep(0.4)  # slow enough to be worth storing
            return {make}
        """,
    )
    check = """
        import resource
        import numpy as np
        import heavy

        n = 160 << 20
        np.arange(1024).sum()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out = heavy.heavy(n)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        print("grown", round(grown / n, 2), flush=True)
        if isinstance(out, bytes):
            assert out == bytes(range(256)) * (n // 256)
        else:
            assert ((out[0] if isinstance(out, tuple) else out) == np.arange(n // 8)).all()
        """
    first = project.run(check)
    assert "computing" in first.stdout, first.stdout
    grown = float(first.stdout.split("grown ")[1].split()[0])
    assert grown <= 1.3, f"storing a result of n bytes grew peak memory by {grown} n"
    second = project.run(check)
    assert "computing" not in second.stdout, second.stdout
    verify = project.run("import subprocess, sys; subprocess.run([sys.executable, '-m', 'hitsave', 'verify'], check=True)")
    assert verify.returncode == 0


def test_plain_pickles_stored_before_containers_still_load(isolated_cache):
    import pickle

    @hitsave.memo(name="legacy-pickle", version="1")
    def legacy(x):
        raise AssertionError("must not run: the stored result answers")

    store = hitsave._memo._open_store()
    key = legacy.key(1)
    arguments = hitsave._native.value_digest([[1], {}])
    store.put(key, function_id="legacy-pickle@1", function_name="legacy", arguments=arguments, codec="pickle",
              data=pickle.dumps({"set": {1, 2}}, protocol=5), compute_micros=1000)
    assert legacy(1) == {"set": {1, 2}}


def test_a_result_the_policy_declines_is_returned_with_a_warning_and_why_says_so(isolated_cache, monkeypatch):
    np = pytest.importorskip("numpy")
    # Over the whole budget: declined whatever the machine's speed (the other
    # reason, cheaper to recompute than to read back, depends on how long the
    # call took, and a loaded machine once made a blink take 2 ms: the host's
    # store tests cover it with a given compute time).
    monkeypatch.setenv("HITSAVE_MAX_SIZE", "1MiB")
    runs = []

    @hitsave.memo(name="cheap-and-big", version="1")
    def cheap(n):
        runs.append(n)
        return np.zeros(n, dtype=np.uint8)

    with pytest.warns(hitsave.NotStoredWarning, match=r"not stored: larger than the whole size budget \(1048576 bytes\)"):
        assert cheap(4 << 20).shape == (4 << 20,)
    why = cheap.why(4 << 20)
    assert why.startswith("miss: the last result for these arguments (") and "was not stored: larger than the whole" in why, why
    import warnings

    # Said once per function and process (the host's rule, as in Node): the
    # second declined result of `cheap` is computed again without a warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cheap(4 << 20)
    assert [w for w in caught if issubclass(w.category, hitsave.NotStoredWarning)] == []
    assert runs == [4 << 20, 4 << 20], "not stored, so computed again"

    @hitsave.memo(name="cheap-and-small", version="1")
    def small(n):
        return n + 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # small results are always kept: no warning
        assert small(1) == 2
    assert small.why(1) == "hit"


def test_why_explains_a_policy_decline_in_a_later_process(project):
    pytest.importorskip("numpy")
    project.write(
        "cheap.py",
        """
        import numpy as np
        from hitsave import memo

        @memo(name="cheap-later", version="1")
        def cheap(n):
            return np.zeros(n, dtype=np.uint8)  # big and made in a blink
        """,
    )
    budget = {"HITSAVE_MAX_SIZE": "1MiB"}  # declined whatever the machine's speed
    project.run("import warnings, cheap; warnings.simplefilter('ignore'); cheap.cheap(4 << 20)", budget)
    # A new process has seen nothing itself; the store remembers the decline.
    out = project.run("import cheap; print(cheap.cheap.why(4 << 20)); print(cheap.cheap.why(5 << 20))", budget).stdout.splitlines()
    assert re.match(r"miss: the last result for these arguments \(41943\d\d bytes, computed in \d+ µs\) was not stored", out[0]), out
    assert "larger than the whole size budget (1048576 bytes)" in out[0], out
    assert out[1].startswith("miss: no result is stored for these arguments; a result of this function was not stored by the cache policy (41943"), out
    # Clearing the function forgets it.
    project.run("import cheap; cheap.cheap.clear()")
    out = project.run("import cheap; print(cheap.cheap.why(4 << 20))").stdout.strip()
    assert out == "miss: nothing is stored for this function yet", out


def test_a_call_that_changes_its_arguments_is_returned_not_stored(project):
    """A hit returns the result without running the body, so it would not
    make the change the call made to its arguments: code after it would see
    other values (`f(a, a)` adding to `a` in place; a list appended to). Such
    a result is returned with a warning and not stored, sync and async; a
    function that only reads its arguments hits as before."""
    project.write(
        "job.py",
        """
        import asyncio, json, sys, warnings
        import numpy as np
        from hitsave import memo

        @memo
        def bump(x, y):
            print("computed", file=sys.stderr)
            x += 1
            return int(y.sum())

        @memo
        async def count(d):
            print("computed", file=sys.stderr)
            d["n"] = d.get("n", 0) + 1
            return d["n"]

        @memo
        def total(xs):
            print("computed", file=sys.stderr)
            return sum(xs)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            a = np.zeros(3)
            first = [bump(a, a), bump(a, a.copy())]
            d = {}
            counts = [asyncio.run(count(d)), asyncio.run(count(d))]
            print(json.dumps([first, counts, d, total([1, 2])]))
            print(json.dumps(sorted({str(w.message).split(": ")[1] for w in caught if "changed its arguments" in str(w.message)})))
        """,
    )
    for run in range(2):
        done = project.run("import job")
        values, warned = (json.loads(line) for line in done.stdout.splitlines())
        assert values == [[3, 3], [1, 2], {"n": 2}, 3], (run, values)
        assert warned == ["job:bump", "job:count"], warned
        # bump twice, count twice, every run; total only in the first.
        assert done.stderr.count("computed") == (5 if run == 0 else 4), (run, done.stderr)


def test_async_waits_for_another_process_hold_no_executor_thread(project):
    project.write(
        "slow_async.py",
        """
        import asyncio, os
        from hitsave import memo

        @memo
        async def slow(x):
            with open(os.path.join(os.path.dirname(__file__), "started.log"), "a") as log:
                log.write("x")
            await asyncio.sleep(2.5)
            return x * 10
        """,
    )
    project.write(
        "holder.py",
        """
        import asyncio
        from slow_async import slow
        async def main():
            print(await asyncio.gather(*(slow(i) for i in range(8))), flush=True)
        asyncio.run(main())
        """,
    )
    holder = project.spawn("import holder")
    try:
        waiter = project.run(
            """
            import asyncio, json, os, time
            from slow_async import slow
            while not os.path.exists("started.log") or len(open("started.log").read()) < 8:
                time.sleep(0.005)   # the holder computes all eight keys and holds their locks

            async def main():
                asked = time.monotonic()
                values = asyncio.gather(*(slow(i) for i in range(8)))
                await asyncio.sleep(0.1)
                start = time.monotonic()
                await asyncio.to_thread(lambda: None)   # needs a thread of the default executor
                thread_ms = (time.monotonic() - start) * 1000
                print(json.dumps({"values": await values, "thread_ms": thread_ms, "waited_ms": (time.monotonic() - asked) * 1000}))
            asyncio.run(main())
            """
        )
    finally:
        holder.communicate(timeout=60)
    out = __import__("json").loads(waiter.stdout.strip().splitlines()[-1])
    assert out["values"] == [i * 10 for i in range(8)]
    assert (project.root / "started.log").read_text() == "x" * 8, "the waiter computed nothing"
    assert out["waited_ms"] >= 1000, out
    assert out["thread_ms"] < 1000, f"an executor thread was free while eight keys waited: {out}"


def test_bound_methods_and_partials_key_on_what_they_bind(project):
    project.write(
        "models.py",
        """
        import functools
        from hitsave import memo

        def log(*what):
            with open("runs.log", "a") as out:
                out.write(repr(what) + "\\n")

        class Model:
            def __init__(self, k):
                self.k = k

            def predict(self, x):
                log("predict", self.k, x)
                return x * self.k

        def scale(k, x, offset=0):
            log("scale", k, x)
            return k * x + offset

        three = memo(Model(3).predict)
        four = memo(Model(4).predict)
        double = memo(functools.partial(scale, 2, offset=1))
        triple = memo(functools.partial(functools.partial(scale, 3), offset=1))
        """,
    )
    code = "import json, models; print(json.dumps([models.three(2), models.four(2), models.double(5), models.triple(5)]))"
    log = project.root / "runs.log"

    def runs() -> list[str]:
        lines = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return lines

    assert json.loads(project.run(code).stdout) == [6, 8, 11, 16], "each bound instance and partial has its own results"
    assert len(runs()) == 4
    assert json.loads(project.run(code).stdout) == [6, 8, 11, 16]
    assert runs() == [], "a new process hits all four"
    text = (project.root / "models.py").read_text().replace("return x * self.k", "return x * self.k + 100")
    (project.root / "models.py").write_text(text)
    assert json.loads(project.run(code).stdout) == [106, 108, 11, 16]
    assert sorted(line.split(",")[0] for line in runs()) == ["('predict'", "('predict'"], "an edit of the method misses only its memos"


def test_static_and_class_methods_in_either_decorator_order(project):
    project.write(
        "shapes.py",
        """
        from hitsave import memo

        def log(what):
            with open("runs.log", "a") as out:
                out.write(what + "\\n")

        class Shape:
            sides = 3

            @staticmethod
            @memo
            def double(x):
                log("double")
                return 2 * x

            @classmethod
            @memo
            def perimeter(cls, length):
                log("perimeter " + cls.__name__)
                return cls.sides * length

            @memo
            @classmethod
            def area_hint(cls, length):
                log("area_hint " + cls.__name__)
                return cls.sides * length * length

        class Square(Shape):
            sides = 4
        """,
    )
    code = (
        "import json, shapes; S, Q = shapes.Shape, shapes.Square; "
        "print(json.dumps([S.double(2), S.perimeter(2), Q.perimeter(2), S.area_hint(2), Q.area_hint(2)]))"
    )
    log = project.root / "runs.log"
    assert json.loads(project.run(code).stdout) == [4, 6, 8, 12, 16], "the class is part of a classmethod's key"
    assert len(log.read_text().splitlines()) == 5
    log.unlink()
    assert json.loads(project.run(code).stdout) == [4, 6, 8, 12, 16]
    assert not log.exists(), "a new process hits all five"


def test_a_global_changed_after_the_first_call_is_seen_in_the_same_process(project):
    project.write(
        "cfg.py",
        """
        from hitsave import memo

        CONFIG = {"scale": 3, "tags": ["a"]}
        OFFSET = 1

        def helper(x):
            return x + OFFSET

        @memo
        def f(x):
            return helper(x) * CONFIG["scale"]

        def make(box):
            @memo
            def g(x):
                return x * box[0]
            return g
        """,
    )
    code = """
        import json, cfg
        out = [cfg.f(2)]
        cfg.CONFIG["scale"] = 5          # changed in place
        out.append(cfg.f(2))
        cfg.OFFSET = 2                   # rebound, read by a helper
        out.append(cfg.f(2))
        cfg.CONFIG = {"scale": 1}        # rebound
        out.append(cfg.f(2))
        box = [2]
        g = cfg.make(box)
        out.append(g(3))
        box[0] = 4                       # a closure's value changed in place
        out.append(g(3))
        print(json.dumps(out))
    """
    assert json.loads(project.run(code).stdout) == [9, 15, 20, 4, 6, 12]
    # And every one of those results is found again by a process that starts with those values.
    again = """
        import json, cfg
        cfg.CONFIG["scale"] = 5
        print(json.dumps([cfg.f(2), cfg.f.why(2)]))
    """
    assert json.loads(project.run(again).stdout) == [15, "hit"]


def test_a_counter_or_a_log_the_function_only_adds_to_is_no_input(project):
    """`global RUNS; RUNS += 1`, `CALLS.append(x)`, `SEEN.add(x)`: the
    function only adds to them, so what they hold is no input of it and a
    repeated call hits in the process (every call used to miss: the counter
    changed the fingerprint). A function that reads the counter still sees
    it change (as Node's module state does)."""
    project.write(
        "counting.py",
        """
        import collections
        from hitsave import memo

        RUNS = 0
        TOTAL = 0.0
        CALLS = []
        SEEN = set()
        BY = {}
        RECENT = collections.deque()

        @memo
        def f(x):
            global RUNS, TOTAL
            RUNS += 1
            TOTAL += x
            CALLS.append(x)
            SEEN.add(x)
            BY.update({x: 1})
            RECENT.appendleft(x)
            print("ran:f")
            return x * 2

        @memo
        def g(x):
            return x + RUNS
        """,
    )
    code = """
        import json, counting as c
        out = [c.f(3), c.f(3), c.f(4), c.f(3), c.RUNS, c.g(1), c.f(5), c.g(1)]
        print(json.dumps(out))
    """
    first = project.run(code).stdout.split("\n")
    assert json.loads(first[-2]) == [6, 6, 8, 6, 2, 3, 10, 4]
    assert first.count("ran:f") == 3
    again = project.run(code).stdout.split("\n")
    assert json.loads(again[-2]) == [6, 6, 8, 6, 0, 1, 10, 1]
    assert again.count("ran:f") == 0


def test_large_containers_and_instances_changed_in_place_are_seen_within_the_process(project):
    """Too large to copy at every call (over 1,000 items), a container or an
    instance is compared one level deep by what it holds: an attribute
    rebound beside a large one, an item of a large list, a list inside a
    large dict. These calls used to return the first result."""
    project.write(
        "big_state.py",
        """
        from hitsave import memo

        class Model:
            def __init__(self):
                self.weight = 2
                self.table = list(range(5000))

        MODEL = Model()
        CONFIG = {"rows": list(range(5000)), **{f"k{i}": i for i in range(2000)}}
        ROWS = list(range(5000))

        @memo
        def predict(x):
            return MODEL.weight * x + MODEL.table[-1]

        @memo
        def last_row(x):
            return CONFIG["rows"][-1] + CONFIG["k5"] + x

        @memo
        def last(x):
            return ROWS[-1] + x
        """,
    )
    code = """
        import json, big_state as s
        out = [s.predict(1), s.last_row(1), s.last(1)]
        s.MODEL.weight = 3                 # an attribute beside a large one
        s.MODEL.table[-1] = 0              # an item of a large attribute
        s.CONFIG["rows"][-1] = 7           # a list inside a large dict
        s.CONFIG["k5"] = 50                # an item of the large dict
        s.ROWS[-1] = 9                     # an item of a large list
        out += [s.predict(1), s.last_row(1), s.last(1)]
        print(json.dumps(out))
    """
    assert json.loads(project.run(code).stdout) == [5001, 5005, 5000, 3, 58, 10]


def test_small_arrays_and_instances_changed_in_place_are_seen_within_the_process(project):
    pytest.importorskip("numpy")
    project.write(
        "state.py",
        """
        import numpy as np
        from hitsave import memo

        WEIGHTS = np.array([1, 2, 3])
        BIG = np.zeros(100_000)            # 800 KB: digested before every call

        class Settings:
            def __init__(self):
                self.scale = 3
                self.names = ["a"]

        SETTINGS = Settings()

        @memo
        def weighted(x):
            return int(WEIGHTS.sum()) * x

        @memo
        def scaled(x):
            return SETTINGS.scale * len(SETTINGS.names) * x

        @memo
        def big(x):
            return float(BIG[0]) + x
        """,
    )
    code = """
        import json, state
        out = [state.weighted(1), state.scaled(1), state.big(1)]
        state.WEIGHTS[0] = 100             # an element changed in place
        state.SETTINGS.scale = 5           # an attribute changed
        state.SETTINGS.names.append("b")   # an attribute's list changed in place
        out += [state.weighted(1), state.scaled(1)]
        state.BIG[0] = 7                   # too large to copy, not to digest (up to 8 MiB a graph)
        out.append(state.big(1))
        print(json.dumps(out))
    """
    assert json.loads(project.run(code).stdout) == [6, 3, 1.0, 105, 10, 8.0]
    again = """
        import json, state
        state.WEIGHTS[0] = 100
        state.SETTINGS.scale = 5
        state.SETTINGS.names.append("b")
        print(json.dumps([state.weighted.why(1), state.scaled.why(1)]))
    """
    assert json.loads(project.run(again).stdout) == ["hit", "hit"]


def test_a_class_attribute_changed_after_the_first_call_is_seen_in_the_same_process(project):
    """A class's attributes are the class's state: `Config.lr = 0.7` (a
    rebinding), `Config.layers.append(3)` (in place) or a method replaced at
    run time, after the first call, used to hit with the old value."""
    project.write(
        "config.py",
        """
        class Config:
            lr = 0.1
            layers = [1, 2]

            def factor(self):
                return 1
        """,
    )
    project.write(
        "job.py",
        """
        from hitsave import memo
        from config import Config

        @memo
        def f(x):
            print("ran", flush=True)
            return [Config.lr * x, sum(Config.layers), Config().factor()]
        """,
    )
    code = """
        import json, job
        from config import Config
        out = [job.f(1)]
        Config.lr = 0.7
        out.append(job.f(1))
        Config.layers.append(3)
        out.append(job.f(1))
        Config.factor = lambda self: 10
        out.append(job.f(1))
        out.append(job.f(1))
        print(json.dumps(out))
    """
    result = project.run(code).stdout.split("\n")
    assert json.loads(result[-2]) == [[0.1, 3, 1], [0.7, 3, 1], [0.7, 6, 1], [0.7, 6, 10], [0.7, 6, 10]]
    assert result.count("ran") == 4, result


def test_an_lru_cache_helper_is_cleared_when_what_it_read_changed_in_the_process(project):
    """A data file edited while the process runs: the next call misses (the
    file is watched), but its `@lru_cache` helper answered from before the
    edit, and that old value was stored under the new fingerprint, so every
    later process hit it. The graph's functools caches are cleared when it is
    built again after a change."""
    project.write("t.txt", "2")
    project.write(
        "app.py",
        """
        import functools
        from hitsave import memo

        @functools.lru_cache
        def table():
            with open("t.txt") as handle:
                return int(handle.read())

        @memo
        def f(x):
            return x * table()
        """,
    )
    first = project.run(
        """
        import os, time, app
        before = app.f(1)
        with open("t.txt", "w") as handle:
            handle.write("3")
        later = time.time() + 5  # a new size, time or inode: seen at the next call
        os.utime("t.txt", (later, later))
        print(before, app.f(1))
        """
    )
    assert first.stdout.split() == ["2", "3"]
    assert project.run("import app; print(app.f(1))").stdout.split() == ["3"], "a later process hits the right value"


SCALE_FOR_HANDLER_TEST = 2


def _work_for_handler_test(x):
    return x * SCALE_FOR_HANDLER_TEST


def test_memo_applied_again_to_one_function_reuses_its_analysis(isolated_cache, monkeypatch):
    from hitsave import _code

    analysed = []
    original = _code._graph_and_watched
    monkeypatch.setattr(_code, "_graph_and_watched", lambda obj: analysed.append(obj) or original(obj))
    # memo() inside the code that calls it (a request handler): an anti-pattern, but common.
    results = [hitsave.memo(_work_for_handler_test)(i % 3) for i in range(50)]
    assert results[:3] == [0, 2, 4]
    assert len(analysed) == 1, "analysed once, not once per memo()"
    monkeypatch.setattr(sys.modules[__name__], "SCALE_FOR_HANDLER_TEST", 3)
    assert hitsave.memo(_work_for_handler_test)(2) == 6, "a changed global is still seen"
    assert len(analysed) == 2


def test_async_lookups_never_hold_the_event_loop(project):
    """A coroutine's lookup (SQLite, the cloud) runs off the loop: with a
    server that never answers, the loop keeps ticking through the timeout."""
    import socket

    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(16)  # accepts connections, never answers
    port = black_hole.getsockname()[1]
    out = project.run("""
        import asyncio, json, time
        from hitsave import memo

        @memo
        async def f(x):
            return x + 1

        async def main():
            ticks = 0
            async def ticker():
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1
            task = asyncio.create_task(ticker())
            await asyncio.sleep(0.05)
            before = ticks
            start = time.monotonic()
            value = await f(1)
            took = time.monotonic() - start
            task.cancel()
            print(json.dumps({"value": value, "ticks": ticks - before, "took": took}))

        asyncio.run(main())
    """, env={"HITSAVE_CLOUD_URL": f"http://127.0.0.1:{port}", "HITSAVE_API_KEY": "hs_0_0", "HITSAVE_CLOUD_TIMEOUT": "1"})
    black_hole.close()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["value"] == 2
    # The call waited on the silent server; the loop ran meanwhile (about one tick per 10 ms).
    assert result["took"] >= 0.5, result  # the server was asked and never answered
    assert result["ticks"] >= result["took"] * 100 * 0.3, result


@dataclasses.dataclass
class _ConfigForAnalysisTest:
    rate: float


def test_module_attributes_and_argument_classes_are_analysed_once_not_per_call(monkeypatch):
    """A function reading `module.attr` and taking a dataclass argument: its
    graph and the class's are built once; later calls only check them."""
    import math

    from hitsave import _code

    built = []
    original = _code._build_graph
    monkeypatch.setattr(_code, "_build_graph", lambda obj: built.append(obj) or original(obj))

    @hitsave.memo
    def scaled(config, x):
        return x * config.rate * math.pi

    for _ in range(20):
        scaled(_ConfigForAnalysisTest(2.0), 1)
    assert sorted(getattr(obj, "__qualname__", repr(obj)) for obj in built).count(
        "_ConfigForAnalysisTest"
    ) == 1, built
    assert len(built) <= 3, built  # the function, the argument's class (and copyreg's helper), once each


@pytest.mark.skipif(not os.environ.get("HITSAVE_SOAK"), reason="needs ~14 GiB of memory and 5 GiB of disk: HITSAVE_SOAK=1")
def test_a_bytes_result_over_4_gib_is_stored_and_read_back(project):
    """A stream's bytes item holds at most 4 GiB: a longer `bytes` result has
    no portable form and is pickled (docs/python.md, "Results"), never a
    crash; a later process reads it back."""
    project.write(
        "huge.py",
        """
        from hitsave import memo

        @memo
        def huge(n):
            print("computing", flush=True)
            data = bytearray(n)
            data[-1] = 7
            return bytes(data)
        """,
    )
    check = """
        import huge
        out = huge.huge((4 << 30) + 1)
        print("ok", len(out) == (4 << 30) + 1 and out[-1] == 7 and out[0] == 0, flush=True)
        """
    env = {"HITSAVE_MAX_SIZE": "20GiB"}
    first = project.run(check, env=env)
    assert "computing" in first.stdout and "ok True" in first.stdout, first.stdout + first.stderr
    second = project.run(check, env=env)
    assert "computing" not in second.stdout and "ok True" in second.stdout, second.stdout + second.stderr
