"""The code graph never serves a result of old code (docs/python.md, "Code
dependencies"): a real project on disk, edited between fresh processes.

Each edit below kept hitting results computed by the code before the edit."""

import json
import os
import subprocess
import sys

import pytest

UTILS = """
CLIP = 10                                   # EDIT-modconst
TABLE = {"a": 1}                            # EDIT-modtable

def helper(x):
    return x + 1                            # EDIT-bodyimport
"""

RELATIVE = """
RCONST = 3                                  # EDIT-relconst
"""

CONFIG = """
import datetime, decimal, re
import numpy as np
START = datetime.date(2024, 1, 1)           # EDIT-date
RATE = decimal.Decimal("0.5")               # EDIT-decimal
PATTERN = re.compile("a+")                  # EDIT-pattern
RNG = np.random.default_rng(0)              # EDIT-rng
"""

STEPS = """
import functools, statistics
import numpy as np
from hitsave import memo
import utils
from . import rel
from .config import START, RATE, PATTERN, RNG
from math import floor as rnd               # EDIT-alias
AGG = statistics.mean                       # EDIT-agg
FLOAT_T = np.float32                        # EDIT-dtype

@memo
def inner(x):
    return x * 2                            # EDIT-inner

@memo
def outer(x):
    return inner(x) + 1

@memo
def reads_module_data(x):
    return x + utils.CLIP + utils.TABLE["a"] + rel.RCONST

@memo
def imports_in_body(x):
    from utils import helper
    return helper(x)

@memo
def imports_module_in_body(x):
    import utils as u
    return u.helper(x) * 10

@functools.lru_cache
def cached_helper(x):
    return x * 3                            # EDIT-lru

@functools.cache
def plain_cached(x):
    return x - 1                            # EDIT-cache

@functools.singledispatch
def dispatch(x):
    return 0

@dispatch.register
def _(x: int):
    return x * 4                            # EDIT-singledispatch

@memo
def uses_cached(x):
    return [cached_helper(x), plain_cached(x), dispatch(x)]

@memo
def uses_values(x):
    return [x, str(START), str(RATE), PATTERN.pattern, int(RNG.bit_generator.state["state"]["state"] % 1000)]

@memo
def uses_aliases(x):
    return [rnd(x / 2), AGG([x, x, 4 * x]), str(np.dtype(FLOAT_T))]

class Scaler:
    def scale(self, x):
        return x * 5                        # EDIT-argclass

@memo
def uses_argument(s, x):
    return s.scale(x)

class Base:
    @memo
    def run(self, x):
        return self.step(x)

    def step(self, x):
        return x

class Child(Base):
    def step(self, x):
        return x * 6                        # EDIT-override
"""

EDITS = [
    # (mark, call, old text, new text)
    ("EDIT-inner", "outer(3)", "x * 2 ", "x * 7 "),
    ("EDIT-modconst", "reads_module_data(3)", "= 10 ", "= 20 "),
    ("EDIT-modtable", "reads_module_data(3)", '"a": 1}', '"a": 5}'),
    ("EDIT-relconst", "reads_module_data(3)", "= 3 ", "= 30 "),
    ("EDIT-bodyimport", "imports_in_body(3)", "x + 1 ", "x + 9 "),
    ("EDIT-bodyimport", "imports_module_in_body(3)", "x + 1 ", "x + 9 "),
    ("EDIT-lru", "uses_cached(3)", "x * 3 ", "x * 8 "),
    ("EDIT-cache", "uses_cached(3)", "x - 1 ", "x - 2 "),
    ("EDIT-singledispatch", "uses_cached(3)", "x * 4 ", "x * 9 "),
    ("EDIT-date", "uses_values(3)", "1, 1)", "1, 2)"),
    ("EDIT-decimal", "uses_values(3)", '"0.5"', '"0.6"'),
    ("EDIT-pattern", "uses_values(3)", '"a+"', '"b+"'),
    ("EDIT-rng", "uses_values(3)", "rng(0)", "rng(1)"),
    ("EDIT-alias", "uses_aliases(3)", "floor as", "ceil as"),
    ("EDIT-agg", "uses_aliases(3)", "statistics.mean", "statistics.median"),
    ("EDIT-dtype", "uses_aliases(3)", "np.float32", "np.float64"),
    ("EDIT-argclass", "uses_argument(pkg.steps.Scaler(), 3)", "x * 5 ", "x * 11 "),
    ("EDIT-override", "Base.run(pkg.steps.Child(), 3)", "x * 6 ", "x * 12 "),
]

FILES = {"pkg/__init__.py": "", "utils.py": UTILS, "pkg/rel.py": RELATIVE, "pkg/config.py": CONFIG, "pkg/steps.py": STEPS}


def write_project(project):
    for path, text in FILES.items():
        project.write(path, text)


def run(project, call):
    """The call's result in a fresh process, and whether it missed there."""
    function, arguments = call[: call.index("(")], call[call.index("("):]
    code = f"""
        import json, hitsave, pkg.steps
        missed = pkg.steps.{function}.lookup{arguments} is hitsave.MISS
        print(json.dumps([missed, pkg.steps.{function}{arguments}]))
    """
    return json.loads(project.run(code).stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mark, call, old, new", EDITS, ids=[f"{e[0]}:{e[1].split('(')[0]}" for e in EDITS])
def test_an_edit_anywhere_the_function_reaches_misses(project, mark, call, old, new):
    write_project(project)
    missed, first = run(project, call)
    assert missed
    again_missed, again = run(project, call)
    assert not again_missed and again == first, "the second process must hit"
    path = next(path for path, text in FILES.items() if mark in text)
    text = (project.root / path).read_text()
    line = next(line for line in text.splitlines() if mark in line)
    assert old in line, (old, line)
    project.write(path, text.replace(line, line.replace(old, new)))
    missed_after, after = run(project, call)
    assert missed_after, f"{mark}: the edit must miss (a hit would be the old code's result {first})"
    assert after != first


def test_two_lambdas_on_one_line_are_two_functions(project):
    project.write("lambdas.py", """
        from hitsave import memo
        a, b = memo(lambda x: x), memo(lambda x: x + 1)
    """)
    out = project.run("import json, lambdas; print(json.dumps([lambdas.a(1), lambdas.b(1)]))").stdout
    assert json.loads(out) == [1, 2]
    out = project.run("import json, lambdas; print(json.dumps([lambdas.b(1), lambdas.a(1)]))").stdout
    assert json.loads(out) == [2, 1]


def test_a_helper_saved_after_import_never_stores_old_results_under_the_new_code(project):
    """A notebook without autoreload: the file changes on disk while the
    process still runs the code it imported."""
    project.write("helpers.py", """
        def value():
            return 2
    """)
    project.write("job.py", """
        from hitsave import memo
        import helpers

        @memo
        def result():
            return helpers.value()
    """)
    out = project.run("""
        import pathlib, job
        pathlib.Path("helpers.py").write_text("def value():\\n    return 3\\n")
        print(job.result())   # runs the old code: 2
    """).stdout
    assert out.split() == ["2"]
    # A fresh process runs the new code: it must compute 3, not hit the 2.
    assert project.run("import job; print(job.result())").stdout.split() == ["3"]


def test_a_small_int_shared_by_two_globals_is_watched_under_the_name_read(project):
    project.write("depth.py", """
        from hitsave import memo
        N_SPLITS = 5
        MAX_DEPTH = 5

        @memo
        def depth(x):
            return x + MAX_DEPTH
    """)
    out = project.run("""
        import depth
        first = depth.depth(1)
        depth.MAX_DEPTH = 6
        print(first, depth.depth(1))
    """).stdout
    assert out.split() == ["6", "7"]
    # And the result computed with 6 was not stored under the code that says 5.
    assert project.run("import depth; print(depth.depth(1))").stdout.split() == ["6"]


def test_a_reassigned_code_object_is_an_edit(project):
    project.write("swap.py", """
        from hitsave import memo

        def helper(x):
            return x + 1

        def other(x):
            return x + 100

        @memo
        def f(x):
            return helper(x)
    """)
    out = project.run("""
        import swap
        first = swap.f(1)
        swap.helper.__code__ = swap.other.__code__
        print(first, swap.f(1))
    """).stdout
    assert out.split() == ["2", "101"]


def test_memo_options_that_do_not_change_results_keep_hitting(project):
    project.write("opts.py", """
        import hitsave
        from hitsave import memo

        @memo
        def f(x, verbose=False):
            return x * 2
    """)
    call = "import opts, hitsave; print(opts.f.lookup(3) is hitsave.MISS, opts.f(3))"
    assert project.run(call).stdout.split() == ["True", "6"]
    # (ignore= changes which arguments form the key, so it keys anew by design;
    # the code's fingerprint stays, as `why` would say.)
    for decorator in ("@memo(cloud=False)", "@memo(local=True)", "@hitsave.memo"):
        source = (project.root / "opts.py").read_text()
        project.write("opts.py", source.replace(next(l for l in source.splitlines() if l.startswith("@memo")), decorator))
        assert project.run(call).stdout.split() == ["False", "6"], decorator


def test_a_script_run_directly_shares_results_with_its_import(project):
    project.write("app.py", """
        import sys
        from hitsave import memo

        @memo
        def f(x):
            print("computed", file=sys.stderr)
            return x + 1

        if __name__ == "__main__":
            print(f(1), f.function_name)
    """)
    import subprocess
    import sys

    script = subprocess.run([sys.executable, "app.py"], cwd=project.root, env=project.env(), capture_output=True, text=True, check=True)
    assert script.stdout.split() == ["2", "app:f"] and "computed" in script.stderr
    imported = project.run("import app; print(app.f(1), app.f.function_name)")
    assert imported.stdout.split() == ["2", "app:f"] and "computed" not in imported.stderr


def test_memoized_functions_pickle_and_cross_process_pools(project):
    project.write("work.py", """
        import functools
        import numpy as np
        from hitsave import memo

        @memo
        def square(x):
            return x * x

        @memo
        @functools.lru_cache
        def cached(x):
            return x + 10

        vectorized = memo(np.vectorize(lambda x: x * 3))

        def deco(fn):
            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                return fn(*args, **kwargs)
            return wrapper

        @memo(ignore=["verbose"])
        @deco
        def wrapped(x, verbose=False):
            return x - 1
    """)
    out = project.run("""
        import concurrent.futures, json, multiprocessing, pickle
        import work
        if __name__ == "__main__":
            assert pickle.loads(pickle.dumps(work.square)) is work.square
            results = {}
            for method in ("fork", "spawn", "forkserver"):
                with multiprocessing.get_context(method).Pool(2) as pool:
                    results[method] = pool.map(work.square, [1, 2, 3])
            with concurrent.futures.ProcessPoolExecutor(2) as executor:
                results["executor"] = list(executor.map(work.square, [4]))
            results["lru"] = work.cached(1)
            results["vectorize"] = int(work.vectorized(2))
            results["ignore"] = [work.wrapped(5, verbose=True), work.wrapped.key(5, verbose=True) == work.wrapped.key(5)]
            print(json.dumps(results))
    """)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "fork": [1, 4, 9], "spawn": [1, 4, 9], "forkserver": [1, 4, 9], "executor": [16],
        "lru": 11, "vectorize": 6, "ignore": [4, True],
    }


def test_an_unused_constant_equal_to_a_used_one_is_not_a_dependency(project):
    project.write("consts.py", """
        from hitsave import memo
        N_SPLITS = 5        # EDIT
        MAX_DEPTH = 5

        @memo
        def depth(x):
            return x + MAX_DEPTH
    """)
    call = "import consts, hitsave; print(consts.depth.lookup(1) is hitsave.MISS, consts.depth(1))"
    assert project.run(call).stdout.split() == ["True", "6"]
    source = (project.root / "consts.py").read_text()
    project.write("consts.py", source.replace("N_SPLITS = 5", "N_SPLITS = 6"))
    assert project.run(call).stdout.split() == ["False", "6"]


def test_why_answers_for_the_arguments_asked(project):
    """f(1) stored, a helper edited, f(2) computed under the new code: f.why(1)
    names the edit (not "the code is unchanged", which is true of f(2))."""
    project.write("whyargs.py", """
        from hitsave import memo

        def helper(x):
            return x + 1            # EDIT

        @memo
        def f(x):
            return helper(x)
    """)
    project.run("import whyargs; whyargs.f(1)")
    text = (project.root / "whyargs.py").read_text()
    project.write("whyargs.py", text.replace("x + 1 ", "x + 2 "))
    out = project.run("import whyargs; whyargs.f(2); print(whyargs.f.why(1)); print(whyargs.f.why(3))").stdout.splitlines()
    assert out[0].startswith("miss: code changed since results were stored:") and "helper" in out[0], out
    assert out[1] == "miss: the code is unchanged; no result is stored for these arguments", out


def test_upgrading_a_package_misses_even_with_the_distributions_kept_on_disk(project, tmp_path):
    """Packages count by version; the version map is kept in the store between
    processes, keyed by the environment, so an upgrade must still be seen."""
    site = tmp_path / "env" / "site-packages"

    def install(version, value):
        for old in site.glob("fakepkg-*.dist-info"):
            for file in old.iterdir():
                file.unlink()
            old.rmdir()
        (site / "fakepkg").mkdir(parents=True, exist_ok=True)
        (site / "fakepkg" / "__init__.py").write_text(f"def value():\n    return {value}\n")
        info = site / f"fakepkg-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n")
        (info / "top_level.txt").write_text("fakepkg\n")

    project.write("usepkg.py", """
        import fakepkg
        from hitsave import memo

        @memo
        def f():
            return fakepkg.value()
    """)
    env = {"PYTHONPATH": str(site)}
    call = "import usepkg, hitsave; print(usepkg.f.lookup() is hitsave.MISS, usepkg.f())"
    install("1.0", 1)
    assert project.run(call, env=env).stdout.split() == ["True", "1"]
    assert project.run(call, env=env).stdout.split() == ["False", "1"]
    assert list((project.cache / "analysis").glob("distributions-*.json")), "the version map is kept"
    install("2.0", 2)
    assert project.run(call, env=env).stdout.split() == ["True", "2"]


def test_an_unhashable_module_value_counts_by_the_source_that_makes_it(project):
    project.write("engine.py", """
        import threading
        from hitsave import memo

        class Engine:
            def __init__(self, url):
                self.url = url
                self.lock = threading.Lock()   # no faithful hash: its state cannot be read

        ENGINE = Engine("db-1")                # EDIT

        @memo
        def query(x):
            return f"{ENGINE.url}:{x}"
    """)
    call = "import engine, hitsave; print(engine.query.lookup(1) is hitsave.MISS, engine.query(1))"
    assert project.run(call).stdout.split() == ["True", "db-1:1"]
    assert project.run(call).stdout.split() == ["False", "db-1:1"]
    text = (project.root / "engine.py").read_text()
    project.write("engine.py", text.replace('Engine("db-1")', 'Engine("db-2")'))
    assert project.run(call).stdout.split() == ["True", "db-2:1"]


def test_the_native_bytecode_reader_reads_every_function_as_dis_does():
    """The analysis reads bytecode natively with a layout learned from `dis`
    (`_bytecode.reader`); on this Python it must be in use and agree with `dis`
    on every function of these modules (imports, attribute chains, classes,
    comprehensions, nested functions, EXTENDED_ARG)."""
    import argparse, asyncio, dataclasses, email.message, http.client, inspect, json, logging, pathlib, types, typing, unittest

    from hitsave import _bytecode, _code, _memo

    reader = _bytecode.reader()
    assert reader is not None, "the layout of this Python's bytecode was not learned: every analysis reads through dis"
    checked = 0
    modules = [argparse, asyncio, dataclasses, email.message, http.client, inspect, json, logging, pathlib, typing, unittest, _bytecode, _code, _memo]
    for module in modules:
        for value in list(vars(module).values()):
            members = [value] if isinstance(value, types.FunctionType) else list(vars(value).values()) if isinstance(value, type) else []
            for function in members:
                if isinstance(function, types.FunctionType):
                    native = [tuple(r) for r in reader.references(function.__code__)]
                    assert native == [tuple(r) for r in _bytecode.references_by_dis(function.__code__)], function
                    checked += 1
    assert checked > 1000


def test_an_annotation_a_decorator_reads_counts(project):
    """A function counts by what runs, not by its source text: annotations,
    which code may read at run time, count too."""
    project.write("typed.py", """
        import functools
        from hitsave import memo

        def coerce(fn):
            @functools.wraps(fn)
            def wrapper(x):
                return fn(fn.__annotations__["x"](x))
            return wrapper

        @memo
        @coerce
        def half(x: int):                   # EDIT
            return x / 2
    """)
    assert project.run("import typed; print(typed.half(3.7))").stdout.split() == ["1.5"]
    text = (project.root / "typed.py").read_text()
    project.write("typed.py", text.replace("x: int", "x: float"))
    assert project.run("import typed; print(typed.half(3.7))").stdout.split() == ["1.85"]


def test_a_project_in_a_directory_named_like_site_packages_is_the_projects_code(project):
    """Only a real `site-packages` (or `dist-packages`) directory holds
    installed packages: a project path that merely contains the words is the
    user's code, and its edits count."""
    project.write("my-site-packages-tools/helper.py", """
        def scale(x):
            return x * 2
    """)
    project.write("my-site-packages-tools/job.py", """
        from hitsave import memo
        import helper

        @memo
        def run(x):
            return helper.scale(x)
    """)
    call = "import sys; sys.path.insert(0, 'my-site-packages-tools'); import job; print(job.run(5))"
    assert project.run(call).stdout.split() == ["10"]
    helper = project.root / "my-site-packages-tools" / "helper.py"
    project.write("my-site-packages-tools/helper.py", helper.read_text().replace("x * 2", "x * 3"))
    assert project.run(call).stdout.split() == ["15"]


def test_hitsave_why_marks_the_results_of_the_current_code(project):
    """After an edit and a run, `hitsave why` (the CLI) says which stored
    group is the current code's and names the edited helper in the other."""
    project.write("steps.py", """
        from hitsave import memo

        def helper(x):
            return x + 1

        @memo
        def job(x):
            return helper(x)
    """)
    assert project.run("import steps; print(steps.job(1))").stdout.split() == ["2"]
    text = (project.root / "steps.py").read_text()
    project.write("steps.py", text.replace("x + 1", "x + 2"))
    assert project.run("import steps; print(steps.job(1))").stdout.split() == ["3"]
    out = project.run(
        "import subprocess, sys; subprocess.run([sys.executable, '-m', 'hitsave', '--json', 'why', 'steps:job'], check=True)"
    ).stdout
    report = json.loads(out)
    assert report["current"], report
    current = [group for group in report["stored"] if group["current"]]
    stale = [group for group in report["stored"] if not group["current"]]
    assert len(current) == 1 and current[0]["evals"] == 1, report
    assert current[0]["graph"] == report["current"], report
    assert len(stale) == 1 and any("steps:helper" in node for node, _ in stale[0]["changes"]), report
    text_out = project.run(
        "import subprocess, sys; subprocess.run([sys.executable, '-m', 'hitsave', 'why', 'steps:job'], check=True)"
    ).stdout
    assert "current, these can hit" in text_out and "stale because" in text_out and "steps:helper" in text_out, text_out


def test_the_standard_library_and_installed_packages_are_external_and_the_project_is_not(project):
    """What counts by distribution and version (never analysed) and what is
    the user's code (analysed): decided per directory."""
    import enum, json

    import numpy

    from hitsave import _code

    for obj in (enum.Enum, enum.IntEnum, json.dumps, json, numpy.mean, numpy):
        assert _code.is_external(obj), obj
    project.write("local.py", "def f(x):\n    return x\n")
    out = project.run("import local; from hitsave import _code; print(_code.is_external(local.f), _code.is_external(local))")
    assert out.stdout.split() == ["False", "False"]


def test_an_attribute_set_on_a_function_counts(project):
    """`helper.factor = 3` next to the function, read as `helper.factor`:
    editing it misses, and so does setting it while the program runs."""
    project.write("helpers.py", """
        def helper(x):
            return x * helper.factor
        helper.factor = 3                      # EDIT
    """)
    project.write("job.py", """
        from hitsave import memo
        import helpers

        @memo
        def run(x):
            return helpers.helper(x)
    """)
    assert project.run("import job; print(job.run(2))").stdout.split() == ["6"]
    text = (project.root / "helpers.py").read_text()
    project.write("helpers.py", text.replace("factor = 3", "factor = 5"))
    assert project.run("import job; print(job.run(2))").stdout.split() == ["10"]
    out = project.run("import job, helpers; first = job.run(2); helpers.helper.factor = 7; print(first, job.run(2))").stdout
    assert out.split() == ["10", "14"]


def test_a_metaclass_counts_for_its_classes(project):
    """`A()` runs `Meta.__call__`: editing the metaclass misses."""
    project.write("shapes.py", """
        class Meta(type):
            def __call__(cls, *args):
                obj = super().__call__(*args)
                obj.k = 2                      # EDIT
                return obj

        class A(metaclass=Meta):
            def __init__(self):
                self.k = 1
    """)
    project.write("job.py", """
        from hitsave import memo
        import shapes

        @memo
        def run():
            return shapes.A().k
    """)
    assert project.run("import job; print(job.run())").stdout.split() == ["2"]
    text = (project.root / "shapes.py").read_text()
    project.write("shapes.py", text.replace("obj.k = 2", "obj.k = 3"))
    assert project.run("import job; print(job.run())").stdout.split() == ["3"]


def test_a_value_a_project_puts_into_builtins_counts(project):
    """`builtins.FACTOR = 3` in a setup module, read as a bare `FACTOR`."""
    project.write("setup_env.py", """
        import builtins
        builtins.FACTOR = 3                    # EDIT
    """)
    project.write("job.py", """
        import setup_env
        from hitsave import memo

        @memo
        def run(x):
            return x * FACTOR + len([x])
    """)
    assert project.run("import job; print(job.run(2))").stdout.split() == ["7"]
    text = (project.root / "setup_env.py").read_text()
    project.write("setup_env.py", text.replace("FACTOR = 3", "FACTOR = 5"))
    assert project.run("import job; print(job.run(2))").stdout.split() == ["11"]


@pytest.mark.parametrize(
    "body",
    [
        'return getattr(helpers, "scale")(x)',
        'return importlib.import_module("helpers").scale(x)',
        'return __import__("helpers").scale(x)',
        "return use(helpers, x)",
    ],
    ids=["getattr", "import_module", "__import__", "module-passed-to-a-call"],
)
def test_a_module_reached_by_a_dynamic_name_counts_whole(project, body):
    """`getattr(m, "f")`, `import_module("m")`, a module passed as a value:
    the bytecode does not say which of its names are read, so all count."""
    project.write("helpers.py", """
        def scale(x):
            return x * 2                       # EDIT
    """)
    project.write("job.py", f"""
        import importlib
        from hitsave import memo
        import helpers

        def use(module, x):
            return module.scale(x)

        @memo
        def run(x):
            {body}
    """)
    assert project.run("import job; print(job.run(5))").stdout.split() == ["10"]
    assert project.run("import job; print(job.run(5))").stdout.split() == ["10"]
    text = (project.root / "helpers.py").read_text()
    project.write("helpers.py", text.replace("x * 2", "x * 3"))
    assert project.run("import job; print(job.run(5))").stdout.split() == ["15"]


@pytest.mark.parametrize(
    "table",
    [
        '{"a": plugins.a}',
        "{m.name: importlib.import_module('plugins.' + m.name) for m in pkgutil.iter_modules(plugins.__path__)}",
        "[(plugins.a, 1), threading.Lock()]",
    ],
    ids=["dict", "discovered", "opaque-list"],
)
def test_a_module_held_in_a_module_level_value_counts_whole(project, table):
    """A plugin table (`PLUGINS = {"a": plugins.a}`, what the refusal of a
    computed import suggests, or one built by discovering the plugins) holds
    modules: the code each of them binds counts, as a module used as a value
    does. (A table holding modules cannot be hashed by value, so the source
    that makes it was all that counted: a plugin's edit hit.)"""
    project.write("plugins/__init__.py", "")
    project.write("plugins/a.py", """
        FACTOR = 2
        def run(x):
            return x * FACTOR
    """)
    project.write("job.py", f"""
        import importlib, pkgutil, threading
        from hitsave import memo
        import plugins, plugins.a
        TABLE = {table}

        @memo
        def run(x):
            table = TABLE if isinstance(TABLE, dict) else {{"a": TABLE[0][0]}}
            return table["a"].run(x)
    """)
    assert project.run("import job; print(job.run(5))").stdout.split() == ["10"]
    assert project.run("import job; print(job.run.lookup(5))").stdout.split() == ["10"]
    project.write("plugins/a.py", (project.root / "plugins/a.py").read_text().replace("x * FACTOR", "x * FACTOR + 1"))
    assert project.run("import job; print(job.run(5))").stdout.split() == ["11"]
    project.write("plugins/a.py", (project.root / "plugins/a.py").read_text().replace("FACTOR = 2", "FACTOR = 3"))
    assert project.run("import job; print(job.run(5))").stdout.split() == ["16"]


@pytest.mark.parametrize(
    "body",
    [
        'return importlib.import_module(f"plugins.{kind}").run(x)',
        'return importlib.import_module("plugins." + kind).run(x)',
        "return __import__(kind).run(x)",
        'return [m.run(x) for m in map(importlib.import_module, ["plugins." + kind])][0]',
        'return load(f"plugins.{kind}").run(x)',
    ],
    ids=["f-string", "concatenated", "__import__-variable", "importer-as-value", "aliased-importer"],
)
def test_a_module_name_computed_at_run_time_is_refused(project, body):
    """Which module `import_module(f"plugins.{kind}")` loads is decided at
    run time: the code behind it cannot be seen, so the call is refused with
    `code_unavailable` (it used to hit after the plugin was edited)."""
    project.write("plugins/__init__.py", "")
    project.write("plugins/a.py", """
        def run(x):
            return x + 1
    """)
    project.write("job.py", f"""
        import importlib
        from hitsave import memo
        load = importlib.import_module

        @memo
        def run(kind, x):
            {body}
    """)
    result = project.run(
        """
        import hitsave, job
        try:
            job.run("a", 2)
        except hitsave.HitSaveError as error:
            print(error.code, "import" in str(error), "line" in str(error))
        """
    )
    assert result.stdout.split() == ["code_unavailable", "True", "True"]


@pytest.mark.parametrize("body", ['return globals()["helper"](x)', 'return eval("helper(x)")'], ids=["globals", "eval"])
def test_globals_read_by_a_computed_name_count(project, body):
    project.write("job.py", f"""
        from hitsave import memo

        def helper(x):
            return x * 2                       # EDIT

        @memo
        def run(x):
            {body}
    """)
    assert project.run("import job; print(job.run(5))").stdout.split() == ["10"]
    text = (project.root / "job.py").read_text()
    project.write("job.py", text.replace("x * 2", "x * 3"))
    assert project.run("import job; print(job.run(5))").stdout.split() == ["15"]


@pytest.mark.parametrize(
    "body",
    [
        'return x * int(os.environ["HS_TEST_K"])',
        'return x * int(os.environ.get("HS_TEST_K", "3"))',
        'return x * int(os.getenv("HS_TEST_K", "3"))',
        'return x * int(getenv("HS_TEST_K", "3"))',
        'return x * int(env("HS_TEST_K", "3"))',
        "return x * settings.K",
    ],
    ids=["environ[]", "environ.get", "os.getenv", "from-os-import-getenv", "aliased-getenv", "module-level"],
)
def test_an_environment_variable_the_code_reads_counts_by_value(project, body):
    """`os.getenv` is a standard-library function (counted by Python's
    version alone): it used to hit with the result of another value."""
    project.write("settings.py", """
        import os
        K = int(os.environ.get("HS_TEST_K", "3"))
    """)
    project.write("job.py", f"""
        import os
        from os import getenv
        from hitsave import memo
        import settings
        env = os.getenv

        RUNS = []

        @memo
        def run(x):
            RUNS.append(1)
            {body}
    """)
    call = "import job; print(job.run(2), len(job.RUNS))"
    assert project.run(call, env={"HS_TEST_K": "3"}).stdout.split() == ["6", "1"]
    assert project.run(call, env={"HS_TEST_K": "4"}).stdout.split() == ["8", "1"]
    assert project.run(call, env={"HS_TEST_K": "3"}).stdout.split() == ["6", "0"]
    # Only the variables the code names count (a CI run's own variables do not).
    assert project.run(call, env={"HS_TEST_K": "3", "HS_TEST_OTHER": "x"}).stdout.split() == ["6", "0"]
    # Set by the program between calls: the next call sees it.
    result = project.run("""
        import os, job
        first = job.run(2)
        os.environ["HS_TEST_K"] = "5"
        print(first, job.run(2))
    """, env={"HS_TEST_K": "3"})
    assert result.stdout.split() == (["6", "6"] if "settings" in body else ["6", "10"])


def test_a_data_file_the_code_names_counts_by_its_contents(project):
    """`pd.read_csv("data/train.csv")`-style reads by a path the code holds
    (relative to the working directory, beside the module, or in a
    module-level constant) used to hit after the file was edited."""
    project.write("data/train.csv", "a\n1\n2\n")
    project.write("weights.json", '{"k": 2}')
    project.write("job.py", """
        import json, pathlib
        from hitsave import memo
        HERE = pathlib.Path(__file__).parent
        DATA = "data/train.csv"
        runs = []

        @memo
        def total():
            runs.append(1)
            with open(DATA) as handle:
                rows = handle.read().split()[1:]
            return sum(map(int, rows)) * json.loads((HERE / "weights.json").read_text())["k"]
    """)
    call = "import job; print(job.total(), len(job.runs))"
    assert project.run(call).stdout.split() == ["6", "1"]
    assert project.run(call).stdout.split() == ["6", "0"]
    project.write("data/train.csv", "a\n1\n5\n")
    assert project.run(call).stdout.split() == ["12", "1"]
    project.write("weights.json", '{"k": 3}')
    assert project.run(call).stdout.split() == ["18", "1"]
    # Edited while a process runs (a notebook): the next call sees it.
    result = project.run("""
        import pathlib, job
        first = job.total()
        pathlib.Path("weights.json").write_text('{"k": 4}')
        print(first, job.total())
    """)
    assert result.stdout.split() == ["18", "24"]


def _results_and_runs(project, call: str, env: dict[str, str] | None = None) -> list[str]:
    """Runs `call` in a fresh process: the words it prints after `=`, then
    which bodies ran (their `ran:NAME` lines, in order; `-` for none)."""
    out = project.run(call, env).stdout.split()
    return out[out.index("=") + 1 :] + [",".join(word[4:] for word in out if word.startswith("ran:")) or "-"]


def test_files_read_from_a_data_directory_count(project):
    """`open(DATA_DIR / f"{name}.csv")` reads a file the analysis cannot
    name, and `(DATA_DIR / "train.csv").read_text()` one it can only name by
    joining a module-level directory with a constant: both used to hit after
    the file was edited (docs/python.md, "Data files")."""
    project.write("data/train.csv", "a\n1\n2\n")
    project.write("data/test.csv", "a\n10\n")
    project.write("data/raw/extra.csv", "a\n100\n")
    project.write("job.py", """
        import os
        from pathlib import Path
        from hitsave import memo
        DATA_DIR = Path(__file__).parent / "data"
        TRAIN = "train.csv"
        def rows(text):
            return sum(map(int, text.split()[1:]))

        @memo
        def computed(name):
            print("ran:computed")
            with open(DATA_DIR / f"{name}.csv") as handle:
                return rows(handle.read())

        @memo
        def joined():
            print("ran:joined")
            return rows((DATA_DIR / "train.csv").read_text())

        @memo
        def configured():
            print("ran:configured")
            return rows((DATA_DIR / TRAIN).read_text())

        @memo
        def constant_directory(name):
            print("ran:constant_directory")
            return rows(open(os.path.join("data/raw", name)).read())
    """)
    call = "import job; print('=', job.computed('train'), job.joined(), job.configured(), job.constant_directory('extra.csv'))"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["3", "3", "3", "100", "computed,joined,configured,constant_directory"]
    assert run() == ["3", "3", "3", "100", "-"]
    project.write("data/train.csv", "a\n1\n5\n")
    assert run() == ["6", "6", "6", "100", "computed,joined,configured"]
    # A file the first could read, and the last reads: every file under the
    # directory counts for them (the second and third name their one file).
    project.write("data/raw/extra.csv", "a\n200\n")
    assert run() == ["6", "6", "6", "200", "computed,constant_directory"]
    project.write("data/raw/new.csv", "a\n1\n")
    assert run() == ["6", "6", "6", "200", "computed,constant_directory"]
    # Edited while a process runs: the next call sees it.
    result = project.run("""
        import pathlib, job
        first = job.computed("test")
        pathlib.Path("data/test.csv").write_text("a\\n11\\n")
        print(first, job.computed("test"))
    """)
    assert result.stdout.split()[-2:] == ["10", "11"]


def test_a_file_or_directory_an_environment_variable_names_counts(project):
    """`open(os.path.join(os.environ["DATA_DIR"], name))` and
    `open(os.getenv("INPUT_FILE"))`: the variable counted by value only, so
    an edit of the file it names used to hit."""
    project.write("inputs/a.txt", "1 2\n")
    project.write("app.py", """
        import os
        from hitsave import memo

        @memo
        def total(name):
            print("ran:total")
            with open(os.path.join(os.environ["DATA_DIR"], name)) as handle:
                return sum(map(int, handle.read().split()))

        @memo
        def single():
            print("ran:single")
            return open(os.getenv("INPUT_FILE")).read().strip()
    """)
    env = {"DATA_DIR": str(project.root / "inputs"), "INPUT_FILE": str(project.root / "inputs" / "a.txt")}
    call = "import app; print('=', app.total('a.txt'), app.single())"

    def run() -> list[str]:
        return _results_and_runs(project, call, env)

    assert run() == ["3", "1", "2", "total,single"]
    assert run() == ["3", "1", "2", "-"]
    project.write("inputs/a.txt", "1 5\n")
    assert run() == ["6", "1", "5", "total,single"]


def test_a_database_or_archive_opened_by_path_counts(project):
    """`sqlite3.connect("data.db")` and `zipfile.ZipFile("data.zip")` were
    not taken for file reads, so the files they named did not count and an
    edit of the data hit (any `read_*`, `load*`, `open*` call counts too)."""
    import sqlite3
    import zipfile

    def write_data(value: int) -> None:
        db = project.root / "data.db"
        db.unlink(missing_ok=True)
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE t (v INTEGER)")
            conn.execute("INSERT INTO t VALUES (?)", (value,))
        conn.close()
        with zipfile.ZipFile(project.root / "data.zip", "w") as archive:
            archive.writestr("v.txt", str(value))

    write_data(1)
    project.write("app.py", """
        import sqlite3, zipfile
        from hitsave import memo

        @memo
        def from_db():
            print("ran:db")
            conn = sqlite3.connect("data.db")
            try:
                return conn.execute("SELECT v FROM t").fetchone()[0]
            finally:
                conn.close()

        @memo
        def from_zip():
            print("ran:zip")
            with zipfile.ZipFile("data.zip") as archive:
                return int(archive.read("v.txt"))
    """)
    call = "import app; print('=', app.from_db(), app.from_zip())"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["1", "1", "db,zip"]
    assert run() == ["1", "1", "-"]
    write_data(2)
    assert run() == ["2", "2", "db,zip"]


def test_a_file_a_helper_reads_at_the_path_its_caller_names_counts(project):
    """`parse("table.csv")` with `parse` opening the path it is given (in
    another module, or a class's method opening `self.path`): the caller
    names the file but reads nothing itself, so an edit used to hit."""
    project.write("table.csv", "1,2")
    project.write("helpers.py", """
        def parse(path):
            with open(path) as handle:
                return [int(x) for x in handle.read().split(",")]

        class Table:
            def __init__(self, path):
                self.path = path

            def total(self):
                return sum(parse(self.path))
    """)
    project.write("app.py", """
        from hitsave import memo
        from helpers import Table, parse

        @memo
        def direct():
            print("ran:direct")
            return sum(parse("table.csv"))

        @memo
        def through_a_class():
            print("ran:class")
            return Table("table.csv").total()
    """)
    call = "import app; print('=', app.direct(), app.through_a_class())"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["3", "3", "direct,class"]
    assert run() == ["3", "3", "-"]
    project.write("table.csv", "1,5")
    assert run() == ["6", "6", "direct,class"]


def test_a_file_read_from_a_package_directory_counts(project):
    """Package data read relative to a package, not to the working directory
    or the reading module: `importlib.resources.files("shapes")`,
    `pkgutil.get_data("shapes", ...)`, `Path(shapes.__file__).parent`. An
    edit of the file used to hit (docs/python.md, "Data files")."""
    project.write("shapes/__init__.py", "")
    project.write("shapes/sizes.json", '{"n": 1}')
    project.write("app.py", """
        import json
        import pkgutil
        from importlib import resources
        from pathlib import Path
        import shapes
        from hitsave import memo

        @memo
        def by_resources():
            print("ran:resources")
            return json.loads(resources.files("shapes").joinpath("sizes.json").read_text())["n"]

        @memo
        def by_pkgutil():
            print("ran:pkgutil")
            return json.loads(pkgutil.get_data("shapes", "sizes.json"))["n"]

        @memo
        def by_module_file():
            print("ran:module_file")
            return json.loads((Path(shapes.__file__).parent / "sizes.json").read_text())["n"]
    """)
    call = "import app; print('=', app.by_resources(), app.by_pkgutil(), app.by_module_file())"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["1", "1", "1", "resources,pkgutil,module_file"]
    assert run() == ["1", "1", "1", "-"]
    project.write("shapes/sizes.json", '{"n": 2}')
    assert run() == ["2", "2", "2", "resources,pkgutil,module_file"]


def test_files_listed_in_a_package_directory_count(project):
    """`resources.files("shapes") / "tables"` listed, and the package's own
    directory listed: the files found are named by no constant, and an edit
    or a new file used to hit."""
    project.write("shapes/__init__.py", "")
    project.write("shapes/a.csv", "1")
    project.write("shapes/tables/b.csv", "10")
    project.write("app.py", """
        from importlib import resources
        from hitsave import memo

        @memo
        def tables():
            print("ran:tables")
            folder = resources.files("shapes") / "tables"
            return sum(int(entry.read_text()) for entry in folder.iterdir())

        @memo
        def own():
            print("ran:own")
            return sum(int(entry.read_text()) for entry in resources.files("shapes").iterdir() if entry.name.endswith(".csv"))
    """)
    call = "import app; print('=', app.tables(), app.own())"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["10", "1", "tables,own"]
    assert run() == ["10", "1", "-"]
    project.write("shapes/tables/c.csv", "5")
    project.write("shapes/a.csv", "2")
    assert run() == ["15", "2", "tables,own"]
    assert run() == ["15", "2", "-"]


def test_a_directory_named_by_a_bare_word_counts(project):
    """`Path("data").iterdir()` and `open(os.path.join("data", name))`: the
    directory is named by a constant without a `/`, from a script run from
    the project root; a new or edited file used to hit."""
    project.write("data/a.txt", "1")
    project.write("scripts/run.py", """
        import os
        from pathlib import Path
        from hitsave import memo

        @memo
        def listed():
            print("ran:listed")
            return sum(int(p.read_text()) for p in Path("data").iterdir())

        @memo
        def joined(name):
            print("ran:joined")
            with open(os.path.join("data", f"{name}.txt")) as handle:
                return int(handle.read())

        print("=", listed(), joined("a"))
    """)
    # `python scripts/run.py`: the script's directory, not the root, is on sys.path.
    call = "import subprocess, sys; subprocess.run([sys.executable, 'scripts/run.py'], check=True)"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["1", "1", "listed,joined"]
    assert run() == ["1", "1", "-"]
    project.write("data/b.txt", "5")
    assert run()[:2] == ["6", "1"]
    project.write("data/a.txt", "7")
    assert run() == ["12", "7", "listed,joined"]
    assert run() == ["12", "7", "-"]


def test_a_script_run_in_another_process_counts_by_its_contents(project):
    """`subprocess.run([sys.executable, "tools/fit.py"])`, a command line
    (`subprocess.check_output("python3 tools/fit.py", shell=True)`),
    `runpy.run_path(...)`: the script is code the function runs; an edit
    used to hit (docs/python.md, "Data files")."""
    project.write("tools/fit.py", "print(3)")
    project.write("tools/run_me.py", "RESULT = 4")
    project.write("app.py", """
        import runpy
        import subprocess
        import sys
        from hitsave import memo

        @memo
        def by_run():
            print("ran:run")
            return int(subprocess.run([sys.executable, "tools/fit.py"], capture_output=True, text=True).stdout)

        @memo
        def by_command_line():
            print("ran:command")
            return int(subprocess.check_output("python3 tools/fit.py", shell=True, text=True))

        @memo
        def by_run_path():
            print("ran:run_path")
            return runpy.run_path("tools/run_me.py")["RESULT"]
    """)
    call = "import app; print('=', app.by_run(), app.by_command_line(), app.by_run_path())"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["3", "3", "4", "run,command,run_path"]
    assert run() == ["3", "3", "4", "-"]
    project.write("tools/fit.py", "print(5)")
    assert run() == ["5", "5", "4", "run,command"]
    project.write("tools/run_me.py", "RESULT = 6")
    assert run() == ["5", "5", "6", "run_path"]


def test_a_file_read_by_a_parser_or_loader_without_a_read_name_counts(project):
    """`ElementTree.parse("data.xml")`: a call that reads the file it is
    given but is named neither `read*`, `load*` nor `open*`; an edit used to
    hit. Names that say they read a file anywhere in them count (`parse`,
    `FileSystemLoader`, `VideoCapture`, `ParquetFile`, `from_pretrained`)."""
    project.write("data.xml", "<root><item>1</item></root>")
    project.write("app.py", """
        import xml.etree.ElementTree as ET
        from hitsave import memo

        @memo
        def items():
            print("ran:items")
            return sum(int(item.text) for item in ET.parse("data.xml").getroot())
    """)
    call = "import app; print('=', app.items())"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["1", "items"]
    assert run() == ["1", "-"]
    project.write("data.xml", "<root><item>1</item><item>5</item></root>")
    assert run() == ["6", "items"]


def test_the_decimal_context_counts_where_decimal_code_is_used(project):
    """`decimal.getcontext().prec = 5` at the top of a module changes what
    every Decimal division computes: an edit of it used to hit, and so did a
    change of the precision between two calls in one process."""
    project.write("money.py", """
        import decimal
        from hitsave import memo
        decimal.getcontext().prec = 5

        @memo
        def third(x):
            return str(decimal.Decimal(1) / decimal.Decimal(x))
    """)
    call = "import money, decimal; a = money.third(3); decimal.getcontext().prec = 3; print(a, money.third(3))"
    assert project.run(call).stdout.split() == ["0.33333", "0.333"]
    text = (project.root / "money.py").read_text()
    project.write("money.py", text.replace("prec = 5", "prec = 8"))
    assert project.run("import money; print(money.third(3))").stdout.split() == ["0.33333333"]


def test_a_bound_method_counts_the_instance_it_is_bound_to(project):
    """`predict = model.predict` read by the function: the model's state is
    an input. Editing `Model(2)` to `Model(3)`, or `model.w = 5` between two
    calls, used to hit (only the method's code counted)."""
    project.write("serve.py", """
        from hitsave import memo

        class Model:
            def __init__(self, w):
                self.w = w

            def predict(self, x):
                return self.w * x

        model = Model(2)
        predict = model.predict

        @memo
        def score(x):
            print("ran:score")
            return predict(x)
    """)
    call = "import serve; a = serve.score(10); serve.model.w = 5; print('=', a, serve.score(10))"
    assert _results_and_runs(project, call) == ["20", "50", "score,score"]
    assert _results_and_runs(project, "import serve; print('=', serve.score(10))") == ["20", "-"]
    text = (project.root / "serve.py").read_text()
    project.write("serve.py", text.replace("Model(2)", "Model(3)"))
    assert _results_and_runs(project, "import serve; print('=', serve.score(10))") == ["30", "score"]


def test_a_random_generator_counts_by_its_state(project):
    """Functions drawing from `random`, numpy's legacy `np.random.rand` (bound
    to numpy's global generator) or a module-level `default_rng(1)`: each
    draw changes the generator's state, so a second call in a process
    computes from another state than a fresh process seeded the same way.
    That result used to be stored under the fresh process's fingerprint and
    served to it (9.32 where the code computes 1.48); an edit of the seed in
    another module hit as well."""
    pytest.importorskip("numpy")
    project.write("seeding.py", """
        import numpy as np
        np.random.seed(1)
    """)
    project.write("draws.py", """
        import random
        import numpy as np
        import seeding
        from hitsave import memo
        random.seed(1)
        rng = np.random.default_rng(1)

        @memo
        def a(n):
            return round(random.random() * n, 4)

        @memo
        def b(n):
            return round(float(np.random.rand()) * n, 4)

        @memo
        def c(n):
            return round(float(rng.random()) * n, 4)
    """)
    call = "import sys, draws; print('=', *[f(n) for n in map(int, sys.argv[1:]) for f in (draws.a, draws.b, draws.c)])"
    project.run(call.replace("sys.argv[1:]", "[10, 11]"))
    fresh = project.run(call.replace("sys.argv[1:]", "[11]"), {"HITSAVE_MODE": "off"}).stdout.split()
    assert project.run(call.replace("sys.argv[1:]", "[11]")).stdout.split() == fresh
    project.write("seeding.py", """
        import numpy as np
        np.random.seed(2)
    """)
    fresh = project.run(call.replace("sys.argv[1:]", "[11]"), {"HITSAVE_MODE": "off"}).stdout.split()
    assert project.run(call.replace("sys.argv[1:]", "[11]")).stdout.split() == fresh


def test_an_iterator_counts_by_its_position_and_a_generator_is_refused(project):
    """`ids = itertools.count(100)`, `it = iter([7, 8, 9])` and
    `partial(model.predict, scale=2)` read by memoized functions: a second
    call in a process read a moved iterator (or a changed model) and its
    result was stored under the first state's fingerprint, then served to a
    fresh process (11101 where the code computes 11100). A generator's
    position cannot be read: refused, naming it."""
    project.write("ids.py", """
        import functools, itertools
        from hitsave import memo

        class Model:
            def __init__(self, w):
                self.w = w

            def predict(self, x, scale=1):
                return self.w * x * scale

        model = Model(2)
        doubled = functools.partial(model.predict, scale=2)
        ids = itertools.count(100)
        it = iter([7, 8, 9, 10])
        gen = (x * 2 for x in range(100))

        @memo
        def numbered(n):
            return n * 1000 + next(ids)

        @memo
        def taken(n):
            return n * 1000 + next(it)

        @memo
        def predicted(n):
            return doubled(n)

        @memo
        def generated(n):
            return n + next(gen)
    """)
    call = (
        "import sys, ids; out = []\n"
        "for n in map(int, sys.argv[1:]):\n"
        "    out += [ids.numbered(n), ids.taken(n), ids.predicted(n)]; ids.model.w = 5\n"
        "print('=', *out)"
    )
    both = project.run(call.replace("sys.argv[1:]", "[10, 11]")).stdout.split()
    assert both[4:] == ["11101", "11008", "110"]
    fresh = project.run(call.replace("sys.argv[1:]", "[11]"), {"HITSAVE_MODE": "off"}).stdout.split()
    assert fresh[1:] == ["11100", "11007", "44"]
    assert project.run(call.replace("sys.argv[1:]", "[11]")).stdout.split() == fresh
    refused = project.run(
        "import ids, hitsave\ntry:\n    ids.generated(1)\nexcept hitsave.HitSaveError as e:\n    print(e.code, e)"
    ).stdout
    assert refused.startswith("code_unavailable") and "ids:gen is a generator" in refused


def test_a_context_variable_counts_by_the_value_it_holds(project):
    """`PREC = ContextVar("prec", default=2)` read with `PREC.get()`: after
    `PREC.set(4)` a call hit the result computed for 2, and a new argument's
    result was stored under 2's fingerprint (served later: 0.67 where the
    code computes 0.6667)."""
    project.write("rounding.py", """
        import contextvars
        from hitsave import memo
        PREC = contextvars.ContextVar("prec", default=2)

        @memo
        def third(x):
            return round(x / 3, PREC.get())
    """)
    call = "import rounding; a = rounding.third(1.0); rounding.PREC.set(4); print(a, rounding.third(1.0), rounding.third(2.0))"
    assert project.run(call).stdout.split() == ["0.33", "0.3333", "0.6667"]
    assert project.run("import rounding; print(rounding.third(2.0))").stdout.split() == ["0.67"]


def test_a_large_array_changed_in_place_is_never_stored_under_its_old_state(project):
    """`W = np.zeros(100_000)` (too large to compare before every call)
    changed in place (`W[0] = 5`), then a new argument: the miss computed
    from the new contents but stored the result under the old contents'
    fingerprint, which a fresh process then got (10.0 where its code
    computes 0.0). A miss now digests such values again before computing."""
    pytest.importorskip("numpy")
    project.write("weights.py", """
        import numpy as np
        from hitsave import memo
        W = np.zeros(100_000)

        @memo
        def scaled(n):
            print("ran:scaled")
            return float(W[0]) * n

        BIG = np.zeros(2_000_000)

        @memo
        def shifted(n):
            print("ran:shifted")
            return float(BIG[0]) + n
    """)
    # An array up to 8 MiB is digested again before every call.
    changed = "import weights; a = weights.scaled(1); weights.W[0] = 5; print('=', a, weights.scaled(1), weights.scaled(2))"
    assert _results_and_runs(project, changed) == ["0.0", "5.0", "10.0", "scaled,scaled,scaled"]
    assert _results_and_runs(project, "import weights; print('=', weights.scaled(2))") == ["0.0", "scaled"]
    assert _results_and_runs(project, changed) == ["0.0", "5.0", "10.0", "-"]
    # A larger one before a miss computes: never stored under the old contents.
    big = "import weights; a = weights.shifted(1); weights.BIG[0] = 5; print('=', a, weights.shifted(2))"
    assert _results_and_runs(project, big) == ["1.0", "7.0", "shifted,shifted"]
    assert _results_and_runs(project, "import weights; print('=', weights.shifted(2))") == ["2.0", "shifted"]


def test_module_level_containers_that_are_not_plain_count_by_what_they_hold(project):
    """A `deque`, an `array.array`, a `bytearray`, a `Counter`, a
    `defaultdict`, an `OrderedDict`, the project's dict subclass, a
    `MappingProxyType`, a `threading.local()`, an instance keeping its state
    in `__slots__` and a project instance held by another one beside a large
    list (`APP.settings.a = 10`) changed between two calls:
    each was compared by identity only (or, for the last two, which pickle
    cannot save, counted by their type), so the second call hit with the
    first state (2 served where the code computes 12), and a miss then stored
    its result under the old state's fingerprint."""
    project.write("state.py", """
        import array, collections, threading, types
        from hitsave import memo

        class Registry(dict):
            pass

        class Slotted:
            __slots__ = ("a",)

            def __init__(self):
                self.a = 1

        class Settings:
            def __init__(self):
                self.a = 1

        class App:
            def __init__(self):
                self.settings = Settings()
                self.rows = list(range(2000))

        HIST = collections.deque([1], maxlen=3)
        ARR = array.array("i", [1])
        BUF = bytearray(b"a")
        COUNTS = collections.Counter(a=1)
        DEFAULTS = collections.defaultdict(int, a=1)
        ORDERED = collections.OrderedDict(a=1)
        REG = Registry(a=1)
        SOURCE = {"a": 1}
        PROXY = types.MappingProxyType(SOURCE)
        LOCAL = threading.local()
        LOCAL.a = 1
        SLOTTED = Slotted()
        APP = App()

        # One function each: a change one check sees builds the graph again,
        # which would count the others' new states too.
        READERS = [
            memo(lambda x: x + sum(HIST)), memo(lambda x: x + sum(ARR)), memo(lambda x: x + len(BUF)),
            memo(lambda x: x + COUNTS["a"]), memo(lambda x: x + DEFAULTS["a"]), memo(lambda x: x + ORDERED["a"]),
            memo(lambda x: x + sum(REG.values())), memo(lambda x: x + PROXY["a"]), memo(lambda x: x + LOCAL.a),
            memo(lambda x: x + SLOTTED.a), memo(lambda x: x + APP.settings.a),
        ]

        def total(x):
            return [read(x) for read in READERS]

        def change():
            HIST.append(10); ARR.append(10); BUF.extend(b"bc"); COUNTS["a"] = 10; DEFAULTS["a"] = 10
            ORDERED["a"] = 10; REG["b"] = 10; SOURCE["a"] = 10; LOCAL.a = 10; SLOTTED.a = 10; APP.settings.a = 10
    """)
    before = ["2", "2", "2", "2", "2", "2", "2", "2", "2", "2", "2"]
    after = ["12", "12", "4", "11", "11", "11", "12", "11", "11", "11", "11"]
    call = "import state; a = state.total(1); state.change(); print('=', *a, *state.total(1))"
    assert _results_and_runs(project, call) == [*before, *after, "-"]
    assert _results_and_runs(project, call) == [*before, *after, "-"]
    # A process in the first state is served the first state's results.
    assert _results_and_runs(project, "import state; print('=', *state.total(1))") == [*before, "-"]


def test_a_result_holding_the_working_directory_is_returned_and_not_stored(project):
    """`os.path.abspath(name)` returns a path under the working directory:
    the result computed in `a/` was served in `b/` (and to a teammate through
    the cloud), where the code computes another path. Such a result is
    returned and not stored, with a NotStoredWarning; a relative path is
    stored as before."""
    import subprocess

    project.write("paths.py", """
        import os
        from hitsave import memo

        @memo
        def where(name):
            print("ran:where")
            return os.path.abspath(name)

        @memo
        def relative(name):
            print("ran:relative")
            return os.path.join("data", name)
    """)

    def run_in(directory: str) -> tuple[list[str], str]:
        (project.root / directory).mkdir(exist_ok=True)
        code = "import sys; sys.path.insert(0, '..'); import paths; print('=', paths.where('x.csv'), paths.relative('x.csv'))"
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=project.root / directory, env=project.env(), capture_output=True, text=True, check=True
        )
        out = done.stdout.split()
        runs = ",".join(word[4:] for word in out if word.startswith("ran:")) or "-"
        return [*out[out.index("=") + 1 :], runs], done.stderr

    first, warned = run_in("a")
    assert first == [str(project.root / "a" / "x.csv"), "data/x.csv", "where,relative"]
    assert "NotStoredWarning" in warned and f"holds the working directory {project.root / 'a'} as text" in warned, warned
    assert run_in("a")[0] == [str(project.root / "a" / "x.csv"), "data/x.csv", "where"]
    assert run_in("b")[0] == [str(project.root / "b" / "x.csv"), "data/x.csv", "where"]


def test_the_local_time_zone_counts_where_code_uses_local_time(project):
    """`datetime.fromtimestamp(ts)` and `time.localtime(ts)` answer by the
    machine's time zone: a result computed with TZ=UTC was served to a
    process (a teammate) in Tokyo (22 where its code computes 7), and so was
    one computed before `os.environ["TZ"] = ...; time.tzset()` in a process."""
    project.write("clock.py", """
        import datetime, time
        from hitsave import memo

        @memo
        def day(ts):
            return datetime.datetime.fromtimestamp(ts).strftime("%d-%H")

        @memo
        def hour(ts):
            return time.localtime(ts).tm_hour
    """)
    call = "import clock; print(clock.day(1700000000), clock.hour(1700000000))"
    assert project.run(call, {"TZ": "UTC"}).stdout.split() == ["14-22", "22"]
    assert project.run(call, {"TZ": "Asia/Tokyo"}).stdout.split() == ["15-07", "7"]
    switch = (
        "import clock, os, time; a = clock.hour(1700000000); os.environ['TZ'] = 'Asia/Tokyo'; time.tzset(); "
        "print(a, clock.hour(1700000000))"
    )
    assert project.run(switch, {"TZ": "UTC"}).stdout.split() == ["22", "7"]


def test_a_file_an_argument_names_counts_by_its_contents(project):
    """`load("data.txt")`, `load(Path("data.txt"))`, `total(["a.txt",
    "b.txt"])`, a memoized method reading `self.path`, for code reading the
    path it is given: the key held only the text, so an edit of the file hit
    with the old contents."""
    project.write("data.txt", "1")
    project.write("a.txt", "10")
    project.write("b.txt", "20")
    project.write("loader.py", """
        from pathlib import Path
        from hitsave import memo

        @memo
        def load(path):
            print("ran:load")
            with open(path) as handle:
                return handle.read().strip()

        @memo
        def total(paths):
            print("ran:total")
            return sum(int(Path(p).read_text()) for p in paths)

        class Dataset:
            def __init__(self, path):
                self.path = path

            @memo
            def read(self):
                print("ran:read")
                return Path(self.path).read_text().strip()
    """)
    call = (
        "import loader; from pathlib import Path; print('=', loader.load('data.txt'), loader.load(Path('data.txt')), "
        "loader.total(['a.txt', 'b.txt']), loader.Dataset('data.txt').read())"
    )
    assert _results_and_runs(project, call) == ["1", "1", "30", "1", "load,load,total,read"]
    assert _results_and_runs(project, call) == ["1", "1", "30", "1", "-"]
    project.write("data.txt", "2")
    project.write("b.txt", "25")
    assert _results_and_runs(project, call) == ["2", "2", "35", "2", "load,load,total,read"]


def test_a_directory_or_glob_pattern_an_argument_names_counts_by_what_it_holds(project):
    """`total("data")` listing and reading a directory, `load_all("data/*.txt")`,
    `Path(d).iterdir()`, and code that only lists, counts or asks after a
    path (`len(os.listdir(d))`, `os.path.exists(p)`, `os.path.getsize(p)`):
    the key held only the text, so an edited, added or removed file hit
    with the old result."""
    project.write("data/a.txt", "1")
    project.write("data/b.txt", "2")
    project.write("data/notes.md", "x")
    project.write("loaders.py", """
        import glob, os
        from pathlib import Path
        from hitsave import memo

        @memo
        def total(d):
            print("ran:total")
            return sum(int(open(os.path.join(d, n)).read()) for n in sorted(os.listdir(d)) if n.endswith(".txt"))

        @memo
        def load_all(pattern):
            print("ran:load_all")
            return sum(int(Path(p).read_text()) for p in sorted(glob.glob(pattern)))

        @memo
        def count(d):
            print("ran:count")
            return sum(1 for _ in Path(d).iterdir())

        @memo
        def there(p):
            print("ran:there")
            return os.path.exists(p)

        @memo
        def size(p):
            print("ran:size")
            return os.path.getsize(p)
    """)
    call = (
        "import loaders as l; print('=', l.total('data'), l.load_all('data/*.txt'), l.count('data'), "
        "l.there('data/c.txt'), l.size('data/a.txt'))"
    )
    every = "total,load_all,count,there,size"
    assert _results_and_runs(project, call) == ["3", "3", "3", "False", "1", every]
    assert _results_and_runs(project, call) == ["3", "3", "3", "False", "1", "-"]
    project.write("data/a.txt", "10")  # edited
    assert _results_and_runs(project, call) == ["12", "12", "3", "False", "2", "total,load_all,count,size"]
    project.write("data/c.txt", "5")  # added
    assert _results_and_runs(project, call) == ["17", "17", "4", "True", "2", "total,load_all,count,there"]
    project.write("data/notes.md", "y")  # no match of the pattern: only what reads the whole directory runs
    assert _results_and_runs(project, call) == ["17", "17", "4", "True", "2", "total,count"]
    (project.root / "data" / "b.txt").unlink()  # removed
    assert _results_and_runs(project, call) == ["15", "15", "3", "True", "2", "total,load_all,count"]


def test_a_name_the_code_completes_into_a_file_counts_that_file(project):
    """`load("train")` reading `f"{name}.csv"` (or `name + "_x.txt"`): the
    text names no file, so only the text was in the key and an edit of
    `train.csv` hit."""
    project.write("train.csv", "1")
    project.write("train_x.txt", "10")
    project.write("trainer.txt", "100")
    project.write("loaders.py", """
        from hitsave import memo

        @memo
        def load(name):
            print("ran:load")
            return int(open(f"{name}.csv").read()) + int(open(name + "_x.txt").read())
    """)
    call = "import loaders; print('=', loaders.load('train'))"
    assert _results_and_runs(project, call) == ["11", "load"]
    assert _results_and_runs(project, call) == ["11", "-"]
    project.write("trainer.txt", "200")  # not a file `train` begins (`trainer`): still a hit
    assert _results_and_runs(project, call) == ["11", "-"]
    project.write("train.csv", "2")
    assert _results_and_runs(project, call) == ["12", "load"]


def test_files_read_beside_the_module_at_names_the_caller_gives_count(project):
    """`(Path(__file__).parent / "data" / name).read_text()`,
    `open(os.path.join(os.path.dirname(__file__), "data", name))`,
    `Path(__file__).with_name("data") / name`: the code reads `__file__`
    too, and its absolute path was taken for a file named under `data/`, so
    only that (the module itself) counted and an edit of the data hit."""
    project.write("data/a.txt", "1")
    project.write("beside.py", """
        import os
        from pathlib import Path
        from hitsave import memo

        @memo
        def a(name):
            print("ran:a")
            return (Path(__file__).parent / "data" / name).read_text()

        @memo
        def b(name):
            print("ran:b")
            return open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", name)).read()

        @memo
        def c(name):
            print("ran:c")
            return (Path(__file__).with_name("data") / name).read_text()
    """)
    call = "import beside; print('=', beside.a('a.txt'), beside.b('a.txt'), beside.c('a.txt'))"
    assert _results_and_runs(project, call) == ["1", "1", "1", "a,b,c"]
    assert _results_and_runs(project, call) == ["1", "1", "1", "-"]
    project.write("data/a.txt", "2")
    assert _results_and_runs(project, call) == ["2", "2", "2", "a,b,c"]


def test_a_directory_the_call_creates_at_a_path_its_argument_names_does_not_make_the_next_call_miss(project):
    """`export("data.txt", "out")` writing files into a directory it
    creates: the directory counts at the next call, so the result is stored
    under that key too. An output directory that already existed makes one
    more call run (its files then hold what every later call writes)."""
    project.write("data.txt", "3")
    project.write("exports.py", """
        import os
        from hitsave import memo

        @memo
        def export(source, out):
            print("ran:export")
            total = int(open(source).read()) * 2
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, "total.txt"), "w") as handle:
                handle.write(str(total))
            return total
    """)
    call = "import exports; print('=', exports.export('data.txt', 'out'))"
    assert _results_and_runs(project, call) == ["6", "export"]
    assert _results_and_runs(project, call) == ["6", "-"]
    project.write("data.txt", "4")
    assert _results_and_runs(project, call) == ["8", "export"]
    assert _results_and_runs(project, call) == ["8", "export"]  # `out` existed: its contents changed
    assert _results_and_runs(project, call) == ["8", "-"]


def test_a_directory_an_argument_names_that_is_too_large_to_count_is_refused(project):
    """More files than can be counted at every call: a typed refusal naming
    the argument, never a hit on the text alone."""
    for index in range(4100):
        (project.root / "big").mkdir(exist_ok=True)
        (project.root / "big" / f"{index}.txt").write_text("1")
    project.write("loaders.py", """
        import os
        from hitsave import memo

        @memo
        def count(d):
            return len(os.listdir(d))
    """)
    result = project.run(
        "import hitsave, loaders\n"
        "try:\n    loaders.count('big')\nexcept hitsave.HitSaveError as error:\n    print(error.code, '|', error)",
        check=False,
    )
    assert result.stdout.startswith('unhashable_value | unhashable_value: the argument "big" names a directory with more than 4096'), (
        result.stdout + result.stderr
    )


def _install(project, code: str) -> None:
    """Installs `mylib` 0.1.0 with `code` as a wheel installer would, its
    RECORD listing the module's hash (the dist-info written anew, as pip does)."""
    import base64
    import hashlib
    import shutil

    site = project.root / "deps" / "site-packages"
    shutil.rmtree(site / "mylib-0.1.0.dist-info", ignore_errors=True)
    digest = base64.urlsafe_b64encode(hashlib.sha256(code.encode()).digest()).rstrip(b"=").decode()
    project.write("deps/site-packages/mylib/__init__.py", code)
    project.write("deps/site-packages/mylib-0.1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: mylib\nVersion: 0.1.0\n")
    project.write("deps/site-packages/mylib-0.1.0.dist-info/top_level.txt", "mylib\n")
    project.write(
        "deps/site-packages/mylib-0.1.0.dist-info/RECORD",
        f"mylib/__init__.py,sha256={digest},{len(code)}\nmylib-0.1.0.dist-info/RECORD,,\n",
    )


def test_a_package_reinstalled_at_the_same_version_counts_by_what_was_installed(project):
    """A project's own library installed without `-e` (`pip install
    ./libs/mylib`), edited and installed again at the same version 0.1.0:
    a package counted by name and version only, so the old results hit."""
    _install(project, "def f(x):\n    return x * 2\n")
    project.write("app.py", """
        import mylib
        from hitsave import memo

        @memo
        def g(x):
            print("ran:g")
            return mylib.f(x)
    """)
    env = {"PYTHONPATH": str(project.root / "deps" / "site-packages")}
    call = "import app; print('=', app.g(10))"
    assert _results_and_runs(project, call, env) == ["20", "g"]
    assert _results_and_runs(project, call, env) == ["20", "-"]
    _install(project, "def f(x):\n    return x * 3\n")
    assert _results_and_runs(project, call, env) == ["30", "g"]


def test_an_sqlite_database_held_open_at_module_level_counts_by_its_file(project):
    """`CONN = sqlite3.connect("app.db")` read by the function: a connection
    cannot be hashed, so it counted by its type and the line making it, and a
    change of the database hit with the old answer (5 where it is now 7)."""
    import sqlite3

    def fill(value: int) -> None:
        with sqlite3.connect(project.root / "app.db") as connection:
            connection.execute("create table if not exists t(x)")
            connection.execute("delete from t")
            connection.execute("insert into t values (?)", (value,))
        connection.close()

    fill(5)
    project.write("report.py", """
        import sqlite3
        from hitsave import memo
        CONN = sqlite3.connect("app.db")

        @memo
        def total(k):
            print("ran:total")
            return CONN.execute("select sum(x) from t").fetchone()[0] * k
    """)
    call = "import report; print('=', report.total(1))"
    assert _results_and_runs(project, call) == ["5", "total"]
    assert _results_and_runs(project, call) == ["5", "-"]
    fill(7)
    assert _results_and_runs(project, call) == ["7", "total"]


def test_pandas_options_count_where_pandas_code_is_used(project):
    """`pd.set_option("display.precision", 2)` in a setup module changes what
    `to_string()` returns: an edit of it hit, and so did a change between
    two calls in one process."""
    pytest.importorskip("pandas")
    project.write("setup_env.py", """
        import pandas as pd
        pd.set_option("display.precision", 2)
    """)
    project.write("report.py", """
        import pandas as pd
        import setup_env
        from hitsave import memo

        @memo
        def table(n):
            return pd.DataFrame({"x": [1 / 3] * n}).to_string().split()[-1]
    """)
    call = "import report, pandas as pd; a = report.table(1); pd.set_option('display.precision', 3); print(a, report.table(1))"
    assert project.run(call).stdout.split() == ["0.33", "0.333"]
    project.write("setup_env.py", """
        import pandas as pd
        pd.set_option("display.precision", 5)
    """)
    assert project.run("import report; print(report.table(1))").stdout.split() == ["0.33333"]


def test_a_value_digesting_differently_each_time_rebuilds_once_per_miss(project):
    """A module-level value whose pickle differs at every look (it saves a
    clock) and that the per-call checks see only in part: before a miss
    computes it is digested again, differs, and the graph is built again;
    the call made again must not check again (it recursed until
    RecursionError)."""
    project.write("ticking.py", """
        import time
        from hitsave import memo

        class Ticking:
            def __init__(self, at=0):
                self.at = at
                self.show = print  # not plain data: compared only in part

            def __reduce__(self):
                return (Ticking, (time.perf_counter_ns(),))

        TICK = Ticking()

        @memo
        def f(x):
            print("ran:f")
            return x + (TICK.at > -1)
    """)
    assert _results_and_runs(project, "import ticking; print('=', ticking.f(1), ticking.f(2))") == ["2", "3", "f,f"]


def test_a_file_the_call_creates_at_a_path_its_argument_names_does_not_make_the_next_call_miss(project):
    """`report("data.txt", "out.txt")` reads one file and writes the other:
    `out.txt` exists at the next call and counts there by contents, so
    without the result stored under that key too every second process ran
    the body again."""
    project.write("data.txt", "3")
    project.write("reports.py", """
        from hitsave import memo

        @memo
        def report(source, out):
            print("ran:report")
            with open(source) as handle:
                total = int(handle.read()) * 2
            with open(out, "w") as handle:
                handle.write(f"total {total}")
            return total
    """)
    call = "import reports; print('=', reports.report('data.txt', 'out.txt'))"
    assert _results_and_runs(project, call) == ["6", "report"]
    assert _results_and_runs(project, call) == ["6", "-"]
    project.write("data.txt", "4")
    assert _results_and_runs(project, call) == ["8", "report"]


def test_numpy_settings_count_where_numpy_code_is_used(project):
    """`np.set_printoptions(precision=3)` in a setup module changes what
    `str(array)` returns: an edit of it used to hit, and so did a change
    between two calls in one process."""
    pytest.importorskip("numpy")
    project.write("setup_env.py", """
        import numpy as np
        np.set_printoptions(precision=3)
    """)
    project.write("report.py", """
        import numpy as np
        import setup_env
        from hitsave import memo

        @memo
        def table(n):
            return str(np.arange(n) / 7)
    """)
    call = "import report, numpy as np; a = report.table(3); np.set_printoptions(precision=2); print(a, '|', report.table(3))"
    assert project.run(call).stdout.split() == ["[0.", "0.143", "0.286]", "|", "[0.", "0.14", "0.29]"]
    project.write("setup_env.py", """
        import numpy as np
        np.set_printoptions(precision=5)
    """)
    assert project.run("import report; print(report.table(3))").stdout.split() == ["[0.", "0.14286", "0.28571]"]


def test_a_path_held_by_command_line_arguments_or_a_namespace_counts(project):
    """`args = parser.parse_args()` then `open(args.config)`, a
    `SimpleNamespace(data="data.txt")`: a package's small record holding the
    path (the file used to be left out: an edit hit)."""
    project.write("cfg.txt", "2")
    project.write("data.txt", "5")
    project.write("cli.py", """
        import argparse, types
        from hitsave import memo

        parser = argparse.ArgumentParser()
        parser.add_argument("--config", default="cfg.txt")
        args = parser.parse_args([])
        SETTINGS = types.SimpleNamespace(data="data.txt")

        @memo
        def scaled(x):
            with open(args.config) as handle:
                return int(handle.read()) * x

        @memo
        def total(x):
            with open(SETTINGS.data) as handle:
                return int(handle.read()) + x
    """)
    call = "import cli; print(cli.scaled(1), cli.total(1))"
    assert project.run(call).stdout.split() == ["2", "6"]
    project.write("cfg.txt", "3")
    project.write("data.txt", "7")
    assert project.run(call).stdout.split() == ["3", "8"]


def test_a_path_held_inside_a_module_level_value_counts(project):
    """`MODEL = Model("weights.txt")` with a method opening `self.path`,
    `CFG = {"weights": Path("weights.txt")}`, `INPUTS = ["data/a.txt"]`: the
    path is inside a module-level value, not a constant of the code or a
    module-level string; an edit of the file used to hit."""
    project.write("weights.txt", "2")
    project.write("data/a.txt", "5")
    project.write("app.py", """
        from pathlib import Path
        from hitsave import memo

        class Model:
            def __init__(self, path):
                self.path = path

            def predict(self, x):
                with open(self.path) as handle:
                    return x * int(handle.read())

        MODEL = Model("weights.txt")
        CFG = {"weights": Path("weights.txt"), "mode": "fast"}
        INPUTS = ("data/a.txt",)

        @memo
        def by_instance(x):
            print("ran:instance")
            return MODEL.predict(x)

        @memo
        def by_dict(x):
            print("ran:dict")
            return x * int(CFG["weights"].read_text())

        @memo
        def by_list():
            print("ran:list")
            return sum(int(Path(name).read_text()) for name in INPUTS)
    """)
    call = "import app; print('=', app.by_instance(1), app.by_dict(1), app.by_list())"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["2", "2", "5", "instance,dict,list"]
    assert run() == ["2", "2", "5", "-"]
    project.write("weights.txt", "3")
    assert run() == ["3", "3", "5", "instance,dict"]
    project.write("data/a.txt", "7")
    assert run() == ["3", "3", "7", "list"]


def test_a_path_in_a_class_attribute_or_an_enum_counts(project):
    """`open(Cfg.PATH)` with `PATH = "x.txt"` in the class body, and
    `open(Files.X.value)` with an enum member: an edit used to hit."""
    project.write("x.txt", "2")
    project.write("app.py", """
        import enum
        from hitsave import memo

        class Cfg:
            PATH = "x.txt"

        class Files(enum.Enum):
            X = "x.txt"

        @memo
        def by_attribute(k):
            print("ran:attribute")
            with open(Cfg.PATH) as handle:
                return k * int(handle.read())

        @memo
        def by_enum(k):
            print("ran:enum")
            with open(Files.X.value) as handle:
                return k * int(handle.read())
    """)
    call = "import app; print('=', app.by_attribute(1), app.by_enum(1))"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["2", "2", "attribute,enum"]
    assert run() == ["2", "2", "-"]
    project.write("x.txt", "3")
    assert run() == ["3", "3", "attribute,enum"]


def test_a_path_in_a_default_or_a_closure_counts(project):
    """`def load(path="w.txt")` called without it, a memoized function's own
    default, a closure over a path: an edit of the file used to hit."""
    project.write("w.txt", "2")
    project.write("app.py", """
        from hitsave import memo

        def load(path="w.txt"):
            with open(path) as handle:
                return int(handle.read())

        def reader_of(path):
            def read():
                with open(path) as handle:
                    return int(handle.read())
            return read

        READ = reader_of("w.txt")

        @memo
        def by_helper_default(x):
            print("ran:helper")
            return x * load()

        @memo
        def by_own_default(x, path="w.txt"):
            print("ran:own")
            with open(path) as handle:
                return x * int(handle.read())

        @memo
        def by_closure(x):
            print("ran:closure")
            return x * READ()
    """)
    call = "import app; print('=', app.by_helper_default(1), app.by_own_default(1), app.by_closure(1))"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["2", "2", "2", "helper,own,closure"]
    assert run() == ["2", "2", "2", "-"]
    project.write("w.txt", "3")
    assert run() == ["3", "3", "3", "helper,own,closure"]


def test_files_a_glob_pattern_matches_count(project):
    """`glob.glob("data/*.csv")`, `Path(".").glob("data/**/*.json")`: the
    pattern names no file or directory itself; a new or edited file used to
    hit (docs/python.md, "Data files")."""
    project.write("data/a.csv", "1")
    project.write("data/deep/x.json", "10")
    project.write("app.py", """
        import glob
        from pathlib import Path
        from hitsave import memo

        @memo
        def csvs():
            print("ran:csvs")
            return sum(int(open(path).read()) for path in glob.glob("data/*.csv"))

        @memo
        def jsons():
            print("ran:jsons")
            return sum(int(path.read_text()) for path in Path(".").glob("data/**/*.json"))
    """)
    call = "import app; print('=', app.csvs(), app.jsons())"

    def run() -> list[str]:
        return _results_and_runs(project, call)

    assert run() == ["1", "10", "csvs,jsons"]
    assert run() == ["1", "10", "-"]
    project.write("data/b.csv", "5")
    assert run() == ["6", "10", "csvs"]
    project.write("data/deep/er/y.json", "20")
    assert run() == ["6", "30", "jsons"]
    project.write("data/a.csv", "7")
    assert run() == ["12", "30", "csvs"]


def test_a_data_directory_too_large_to_count_is_refused(project):
    """More files than can be hashed at each first call: the call raises
    `code_unavailable` naming the directory instead of assuming its files
    unchanged."""
    for index in range(4100):
        project.write(f"data/{index}.csv", "a\n1\n")
    project.write("job.py", """
        from pathlib import Path
        from hitsave import memo
        DATA_DIR = Path(__file__).parent / "data"

        @memo
        def load(name):
            return open(DATA_DIR / f"{name}.csv").read()
    """)
    result = project.run("""
        import hitsave, job
        try:
            job.load("1")
        except hitsave.CodeUnavailableError as error:
            print(error.code, "job:load reads files from the directory" in str(error), "File(path)" in str(error))
    """)
    assert result.stdout.split() == ["code_unavailable", "True", "True"]


def test_a_file_a_function_writes_does_not_change_its_fingerprint(project):
    """A function that writes a file it names (an output, a log) would
    otherwise miss in every later process, the file having changed."""
    project.write("job.py", """
        import os
        from hitsave import memo
        runs = []

        @memo
        def train(x):
            runs.append(1)
            os.makedirs("out", exist_ok=True)
            with open("out/model.txt", "a") as handle:
                handle.write(str(x))
            return x * 2
    """)
    call = "import job; print(job.train(3), len(job.runs))"
    assert project.run(call).stdout.split() == ["6", "1"]
    assert project.run(call).stdout.split() == ["6", "0"]
    assert project.run(call).stdout.split() == ["6", "0"]


def test_code_that_asks_which_machine_it_runs_on_counts_the_platform():
    """`platform.system()`, `os.uname()`: a result computed on Linux is not
    one for a teammate's macOS, so these count by the platform as well as by
    Python's version (the rest of the standard library by the version only,
    so results are shared across platforms)."""
    import math
    import platform

    from hitsave import _code

    assert _code.package_of(platform.system) == ("python", f"{sys.version_info[0]}.{sys.version_info[1]} {_code._platform()}")
    assert sys.platform in _code._platform()
    assert _code.package_of(os.uname) == _code.package_of(platform.machine)
    assert _code.package_of(math.sqrt) == ("python", f"{sys.version_info[0]}.{sys.version_info[1]}")


def test_a_fresh_process_analyses_again_only_the_code_that_changed(project):
    """What analysing a function finds from its code alone is kept in the
    store by the code's content: the next process reads it, and after one
    file is edited only that file's functions are analysed again (#12). A
    damaged file of facts is read as none."""
    for m in range(3):
        previous = f"from proj import m{m - 1} as prev\n" if m else ""
        call = " + prev.f(x)" if m else ""
        project.write(f"proj/m{m}.py", f"{previous}\ndef f(x):\n    return x * {m + 2}{call}\n\ndef g(x):\n    return f(x) + {m}\n")
    project.write("proj/__init__.py", "")
    probe = """
        import json, os, hitsave
        from hitsave import _code
        import proj.m2
        g = hitsave.memo(proj.m2.g)
        missed = g.lookup(3) is hitsave.MISS
        value = g(3)
        computed = sorted(f"{os.path.basename(f)}:{n}" for f, n in _code.analysed_files.items())
        print(json.dumps([missed, value, computed]))
    """

    def run():
        return json.loads(project.run(probe).stdout.strip().splitlines()[-1])

    missed, value, computed = run()
    assert missed and value == 3 * 4 + 3 * 3 + 3 * 2 + 2
    assert computed == ["m0.py:1", "m1.py:1", "m2.py:2"]
    assert run() == [False, value, []], "a fresh process with no edit analyses nothing again"
    text = (project.root / "proj/m0.py").read_text()
    project.write("proj/m0.py", text.replace("x * 2", "x * 5"))
    missed, edited, computed = run()
    assert missed and edited == value + 3 * 3
    assert computed == ["m0.py:1"], "only the edited file's function is analysed again"
    # Files of facts damaged (cut short): read as none, analysed again, same answer.
    facts = list((project.cache / "analysis").glob("codes-*.bin"))
    assert facts
    for path in facts:
        path.write_bytes(path.read_bytes()[:-7])
    missed, again, computed = run()
    assert not missed and again == edited
    assert computed == ["m0.py:1", "m1.py:1", "m2.py:2"]


def test_the_analysis_directory_keeps_a_bounded_number_of_facts_files(project, monkeypatch):
    """A directory per notebook kernel (`/tmp/ipykernel_<pid>`) makes a facts
    file each: the oldest go once there are too many."""
    from hitsave import _code

    analysis = project.cache / "analysis"
    analysis.mkdir(parents=True)
    for number in range(6):
        (analysis / f"codes-old-{number}.bin").write_bytes(b"x")
        os.utime(analysis / f"codes-old-{number}.bin", ns=(number * 10**9, number * 10**9))
    (analysis / "bytecode-keep.bin").write_bytes(b"x")
    monkeypatch.setattr(_code, "_FACT_FILES_KEPT", 4)
    _code._prune_facts(str(analysis))
    left = sorted(path.name for path in analysis.iterdir())
    assert left == ["bytecode-keep.bin", "codes-old-3.bin", "codes-old-4.bin", "codes-old-5.bin"]


def _compiled_module(directory, factor):
    """Builds `fastmath` (a C extension module: `scale(x)` = x * factor) in place, as
    `setup.py build_ext --inplace` or a Cython/pybind11 build leaves one in a project."""
    import shutil
    import sysconfig

    compiler = shutil.which("cc") or shutil.which("gcc")
    include = sysconfig.get_paths()["include"]
    if compiler is None or not os.path.isfile(os.path.join(include, "Python.h")):
        pytest.skip("no C compiler or Python headers")
    source = directory / "fastmath.c"
    source.write_text(
        "#include <Python.h>\n"
        "static PyObject* scale(PyObject* self, PyObject* args) { long x; if (!PyArg_ParseTuple(args, \"l\", &x)) return NULL;"
        " return PyLong_FromLong(x * FACTOR); }\n"
        "static PyMethodDef M[] = {{\"scale\", scale, METH_VARARGS, \"scale\"}, {NULL, NULL, 0, NULL}};\n"
        "static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, \"fastmath\", NULL, -1, M};\n"
        "PyMODINIT_FUNC PyInit_fastmath(void) { return PyModule_Create(&D); }\n"
    )
    target = directory / f"fastmath{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", f"-DFACTOR={factor}", f"-I{include}", str(source), "-o", str(target)], check=True
    )


def test_a_compiled_module_of_the_project_rebuilt_misses(project):
    """A project's own C/Cython/pybind11 module, rebuilt in place with other
    behaviour: its functions count by the compiled file's contents (they
    counted by name: the old result hit)."""
    project.write("app.py", """
        from hitsave import memo
        import fastmath

        @memo
        def f(x):
            return fastmath.scale(x)

        @memo
        def g(x):
            return getattr(fastmath, "scale")(x) + 1
    """)
    _compiled_module(project.root, 2)
    probe = "import json, hitsave, app; print(json.dumps([app.f.lookup(3) is hitsave.MISS, app.f(3), app.g(3)]))"
    assert json.loads(project.run(probe).stdout) == [True, 6, 7]
    assert json.loads(project.run(probe).stdout) == [False, 6, 7]
    _compiled_module(project.root, 5)
    assert json.loads(project.run(probe).stdout) == [True, 15, 16]
