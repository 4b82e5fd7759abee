"""The native module's stubs are checked, not trusted."""

import ast
import inspect
from pathlib import Path

import hitsave
from hitsave import _native


def stub_names():
    tree = ast.parse((Path(hitsave.__file__).parent / "_native.pyi").read_text())
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef) and node.name != "__getattr__"}
    classes = {node.name: {item.name for item in node.body if isinstance(item, ast.FunctionDef)} for node in tree.body if isinstance(node, ast.ClassDef)}
    return functions, classes


def test_every_native_function_and_method_has_a_stub_and_no_stub_is_stale():
    functions, classes = stub_names()
    native_functions = {name for name, value in vars(_native).items() if callable(value) and not inspect.isclass(value) and not name.startswith("_")}
    assert functions == native_functions
    store_methods = {name for name in dir(_native.Store) if not name.startswith("_")}
    assert classes["Store"] - {"__init__"} == store_methods
    for name in ("Mapped", "ComputeLock", "Function", "BytecodeReader"):
        native = {member for member in dir(getattr(_native, name)) if not member.startswith("_")}
        assert {member for member in classes[name] if not member.startswith("_")} == native, name
    assert issubclass(_native.UnhashableValueError, _native.HitSaveError)
