"""The native module's stubs are checked, not trusted."""

import ast
import inspect
from pathlib import Path

import hitsave
from hitsave import _native


def test_every_error_code_has_its_class_in_the_stub():
    """One ``HitSaveError`` subclass per stable code, each written in the stub."""
    tree = ast.parse((Path(hitsave.__file__).parent / "_native.pyi").read_text())
    stubbed = {node.name for node in tree.body if isinstance(node, ast.ClassDef) and node.name.endswith("Error")}
    native = {name for name, value in vars(_native).items() if inspect.isclass(value) and issubclass(value, _native.HitSaveError)}
    assert stubbed == native
    assert len(native) == len(_native.error_codes()) + 1  # and HitSaveError itself


def test_the_stubs_match_the_native_module_by_signature():
    """`mypy.stubtest` (as pydantic-core checks its stubs): every function,
    class, method and parameter of `hitsave._native` as the stub says, and
    every error class of docs/errors.md spelled out."""
    import subprocess
    import sys

    allowlist = Path(__file__).resolve().parents[1] / "stubtest-allowlist.txt"
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "hitsave._native", "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
