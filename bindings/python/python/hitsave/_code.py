"""Code dependencies of a function, discovered from the live objects.

A memoized function's identity is the ``code2`` fingerprint of its node in a
dependency graph (``docs/spec/keys.md``). This module builds that graph:

- project functions, methods, lambdas and nested functions by what runs:
  their code object (bytecode, exception table, names, constants without the
  docstring; nested code likewise), annotations and defaults, so comments,
  blank lines, docstrings and line moves do not count, and a file saved after
  import is not read in place of the code loaded;
- the globals they read, found in the bytecode of the function and of every
  code object nested in it (lambdas, comprehensions, inner functions; read
  natively, ``bytecode.rs``, with the layout learned from :mod:`dis`),
  including ``module.attr`` reads and names reached through closures;
- classes by their source (each file parsed once per version), their
  methods' code, their bases and the globals their methods read;
- module-level values by their canonical value;
- anything from an installed package by distribution name and version.

The graph itself is hashed by the core, so Python and Node fingerprints
follow one rule.
"""

from __future__ import annotations

import array
import builtins
import collections.abc
import functools
import importlib
import importlib.machinery
import marshal
import operator
import os
import re
import sys
import threading
import time
import types
import weakref
from typing import Any

from hitsave import _bytecode, _native, _types


@functools.cache
def _external_prefixes() -> tuple[str, ...]:
    """The standard library's directories: where `os` was loaded from, and
    the directory holding `lib-dynload` (or Windows' `DLLs`) on `sys.path`.
    (Installed packages' directories are told by their names,
    :func:`_installed_directory`; `sysconfig.get_paths()` would cost a
    fresh process two milliseconds to say the same.)"""
    stdlib = getattr(os, "__file__", None)
    if not isinstance(stdlib, str):  # a build whose frozen `os` has no file: ask sysconfig
        import sysconfig

        stdlib = os.path.join(sysconfig.get_paths()["stdlib"], "os.py")
    directories = [os.path.dirname(stdlib)]
    for entry in sys.path:
        if os.path.basename(entry.rstrip("/\\")) in ("lib-dynload", "DLLs"):
            directories.append(os.path.dirname(entry.rstrip("/\\")))
    return tuple({os.path.realpath(directory) + os.sep: None for directory in directories})


_BUILTIN_CODE = (
    types.BuiltinFunctionType,
    types.MethodDescriptorType,
    types.WrapperDescriptorType,
    types.ClassMethodDescriptorType,
    types.MethodWrapperType,
)


def is_code_object(value: Any) -> bool:
    """Whether ``value`` is hashed by its code: functions, classes, and
    builtin functions and methods that are not bound to an instance (``len``,
    ``str.upper``; ``[].append`` is bound to its list, so it is hashed by what
    pickle saves of it, which names the list)."""
    if isinstance(value, (types.FunctionType, type)):
        return True
    if isinstance(value, _BUILTIN_CODE):
        bound = getattr(value, "__self__", None)
        return bound is None or isinstance(bound, (types.ModuleType, type))
    return False


# Fingerprints by function or class object (by id, with a weak reference
# that tells the object is still that one: a WeakKeyDictionary makes a new
# reference at every lookup, which a warm hit on an instance argument pays
# for its class), reused while what their graph read is unchanged.
_FINGERPRINTS: dict[int, tuple["weakref.ref[Any]", Any, str]] = {}


# Fingerprints of installed packages' callables (copyreg.__newobj__, a
# datetime class): fixed for the process, since a package's version cannot
# change under it. Kept by identity, with the object held alive.
_EXTERNAL_FINGERPRINTS: dict[int, tuple[Any, str]] = {}


def fingerprint_of(value: Any) -> str:
    """The ``code2`` fingerprint of a function or class."""
    external = _EXTERNAL_FINGERPRINTS.get(id(value))
    if external is not None and external[0] is value:
        return external[1]
    known = _FINGERPRINTS.get(id(value))
    if known is not None and known[0]() is value and known[1].current():
        return known[2]
    if len(_EXTERNAL_FINGERPRINTS) < 4096 and is_external(value) and not isinstance(value, types.ModuleType):
        fingerprint = _fingerprint_of(value)
        _EXTERNAL_FINGERPRINTS[id(value)] = (value, fingerprint)
        return fingerprint
    return _fingerprint_of(value)


def _fingerprint_of(value: Any) -> str:
    """Analyses `value` (or reuses its current graph) and keeps its fingerprint."""
    root, nodes, watched = graph_and_watched(value)
    names = [node[1] for node in nodes]
    fingerprint = _native.fingerprints(nodes)[names.index(root)]
    key = id(value)

    def forget(reference: Any, key: int = key) -> None:
        known = _FINGERPRINTS.get(key)
        if known is not None and known[0] is reference:
            del _FINGERPRINTS[key]

    try:
        _FINGERPRINTS[key] = (weakref.ref(value, forget), watched, fingerprint)
    except TypeError:  # not weakly referenceable
        pass
    return fingerprint


def _project_extension(obj: Any) -> tuple[str, str] | None:
    """``(module name, file)`` when `obj` is a compiled module of the
    project's own or a callable or type one defines (installed packages'
    count by their distribution instead)."""
    module = obj if isinstance(obj, types.ModuleType) else sys.modules.get(_module_name_of(obj))
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(_EXTENSION_SUFFIXES) or is_external(module):
        return None
    return module.__name__, file


def _module_name_of(obj: Any) -> str:
    """The module that defines ``obj`` (a method descriptor such as
    ``str.upper`` names it through the class it belongs to)."""
    name = getattr(obj, "__module__", None)
    if not isinstance(name, str):
        bound = getattr(obj, "__self__", None)
        if isinstance(bound, types.ModuleType):
            name = bound.__name__
        else:
            owner = getattr(obj, "__objclass__", None) or (bound if isinstance(bound, type) else None)
            name = getattr(owner, "__module__", None)
    return name if isinstance(name, str) else ""


def is_external(obj: Any) -> bool:
    """Whether ``obj`` comes from an installed package or the standard library."""
    module = sys.modules.get(_module_name_of(obj))
    if isinstance(obj, types.ModuleType):
        module = obj
    if module is None:
        return False
    return _module_is_external(module.__name__, getattr(module, "__file__", None))


# The file endings of compiled modules (`.cpython-311-x86_64-linux-gnu.so`, `.abi3.so`, `.so`, `.pyd`).
_EXTENSION_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)


@functools.lru_cache(maxsize=4096)
def _module_is_external(name: str, file: str | None) -> bool:
    """Whether the module `name` loaded from `file` is a package's or the
    standard library's (kept per module)."""
    if name in sys.builtin_module_names or name == "builtins":
        return True
    if not file:
        return False  # __main__ of `python -c`, notebooks: the user's code
    if not _directory_is_external(os.path.dirname(file)):
        return False  # the common case, without a system call per module
    if os.path.islink(file):
        file = os.path.realpath(file)  # a project file linked into site-packages is the project's
        return _directory_is_external(os.path.dirname(file))
    return True


@functools.lru_cache(maxsize=1024)
def _directory_is_external(directory: str) -> bool:
    """Whether modules in `directory` are the standard library's or
    installed ones (resolving a path costs tens of microseconds: once per
    directory)."""
    return (os.path.realpath(directory) + os.sep).startswith(_external_prefixes()) or _installed_directory(directory)


@functools.lru_cache(maxsize=1024)
def _installed_directory(directory: str) -> bool:
    """Whether `directory` is inside a ``site-packages`` or ``dist-packages``
    directory (a path that merely contains the words is not)."""
    resolved = os.path.realpath(directory) + os.sep
    return f"{os.sep}site-packages{os.sep}" in resolved or f"{os.sep}dist-packages{os.sep}" in resolved


def _environment_signature() -> str:
    """What the installed distributions depend on: the interpreter and, for
    every directory on ``sys.path``, the names of its ``*.dist-info`` and
    ``*.egg-info`` entries (they carry the versions, so installing, removing
    or upgrading any package changes it). About a millisecond."""
    parts = [sys.version, sys.prefix]
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as listing:
                # With each entry's time: reinstalling a package at the same
                # version (a project's own library, `pip install ./lib`) rewrites it.
                names = sorted(
                    f"{e.name}:{_installed_time(e)}"
                    for e in listing
                    if e.name.endswith((".dist-info", ".egg-info", ".pth", ".egg-link"))
                )
        except OSError:
            continue
        parts.append(f"{entry}\0" + "\0".join(names))
    return "\n".join(parts)


def _installed_time(entry: os.DirEntry[str]) -> int:
    """When a distribution was installed: its RECORD's time (rewritten by
    every install), else the entry's own."""
    try:
        if entry.name.endswith(".dist-info"):
            return os.stat(os.path.join(entry.path, "RECORD")).st_mtime_ns
        return entry.stat().st_mtime_ns
    except OSError:
        return 0


def _record_digest(distribution: Any) -> str:
    """What a distribution installed, machine-independently: the digest of
    its `RECORD`'s lines that carry a file hash, sorted, less the installer's
    own notes (`INSTALLER`, `REQUESTED`, `direct_url.json`, which names the
    source directory). Two builds of one version (`pip install ./lib` after
    an edit) differ here; one wheel installed on two machines, by pip or uv,
    does not. Empty when there is no RECORD."""
    try:
        text = distribution.read_text("RECORD")
    except Exception:
        text = None
    if not text:
        return ""
    lines = sorted(
        line
        for line in text.splitlines()
        if ",sha256=" in line and not line.split(",", 1)[0].endswith(("/INSTALLER", "/REQUESTED", "/direct_url.json"))
    )
    return _native.value_digest("\n".join(lines)).split("_", 1)[1][:32]


@functools.cache
def _distributions() -> tuple[dict[str, list[str]], dict[str, str]]:
    """Top-level module -> distributions, and distribution -> version.
    Reading them costs 50-200 ms (every distribution's metadata), so they are
    kept in the store directory, keyed by the environment's signature, and a
    fresh process of an unchanged environment reads one small file."""
    import json

    path = _bytecode.analysis_file("distributions", _environment_signature(), "json")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as file:
                known = json.load(file)
            return known["modules"], known["versions"]
        except (OSError, ValueError, KeyError):
            pass
    import importlib.metadata  # 20-50 ms to import: only when the map is not kept

    modules = importlib.metadata.packages_distributions()
    versions: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name and name not in versions:
            # The version and what was installed (`_record_digest`).
            record = _record_digest(distribution)
            versions[name] = f"{distribution.version} {record}" if record else distribution.version
    if path is not None:
        _bytecode.write_atomically(path, json.dumps({"modules": modules, "versions": versions}).encode())
    return modules, versions


@functools.lru_cache(maxsize=1)
def _platform() -> str:
    """The operating system and architecture (as Node's `process:platform`)."""
    return f"{sys.platform} {os.uname().machine if hasattr(os, 'uname') else os.environ.get('PROCESSOR_ARCHITECTURE', '')}"


def package_of(obj: Any) -> tuple[str, str]:
    """``(name, version)`` of the distribution an external object comes from."""
    module_name = obj.__name__ if isinstance(obj, types.ModuleType) else _module_name_of(obj)
    top = module_name.split(".")[0]
    python = "python", "{}.{}".format(*sys.version_info[:2])
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        # The standard library counts by Python's version (no distribution
        # metadata to read), unless a package installed a module of that name.
        file = getattr(sys.modules.get(top), "__file__", None)
        if not file or not _installed_directory(os.path.dirname(file)):
            if top == "platform" or getattr(obj, "__name__", None) == "uname":
                # What machine this is (`platform.system()`, `os.uname()`): a
                # result for Linux is not one for macOS; counts by the platform too.
                return python[0], f"{python[1]} {_platform()}"
            return python
    modules, versions = _distributions()
    for dist in modules.get(top, []):
        if dist in versions:
            return dist, versions[dist]
        import importlib.metadata

        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    # Anything without metadata counts by Python's version.
    return python


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    import ast

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _project_class_of(obj: Any) -> type | None:
    """The class of an instance when the class is the project's own code
    (not a package's, the standard library's or a builtin type)."""
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType)):
        return None
    cls = type(obj)
    if cls.__module__ == "builtins" or is_external(cls):
        return None
    return cls


def _code_held_by(value: Any, budget: int = 1000) -> list[Any]:
    """Functions, classes, modules and the project's classes of instances
    found in a value: inside plain containers and the attributes of the
    project's own instances, up to `budget` items (a large container is not
    walked whole: its value digest covers the code it holds, except for an
    opaque value, which is walked with a larger budget)."""
    found: list[Any] = []
    seen: set[int] = set()
    stack = [value]
    while stack and budget > 0:
        item = stack.pop()
        budget -= 1
        if id(item) in seen:
            continue
        seen.add(id(item))
        if item is not value and isinstance(
            item, (types.FunctionType, type, functools.partial, types.MethodType, types.ModuleType)
        ):
            # A module among them (`PLUGINS = {m.name: import_module(...)}`)
            # counts whole, as a module used as a value does.
            found.append(item)
            continue
        if isinstance(item, dict):
            stack.extend(item.values())
            stack.extend(key for key in item if not isinstance(key, (str, int)))
        elif type(item) in (list, tuple, set, frozenset):
            stack.extend(item)
        else:
            cls = _project_class_of(item)
            if cls is not None:
                found.append(cls)
                attributes = getattr(item, "__dict__", None)
                if type(attributes) is dict:
                    stack.extend(attributes.values())
    return found


def normalised_source(obj: Any) -> str | None:
    """The AST dump of ``obj``'s source without docstrings, or ``None`` when there is no source."""
    import ast
    import inspect
    import textwrap

    try:
        source = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:
        # A lambda inside a larger expression: keep the text of its line(s).
        return source.strip()
    return ast.dump(_strip_memo_decorators(_strip_docstrings(tree)), include_attributes=False)


def _is_memo_decorator(node: ast.expr) -> bool:
    """``@memo``, ``@hitsave.memo``, ``@memo(...)``: options that change where
    results are kept, not what the function computes."""
    import ast

    if isinstance(node, ast.Call):
        node = node.func
    return (isinstance(node, ast.Name) and node.id == "memo") or (isinstance(node, ast.Attribute) and node.attr == "memo")


def _strip_memo_decorators(tree: ast.AST) -> ast.AST:
    import ast

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.decorator_list = [d for d in node.decorator_list if not _is_memo_decorator(d)]
    return tree


def module_name(name: str) -> str:
    """The name a module's functions are known by: a script run as
    ``python app.py`` (``__main__``, or ``__mp_main__`` in a spawned worker)
    by its module path (``app``, ``pkg.app`` under ``python -m``), so results
    and history are shared with ``import app``; ``python -c`` and notebooks
    stay ``__main__``."""
    if name not in ("__main__", "__mp_main__"):
        return name
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    if spec is not None and getattr(spec, "name", None) and spec.name not in ("__main__", "__mp_main__"):
        return spec.name
    file = getattr(module, "__file__", None)
    if not file:
        return name
    return _script_module_name(file, tuple(sys.path))


@functools.lru_cache(maxsize=64)
def _script_module_name(file: str, search_path: tuple[str, ...]) -> str:
    """A script's module path from the first `sys.path` entry holding it
    (kept: every function of a script asks, and resolving paths costs)."""
    path = os.path.splitext(os.path.realpath(file))[0]
    for entry in search_path:
        root = os.path.realpath(entry or ".")
        if not path.startswith(root.rstrip(os.sep) + os.sep):
            continue
        parts = os.path.relpath(path, root).split(os.sep)
        if parts and all(part.isidentifier() for part in parts):
            return ".".join(parts)
    return os.path.basename(path)


_NO_DOCSTRING = ("<lambda>", "<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>", "<module>")


def _code_summary(code: types.CodeType, safe: bool = False) -> list[Any]:
    """What a code object runs: bytecode, names and constants (nested code
    objects likewise), without its docstring. Comments and blank lines leave
    it unchanged; any change to what runs changes it. Constants enter by
    value (never by ``repr``, whose set order differs between processes)."""
    consts = list(code.co_consts)
    if code.co_name not in _NO_DOCSTRING and consts and (consts[0] is None or isinstance(consts[0], str)):
        consts = consts[1:]  # a def's docstring (or the None that stands for none)
    return [
        code.co_code,
        code.co_exceptiontable,
        list(code.co_names),
        list(code.co_varnames),
        list(code.co_freevars),
        [_code_summary(c, safe) if isinstance(c, types.CodeType) else _safe_value(c) if safe else c for c in consts],
    ]



# What analysing a code object finds from the code alone: what it runs (the
# digest of `_code_summary`), whether it reads or writes files
# (`_file_use`), whether it names the local time (`_names_local_time`) and
# the names and imports it reads (`_bytecode.references`). Kept by the
# code's content, the marshalled code object itself (bytecode, constants,
# names, nested code, file name, line numbers): in the process by identity,
# and across processes in the store (`analysis/codes-*.bin`, one file per
# source directory), so a fresh process analyses again only code that
# changed (the functions of a file edited since the last run); what the
# names are bound to is read again every time. Code from anywhere (a file
# saved after import, a notebook cell, a replaced `__code__`) finds the
# facts of exactly that code or none.
_FACT_SUMMARY, _FACT_BARE, _FACT_USE, _FACT_LOCAL_TIME, _FACT_REFERENCES = range(5)
_FACTS_FORMAT = 2
# Entries a directory's file keeps beyond those this process used.
_FACTS_LIMIT = 8192
_FACTS: dict[int, tuple["weakref.ref[types.CodeType]", tuple[Any, ...]]] = {}
# Per source directory (and per source file, the same): (file path or None,
# entries by key, keys used or added).
_FACT_FILES: dict[str, tuple[str | None, dict[str, tuple[Any, ...]], set[str]]] = {}
_FACTS_ADDED: set[str] = set()  # directories whose file has entries to write
# How many code objects of each file this process analysed (found no facts
# for): what the tests and the benchmark count.
analysed_files: dict[str, int] = {}


def _code_facts(code: types.CodeType) -> tuple[Any, ...]:
    """The facts of `code` (see above), computed once per code content."""
    known = _FACTS.get(id(code))
    if known is not None and known[0]() is code:
        return known[1]
    try:
        key: str | None = _native.blob_digest(marshal.dumps(code, 2))[6:38]  # 128 bits of it
    except ValueError:  # a constant marshal cannot write (code built by `code.replace`)
        key = None
    facts = None
    if key is not None:
        kept = _FACT_FILES.get(code.co_filename)
        if kept is None:
            directory = os.path.dirname(code.co_filename)
            kept = _FACT_FILES[code.co_filename] = _FACT_FILES.get(directory) or _load_facts(directory)
            _FACT_FILES[directory] = kept
        facts = kept[1].get(key)
        if facts is None:
            facts = _compute_facts(code)
            kept[1][key] = facts
            _FACTS_ADDED.add(os.path.dirname(code.co_filename))
        kept[2].add(key)
    else:
        facts = _compute_facts(code)
    _FACTS[id(code)] = (weakref.ref(code), facts)
    return facts  # type: ignore[return-value]


def _kept_form(part: Any) -> Any:
    """A part of a reference as facts keep it: tuples, and names interned,
    so a file of them holds each name once and loads in half the time."""
    if type(part) is list:
        return tuple(map(_kept_form, part))
    return sys.intern(part) if type(part) is str else part


def _compute_facts(code: types.CodeType) -> tuple[Any, ...]:
    analysed_files[code.co_filename] = analysed_files.get(code.co_filename, 0) + 1
    try:
        summary = _native.value_digest(_code_summary(code))
    except _native.HitSaveError:
        summary = _native.value_digest(_code_summary(code, safe=True))
    # A function's content with no annotations or defaults (`_function`).
    bare = _native.value_digest(["function", summary, [], None, None])
    references = tuple(tuple(map(_kept_form, reference)) for reference in _bytecode.references(code))
    return (summary, bare, _file_use(code), _names_local_time(code), references)


def _facts_path(directory: str) -> str | None:
    """Where the facts of code from `directory` are kept: the store's
    analysis directory, a file per interpreter build, analysis code and
    source directory (a new HitSave or Python starts afresh)."""
    return _bytecode.analysis_file("codes", [_facts_build(), directory], "bin")


@functools.lru_cache(maxsize=1)
def _facts_build() -> list[Any]:
    parts: list[Any] = [sys.version, sys.implementation.cache_tag, sys.hexversion, _FACTS_FORMAT]
    for module in (sys.modules[__name__], _bytecode, _native):
        try:
            state = os.stat(module.__file__ or "")
            parts.append([state.st_size, state.st_mtime_ns])
        except (OSError, TypeError):
            parts.append(None)
    return parts


def _read_facts(path: str | None) -> dict[str, tuple[Any, ...]]:
    """A facts file's entries: its first line is the digest of the rest, so
    a file cut short or damaged is read as empty (never half-believed)."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as file:
            data = file.read()
        check, _, payload = data.partition(b"\n")
        if check.decode("ascii") != _native.blob_digest(payload):
            return {}
        entries = marshal.loads(payload)
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    return entries if type(entries) is dict else {}


def _load_facts(directory: str) -> tuple[str | None, dict[str, tuple[Any, ...]], set[str]]:
    path = _facts_path(directory)
    return path, _read_facts(path), set()


def save_facts() -> None:
    """Writes the facts added since the last save (after a graph is built):
    merged with what other processes wrote meanwhile; a directory's file
    past `_FACTS_LIMIT` entries keeps only those this process used."""
    while _FACTS_ADDED:
        directory = _FACTS_ADDED.pop()
        path, entries, used = _FACT_FILES[directory]
        if path is None:
            continue
        merged = _read_facts(path)
        merged.update(entries)
        if len(merged) > _FACTS_LIMIT:
            merged = {key: merged[key] for key in used if key in merged}
        try:
            payload = marshal.dumps(merged)
        except ValueError:
            continue
        if not os.path.exists(path):
            _prune_facts(os.path.dirname(path))
        _bytecode.write_atomically(path, _native.blob_digest(payload).encode("ascii") + b"\n" + payload)


# Facts files the analysis directory keeps: a directory per notebook kernel
# (`/tmp/ipykernel_<pid>`) or per old HitSave build would otherwise add files
# for ever; the least recently written go first.
_FACT_FILES_KEPT = 256


def _prune_facts(directory: str) -> None:
    """Before a new facts file is written: removes the oldest ones beyond
    `_FACT_FILES_KEPT` (another process's removal or a read-only store is no error)."""
    try:
        with os.scandir(directory) as listing:
            files = [(entry.stat().st_mtime_ns, entry.path) for entry in listing if entry.name.startswith("codes-")]
    except OSError:
        return
    if len(files) < _FACT_FILES_KEPT:
        return
    files.sort()
    for _, path in files[: len(files) - _FACT_FILES_KEPT + 1]:
        try:
            os.remove(path)
        except OSError:
            pass


def _import_module(name: str, level: int, package: str | None) -> types.ModuleType | None:
    """The module an ``import`` in a function body names, importing it as the
    function itself would (``None`` when it cannot be found now)."""
    import importlib.util

    try:
        if level:
            if not package:
                return None
            name = importlib.util.resolve_name("." * level + name, package)
        return importlib.import_module(name)
    except Exception:  # the body would raise when it runs; nothing to hash now
        return None


def _referenced(code: types.CodeType, namespace: dict[str, Any], references: collections.abc.Sequence[tuple[Any, ...]]) -> list[tuple[str | None, Any, Any, str | None]]:
    """What a code object (and its nested ones) reads from its globals, as
    ``(global name read, the value bound to it, the value used, qualified
    name of a module attribute)``:
    globals, ``module.attr(.attr…)`` chains (data as well as code), and what
    ``import``/``from … import`` statements inside the body bring in."""
    found: list[tuple[str | None, Any, Any, str | None]] = []
    package = namespace.get("__package__") or (namespace.get("__name__", "").rpartition(".")[0] or None)
    environment: Any = _MISSING
    counted: dict[str, list[Any]] | None = None  # collections and numbers read: `_written_only`
    for reference in references:
        if reference[0] == "import":
            found.extend(_imported(reference[1], reference[2], reference[3], package))
            continue
        name, attrs = reference[1], reference[2]
        if name in _WHOLE_NAMESPACE and name not in namespace:
            # `globals()["g"]`, `vars()`, `eval("g(x)")`: any global may be
            # read by a name the bytecode does not hold; all of them count.
            module = sys.modules.get(namespace.get("__name__", ""))
            if module is not None and vars(module) is namespace:
                found.append((None, None, module, None))
            else:
                found.extend((n, v, v, None) for n, v in list(namespace.items()) if not (n.startswith("__") and n.endswith("__")))
            continue
        if name == "__import__" and name not in namespace:
            found.extend(_modules_named_in(code, package, namespace))
            continue
        if name not in namespace:
            injected = _BUILTINS.get(name, _MISSING)
            if injected is _STANDARD_BUILTINS.get(name, _MISSING):
                continue  # Python's own (`range`, `len`): the common case, without a call
            if injected is not _MISSING and _injected_builtin_cached(name, injected):
                # A value a project put into builtins (`builtins.FACTOR = 3`):
                # read like a global, so it counts like one.
                found.append((None, None, injected, f"builtins:{name}"))
            continue  # a standard builtin, or defined later or never: nothing to hash now
        value = bound = namespace[name]
        if type(bound) in _COUNTABLE:
            if counted is None:
                counted = {}
            counted.setdefault(name, []).append(attrs)
        # Follow module.attr(.attr…) reads.
        qualified = None
        for attr in attrs:
            if not isinstance(value, types.ModuleType) or not hasattr(value, attr):
                break
            qualified = f"{value.__name__}:{attr}"
            value = getattr(value, attr)
        if value is _ENVIRON or value is _GETENV or value is _GETENVB:
            # The environment counts by value (`os.getenv`, a package's
            # function, would otherwise count only by Python's version): the
            # variables the code names, else all of it.
            if environment is _MISSING:
                environment = _environment_names(code, namespace)
            if environment is not None:
                found.append((name, bound, {key: os.environ.get(key) for key in environment}, "env:" + ",".join(environment)))
                continue
            if value is not _ENVIRON:
                found.append((None, None, _ENVIRON, "os:environ"))  # and `getenv` itself, below
        found.append((name, bound, value, qualified))
        if id(value) in _importer_ids():
            found.extend(_modules_named_in(code, package, namespace))
    if counted is not None:
        written = _written_only(code, counted, namespace)
        if written:
            # Only added to or bumped: no input of the code.
            found = [entry for entry in found if entry[0] not in written]
    return found


def _instructions(code: types.CodeType) -> list[Any]:
    """One code object's instructions through :mod:`dis`, without the
    padding and markers that no rule reads (for the rare rules that look at
    instruction order: importers, environment reads)."""
    import dis

    return [i for i in dis.get_instructions(code) if i.opname not in ("CACHE", "EXTENDED_ARG", "NOP", "PUSH_NULL")]


def _environment_names(code: types.CodeType, namespace: dict[str, Any]) -> list[str] | None:
    """The environment variables `code` (with its nested code) reads, when
    every read names one by a constant (`os.environ["K"]`,
    `os.environ.get("K")`, `os.getenv("K")`, `environ["K"]`, a global bound
    to one of them: `env = os.getenv`), sorted; else ``None`` (`"K" in
    os.environ`, `os.environ[name]`, the mapping passed on, a name this
    cannot follow: all of it counts). Read through :mod:`dis`: only code
    that reaches the environment."""
    mappings = {"environ"}
    functions = {"getenv", "getenvb"}
    for name, value in list(namespace.items()):
        if value is _ENVIRON:
            mappings.add(name)
        elif value is _GETENV or value is _GETENVB:
            functions.add(name)
    names: set[str] = set()
    for nested in _bytecode.nested_codes(code):
        instructions = _instructions(nested)
        for index, instruction in enumerate(instructions):
            if not instruction.opname.startswith("LOAD_") or instruction.argval not in mappings | functions:
                continue
            after = instructions[index + 1 : index + 3]
            if instruction.argval in mappings and after and after[0].opname in ("LOAD_ATTR", "LOAD_METHOD") and after[0].argval == "get":
                after = after[1:]
            if not after or after[0].opname != "LOAD_CONST" or not isinstance(after[0].argval, str):
                return None
            names.add(after[0].argval)
    # Every read found, or the environment is reached some other way (an
    # alias the bytecode loads under another name): all of it counts.
    return sorted(names) if names else None


# A string constant that may name a file: no whitespace, a directory part
# or an extension (`data/train.csv`, `config.json`, `./weights`).
_PATH_LIKE = re.compile(r"[^\s\x00]{1,255}")
_EXTENSION = re.compile(r"\.[A-Za-z0-9_]{1,10}$")


def _files_named_in(
    code: types.CodeType,
    namespace: dict[str, Any],
    codes: list[types.CodeType] | None = None,
    packages: list[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    """The files a code object (and its nested ones) names by a string
    constant, as ``(node name, path)``: relative to the working directory
    (how ``open("data.csv")`` reads it) and to the module's directory
    (``Path(__file__).parent / "data.csv"``), absolute as it is. Only files
    that exist now; a name that merely looks like a file's adds a node, never
    a wrong hit. For code that reads files (:func:`_file_use`, the
    caller's to ask; `codes`, its nested code objects, and `packages`,
    :func:`_packages_named` of them, when the caller has them already)."""
    found: list[tuple[str, str]] = []
    codes = _bytecode.nested_codes(code) if codes is None else codes
    packages = _packages_named(codes, namespace) if packages is None else packages
    # A command line (`os.system("python tools/fit.py")`): each word may name the program it runs.
    runs = any(not _RUNNERS.isdisjoint(nested.co_names) for nested in codes)
    for nested in codes:
        for constant in nested.co_consts:
            if type(constant) is str:
                found.extend(_files_named(constant, namespace, packages))
                if runs and any(character.isspace() for character in constant):
                    for word in constant.split():
                        found.extend(_files_named(word, namespace, packages))
    return found


def _packages_named(codes: list[types.CodeType], namespace: dict[str, Any]) -> list[tuple[str, str]]:
    """The project packages code names, as ``(name, directory)``: by a
    string constant that is an imported package's name
    (``importlib.resources.files("pkg")``, ``pkgutil.get_data("pkg",
    "x.json")``) or by a global that holds the package (``Path(pkg.__file__).parent``).
    Files under them that its constants name are data it reads."""
    found: list[tuple[str, str]] = []
    for nested in codes:
        for constant in nested.co_consts:
            if type(constant) is str and _MODULE_NAME.fullmatch(constant):
                directory = _project_package_directory(constant, tuple(sys.path))
                if directory is not None and (constant, directory) not in found:
                    found.append((constant, directory))
        for name in nested.co_names:
            module = namespace.get(name)
            if not isinstance(module, types.ModuleType):
                continue
            file = getattr(module, "__file__", None)
            if not isinstance(file, str) or _module_is_external(module.__name__, file):
                continue
            entry = (module.__name__, os.path.dirname(os.path.abspath(file)))
            if entry not in found:
                found.append(entry)
    return found


_MODULE_NAME = re.compile(r"[A-Za-z_]\w{0,99}(?:\.[A-Za-z_]\w{0,99}){0,9}")


@functools.lru_cache(maxsize=4096)
def _project_package_directory(name: str, path: tuple[str, ...]) -> str | None:
    """The directory of the project package (or namespace package) `name`
    would import from, found on `path` (``sys.path``) the way the import
    system searches it, without importing it: whether it is imported yet
    (``importlib.resources.files("pkg")`` imports it when it runs) must not
    change the graph. Installed and standard-library directories are not
    the project's."""
    for entry in path:
        directory = os.path.abspath(entry or os.curdir)
        candidate = os.path.join(directory, *name.split("."))
        if os.path.isdir(candidate):
            return None if _directory_is_external(directory) else candidate
        if os.path.isfile(candidate + ".py"):
            return None  # a module, not a package: it has no directory of its own
    return None


# Calls that run a program in another process (`subprocess.run([sys.executable,
# "script.py"])`, `os.system(...)`, `runpy.run_path`): the files their
# constants name are code the call runs, counted by contents like data.
_RUNNERS = frozenset(
    {"run", "Popen", "call", "check_call", "check_output", "getoutput", "getstatusoutput", "system", "popen",
     "run_path", "execv", "execve", "execvp", "execl", "execlp", "spawnv", "spawnl", "spawnvp", "spawnlp",
     "create_subprocess_exec", "create_subprocess_shell", "startfile"}
)
# Names of calls that read a file, and of calls (or `open` modes) that write one.
_FILE_READERS = frozenset(
    {"open", "get_data", "read_csv", "read_table", "read_parquet", "read_json", "read_excel", "read_feather", "read_pickle",
     "read_text", "read_bytes", "load", "loadtxt", "genfromtxt", "fromfile", "imread", "safe_load", "read_file",
     # Databases, archives and array files opened by path.
     "connect", "ZipFile", "TarFile", "File", "Dataset", "memmap", "open_dataset", "open_mfdataset",
     "open_zarr", "open_file", "imopen"}
)


def _names_reader(names: tuple[str, ...]) -> bool:
    """Whether any of a code object's names is a file-reading call's, or a
    call's that runs a program (its script is read by the program)."""
    if not (_FILE_READERS.isdisjoint(names) and _RUNNERS.isdisjoint(names) and _LISTERS.isdisjoint(names) and _STATS.isdisjoint(names)):
        return True
    # One pass over all the names (a regex per name costs more than the rest of the rule).
    text = " ".join(names).lower() + " "
    return any(word in text for word in _READER_WORDS)


# Words in a name that say it reads a file, wherever they stand and in any
# case (`read_csv`, `np.load`, `open_dataset`, `FileSystemLoader`,
# `xlsx.readFile`, `cv2.VideoCapture`, `AutoModel.from_pretrained("./model")`,
# `ParquetFile`, `ElementTree.parse("data.xml")`); `"file "` is a name ending in it.
_READER_WORDS = ("load", "read", "open", "parse", "file ", "pretrained", "capture")


# (Names that are as often something else, `str.replace`, `df.rename`,
# `list.remove`, `f.write`, are not listed: leaving a reading function out
# of the rule would let it hit after its input changed; a file opened for
# writing is seen by its mode.)
_FILE_WRITERS = frozenset(
    {"write_text", "write_bytes", "to_csv", "to_parquet", "to_json", "to_excel", "to_feather", "to_pickle",
     "save", "savez", "savez_compressed", "savetxt", "savefig", "dump", "imwrite", "tofile", "mkdir",
     "makedirs", "touch", "unlink", "copyfile", "copytree", "move", "rmtree"}
)
# Calls that list a directory (the files they find are read by name unseen).
_LISTERS = frozenset({"iterdir", "glob", "iglob", "rglob", "listdir", "scandir", "walk", "fwalk", "contents"})
# Calls that ask after a path's existence, kind or size (`os.path.exists(p)`,
# `Path(p).is_file()`, `os.path.getsize(p)`): like readers, the path an
# argument names then counts by contents (`files::argument_files`).
_STATS = frozenset(
    {"exists", "lexists", "isfile", "isdir", "islink", "getsize", "stat", "lstat", "is_file", "is_dir",
     "is_symlink", "access", "samefile"}
)
_WRITE_MODE = re.compile(r"[rwxab]\+?[bt]?\+?")


def _file_use(code: types.CodeType) -> str:
    """``"reads"`` when a code object (with its nested ones) calls something
    that reads a file and nothing that writes one: the files its constants
    name are then inputs. ``"writes"`` when it writes files, whatever it
    reads: left out (the file it writes would change its own fingerprint, so
    it would never hit again; its inputs are the user's to pass as `File`,
    docs/python.md). Else ``"none"``."""
    reads = False
    if not _names_reader(code.co_names) and not any(type(constant) is types.CodeType for constant in code.co_consts):
        if _FILE_WRITERS.isdisjoint(code.co_names):
            return "none"  # the common case, cheaply: no reader, no writer, nothing nested
    for nested in _bytecode.nested_codes(code):
        names = nested.co_names
        if not reads and _names_reader(names):
            reads = True
        if not _FILE_WRITERS.isdisjoint(names):
            return "writes"
        if "open" in names:
            # `open(path, "a")`: a write mode among the constants (a column
            # named "a" as well: more is left out, never a write counted).
            for constant in nested.co_consts:
                if type(constant) is str and constant[:1] in ("w", "x", "a") and _WRITE_MODE.fullmatch(constant):
                    return "writes"
    return "reads" if reads else "none"


def _places(text: str, namespace: dict[str, Any], packages: collections.abc.Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """Where a path may point, as ``(label, path)``: an absolute one as it
    is; a relative one from the working directory (how ``open("data.csv")``
    reads it), from the module's directory (``Path(__file__).parent /
    "data.csv"``, labelled by the module) and from the directory of each
    project package in `packages` (:func:`_packages_named`, labelled
    ``package:name/text``)."""
    if os.path.isabs(text):
        return [(text, text)]
    places = [(text, os.path.abspath(text))]
    module_file = namespace.get("__file__")
    if isinstance(module_file, str):
        beside = os.path.join(os.path.dirname(os.path.abspath(module_file)), text)
        places.append((f"{namespace.get('__name__', '?')}/{text}", beside))
    places.extend((f"package:{name}/{text}", os.path.join(directory, text)) for name, directory in packages)
    return places


def _files_named(text: str, namespace: dict[str, Any], packages: collections.abc.Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """The existing files a string may name (see :func:`_files_named_in`)."""
    if (
        not ("/" in text or "." in text)
        or not _PATH_LIKE.fullmatch(text)
        or ("/" not in text and not _EXTENSION.search(text))
    ):
        return []
    return [(f"file:{label}", path) for label, path in _places(text, namespace, packages) if os.path.isfile(path)]


def _directories_named(text: str, namespace: dict[str, Any]) -> list[str]:
    """The existing directories a path names (:func:`_places`). Never the
    root, the working directory itself (`"."`) or its parent: a
    `"/".join(...)` or `text.split(".")` is not a read of every file there."""
    if not text or not _PATH_LIKE.fullmatch(text) or not text.strip("/."):
        return []
    found: list[str] = []
    for _, path in _places(text, namespace):
        path = os.path.abspath(path)
        if os.path.isdir(path) and path not in found:
            found.append(path)
    return found


# Glob metacharacters (`data/*.csv`, `runs/**/metrics.json`, `part-[0-9].txt`).
_GLOB = re.compile(r"[*?\[]")

_MISSING = object()
_GETENV = os.getenv
_ENVIRON = os.environ
_GETENVB = getattr(os, "getenvb", _MISSING)
# Builtins that read a module's globals by a name computed at run time.
_WHOLE_NAMESPACE = frozenset({"globals", "vars", "eval", "exec"})

# Methods that add to (or clear) a list, set, dict or deque and return None,
# so a call tells the code nothing about what the collection holds.
_ADDERS = frozenset({"append", "appendleft", "add", "extend", "extendleft", "update", "insert", "clear", "discard"})
_COLLECTIONS = (list, set, dict, collections.deque)
_COUNTABLE = frozenset({list, set, dict, collections.deque, int, float})


def _written_only(code: types.CodeType, uses: dict[str, list[Any]], namespace: dict[str, Any]) -> set[str]:
    """Of the collections and numbers `code` (with its nested code) reads
    (`uses`: name -> the attribute chains read after it), those it only adds
    to or bumps, never reads otherwise: a collection it only calls `append`/
    `add`/`update`/… on (`CALLS.append(x)`), a counter it only bumps
    (`global RUNS; RUNS += 1`). What they hold is no input of the code, so a
    memoized function counting its runs keeps hitting in the process (Node's
    rule)."""
    written = set()
    bumped: set[str] | None = None
    for name, chains in uses.items():
        value = namespace[name]
        if isinstance(value, _COLLECTIONS):
            if all(len(chain) == 1 and chain[0] in _ADDERS for chain in chains):
                written.add(name)
        elif all(not chain for chain in chains):
            if bumped is None:
                bumped = _bumped_globals(code) if _stores_globals(code) else set()
            if name in bumped:
                written.add(name)
    return written


def _bumped_globals(code: types.CodeType) -> set[str]:
    """The globals every load of which (in `code` and its nested code) is
    `NAME += constant or local` stored straight back: counters (read with
    `dis`, only for code `_stores_globals` says may store one)."""
    import dis

    loads: dict[str, int] = {}
    bumps: dict[str, int] = {}
    for nested in _bytecode.nested_codes(code):
        instructions = [i for i in dis.get_instructions(nested) if i.opname not in ("CACHE", "EXTENDED_ARG")]
        for at, instruction in enumerate(instructions):
            if instruction.opname not in ("LOAD_GLOBAL", "LOAD_NAME"):
                continue
            loads[instruction.argval] = loads.get(instruction.argval, 0) + 1
            after = instructions[at + 1 : at + 4]
            if (
                len(after) == 3
                and after[0].opname in ("LOAD_CONST", "LOAD_FAST", "LOAD_SMALL_INT", "LOAD_FAST_BORROW")
                and after[1].opname in ("BINARY_OP", "INPLACE_ADD", "INPLACE_SUBTRACT")
                and (after[1].opname != "BINARY_OP" or "=" in (after[1].argrepr or ""))
                and after[2].opname in ("STORE_GLOBAL", "STORE_NAME")
                and after[2].argval == instruction.argval
            ):
                bumps[instruction.argval] = bumps.get(instruction.argval, 0) + 1
    return {name for name, count in bumps.items() if loads.get(name) == count}


@functools.cache
def _store_global_byte() -> bytes:
    import opcode

    return bytes([opcode.opmap["STORE_GLOBAL"]])


def _stores_globals(code: types.CodeType) -> bool:
    """Whether `code` or its nested code may store a global (its opcode's
    byte appears: a byte test, rarely true, confirmed by `_bumped_globals`)."""
    byte = _store_global_byte()
    if byte in code.co_code:
        return True
    return any(isinstance(const, types.CodeType) and _stores_globals(const) for const in code.co_consts)


@functools.lru_cache(maxsize=1)
def _importer_ids() -> frozenset[int]:
    """The identities of `importlib.import_module` and friends (importlib is
    loaded at interpreter start; the functions live as long as it does)."""
    import importlib

    return frozenset(map(id, (importlib.import_module, importlib.__import__, builtins.__import__)))


def _modules_named_in(code: types.CodeType, package: str | None, namespace: dict[str, Any]) -> list[tuple[str | None, Any, Any, str | None]]:
    """The project modules a function that calls ``import_module``/``__import__``
    may load: every string constant of its code that names one (imported as
    the function would), counted whole. A module name computed at run time
    cannot be seen: ``code_unavailable`` (docs/python.md)."""
    computed = _computed_import(code, namespace)
    if computed is not None:
        where, line = computed
        function = f"{namespace.get('__name__', '?')}:{getattr(code, 'co_qualname', code.co_name)}"
        raise _native.code_unavailable_error(
            f"{function} calls {where} with a module name computed at run time (line {line}), so which module's "
            "code it runs cannot be seen; import the modules it may load at module level and select among them "
            '(`PLUGINS = {"csv": plugins.csv}`), or pass the module name as a string constant'
        )
    found: list[tuple[str | None, Any, Any, str | None]] = []
    for nested in _bytecode.nested_codes(code):
        for constant in nested.co_consts:
            if not isinstance(constant, str) or not constant or len(constant) > 200:
                continue
            dotted = constant.lstrip(".")
            if not all(part.isidentifier() for part in dotted.split(".")):
                continue
            level = len(constant) - len(dotted)
            module = sys.modules.get(constant) if not level else None
            if module is None:
                try:
                    import importlib.util

                    absolute = importlib.util.resolve_name(constant, package) if level else constant
                    spec = importlib.util.find_spec(absolute)
                except (ImportError, ValueError, AttributeError):
                    continue
                if spec is None or not spec.origin or _module_is_external(absolute, spec.origin):
                    continue
                module = _import_module(dotted, level, package)
            if module is not None and not is_external(module):
                found.append((None, None, module, None))
    return found


# Instructions that end a call's argument list (3.11: PRECALL, CALL; 3.12+: CALL, CALL_KW).
_CALLS = ("PRECALL", "CALL", "CALL_KW", "KW_NAMES", "CALL_FUNCTION", "CALL_METHOD")
_SIMPLE_LOADS = ("LOAD_CONST", "LOAD_FAST", "LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_SMALL_INT", "LOAD_FAST_BORROW")


def _computed_import(code: types.CodeType, namespace: dict[str, Any]) -> tuple[str, int | None] | None:
    """Where `code` (or code nested in it) uses an importer other than by
    calling it on a string constant (``import_module(f"plugins.{kind}")``,
    ``__import__(name)``, the importer passed as a value): ``(its name, the
    line)``, else ``None``. Only functions that reach an importer are read
    this way, through :mod:`dis`."""
    importers = {"import_module", "__import__"}
    importers.update(n for n, v in namespace.items() if id(v) in _importer_ids() and isinstance(n, str))
    for nested in _bytecode.nested_codes(code):
        instructions = _instructions(nested)
        for index, instruction in enumerate(instructions):
            if instruction.argval not in importers or not instruction.opname.startswith("LOAD_"):
                continue
            after = instructions[index + 1 : index + 5]
            if after and after[0].opname in ("LOAD_ATTR", "LOAD_METHOD"):
                continue  # `importlib.__import__.x`: not a call of the importer itself
            constant = bool(after) and after[0].opname == "LOAD_CONST" and isinstance(after[0].argval, str)
            if constant:
                # The name, then the call; or a second argument (a package, a
                # plain name or constant) and then the call.
                rest = after[1:]
                if rest and rest[0].opname in _SIMPLE_LOADS:
                    rest = rest[1:]
                    while rest and rest[0].opname in ("LOAD_ATTR", "LOAD_METHOD"):
                        rest = rest[1:]
                constant = bool(rest) and rest[0].opname.startswith(_CALLS)
            if not constant:
                line = instruction.positions.lineno if instruction.positions else None
                return str(instruction.argval), line
    return None


_INJECTED: dict[tuple[str, int], tuple[Any, bool]] = {}


def _injected_builtin_cached(name: str, value: Any) -> bool:
    """:func:`_injected_builtin`, remembered per name and value (the value
    is kept with the answer, so its identity cannot be reused meanwhile)."""
    known = _INJECTED.get((name, id(value)))
    if known is not None and known[0] is value:
        return known[1]
    answer = _injected_builtin(name, value)
    if len(_INJECTED) < 4096:
        _INJECTED[(name, id(value))] = (value, answer)
    return answer


_BUILTINS = vars(builtins)


def _injected_builtin(name: str, value: Any) -> bool:
    """Whether a name in :mod:`builtins` was put there by a program rather
    than by Python (its functions, types and exceptions, ``site``'s helpers)."""
    if name.startswith("__") and name.endswith("__"):
        return False
    if isinstance(value, (type, types.BuiltinFunctionType)) and getattr(value, "__module__", None) == "builtins":
        return False
    return type(value).__module__ != "_sitebuiltins" and name not in ("None", "True", "False", "Ellipsis", "NotImplemented")


# Python's own builtins, as they were when this module was imported (what a
# program put there before is left out by `_injected_builtin`); one bound to
# the same object still is Python's.
_STANDARD_BUILTINS = {name: value for name, value in _BUILTINS.items() if not _injected_builtin(name, value)}


def _imported(dotted: str, level: Any, names: list[str], package: str | None) -> list[tuple[str | None, Any, Any, str | None]]:
    """What one ``import`` in a body brings in: the names a
    ``from m import a, b`` takes, or, for ``import m`` (used as ``m.x``
    later, which bytecode does not tie to the import), everything module
    ``m`` defines: more than the body may use, never less."""
    level = level if isinstance(level, int) else 0
    module = _import_module(dotted, level, package)
    if module is None:
        return []
    if names:
        out = []
        for attr in names:
            if hasattr(module, attr):
                out.append((None, None, getattr(module, attr), f"{module.__name__}:{attr}"))
            else:  # a submodule imported by name
                sub = _import_module(f"{module.__name__}.{attr}", 0, None)
                if sub is not None:
                    out.append((None, None, sub, None))
        return out
    if is_external(module):
        return [(None, None, module, None)]
    if "." in dotted and not level:
        # `import a.b` binds `a`; the code reads `a.b.x`: the leaf module is what it uses.
        module = sys.modules.get(dotted, module)
    return [(None, None, module, None)] + [
        (None, None, value, f"{module.__name__}:{attr}")
        for attr, value in list(vars(module).items())
        if not (attr.startswith("__") and attr.endswith("__"))
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", module.__name__) == module.__name__
    ]


_SAME_OBJECT = object()
_IDENTITY_ONLY = frozenset({types.FunctionType, type, types.ModuleType, types.BuiltinFunctionType})
_CODE_TYPES = frozenset({types.FunctionType, type, types.ModuleType})
_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_PLAIN_CONTAINERS = (dict, list, set, tuple, frozenset)
# Arrays up to this size are compared byte for byte at every call; larger
# ones only by identity (a copy per call would cost more than a hit).
_ARRAY_WATCH_BYTES = 64 << 10
# Larger arrays a graph reads are digested again before every call up to
# this many bytes in all (about 2 ms at BLAKE3's speed here); beyond it,
# before a miss computes (`Watched.deep`).
_ARRAY_HASH_BYTES = 8 << 20


def _plain(value: Any) -> bool:
    """Small plain data: scalars and plain containers of them, up to 1000 items."""
    budget = [1000]

    def plain(item: Any) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        if isinstance(item, _PLAIN_SCALARS):
            return type(item) in _PLAIN_SCALARS
        if type(item) in _PLAIN_CONTAINERS:
            items = [*item.keys(), *item.values()] if isinstance(item, dict) else list(item)
            return all(plain(member) for member in items)
        return False

    try:
        return plain(value)
    except RecursionError:
        return False


def _copy_if_stable(value: Any) -> Any:
    """A deep copy of small plain data that equals the original, else
    `_SAME_OBJECT` (a value not equal to its own copy, a NaN inside, could
    never be found unchanged)."""
    import copy

    try:
        snapshot = copy.deepcopy(value)
        if snapshot == value:
            return snapshot
    except RecursionError:
        pass
    return _SAME_OBJECT


def _snapshot(value: Any) -> Any:
    """What a later call compares a module-level value (or closure cell) with,
    to notice it changed in place: a deep copy of small plain data (compared
    with ``==``), else only the object's identity (a rebinding)."""
    if type(value) in _PLAIN_CONTAINERS and _plain(value):
        return _copy_if_stable(value)
    return _SAME_OBJECT


def _array_state(array: Any) -> tuple[Any, ...]:
    return (array.dtype.str, array.shape, array.tobytes())


def _attributes(obj: Any) -> Any:
    return obj.__dict__


def _decimal_settings(module: Any) -> list[Any]:
    """The current `decimal` context's settings (not its flags, which are results)."""
    context = module.getcontext()
    traps = sorted(trap.__name__ for trap, on in context.traps.items() if on)
    return [context.prec, context.rounding, context.Emin, context.Emax, context.capitals, context.clamp, traps]


def _setting_value(value: Any) -> Any:
    """A setting as data: a function or other object (a print formatter) by
    its qualified name, never by its address."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return sorted((str(key), _setting_value(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_setting_value(item) for item in value]
    return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__qualname__)}"


def _numpy_settings(module: Any) -> list[Any]:
    """numpy's print options (`str(array)`, `repr`) and floating-point
    error handling (`np.seterr(all="raise")` turns a result into an error)."""
    return [_setting_value(module.get_printoptions()), _setting_value(module.geterr())]


def _pandas_settings(module: Any) -> Any:
    """pandas' options (`pd.set_option("mode.copy_on_write", True)`,
    `display.precision` for `to_string()`): the live registry, compared with
    a copy of it (about a microsecond)."""
    return module._config.config._global_config


def _sklearn_settings(module: Any) -> Any:
    """scikit-learn's configuration (`set_config(transform_output="pandas")`
    makes transformers return DataFrames)."""
    return module.get_config()


# Packages whose process-wide settings count where a graph uses them:
# top-level module name -> (the module holding them, a reader of their values).
_PACKAGE_SETTINGS: dict[str, tuple[str, Any]] = {
    "decimal": ("decimal", _decimal_settings),
    "_decimal": ("decimal", _decimal_settings),
    "_pydecimal": ("decimal", _decimal_settings),
    "numpy": ("numpy", _numpy_settings),
    "pandas": ("pandas", _pandas_settings),
    "sklearn": ("sklearn", _sklearn_settings),
}


# Containers and instances too large for a copy are compared one level deep,
# by the identity of their items, up to this many items.
_SHALLOW_ITEMS = 100_000


class _Same:
    """Items compared as a tuple compares them, in C: each by identity first,
    then by equality (an item replaced by an equal one is no change); what a
    large container or an instance held, kept alive."""

    __slots__ = ("keys", "items")

    def __init__(self, keys: Any, items: tuple[Any, ...]) -> None:
        self.keys = keys
        self.items = items

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and self.keys == other.keys and self.items == other.items

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]


def _shallow(value: Any) -> _Same:
    """A large list, tuple, dict or set, or an instance's attributes, by the
    identity of what it holds (`CONFIG["rows"] = …`, `model.weight = 3`)."""
    if isinstance(value, dict):
        return _Same(tuple(value), tuple(value.values()))
    if isinstance(value, (list, tuple)):
        return _Same(len(value), tuple(value))
    if isinstance(value, (set, frozenset)):
        return _Same(len(value), tuple(sorted(value, key=id)))
    return _shallow(value.__dict__)


def _is_random_generator(value: Any) -> bool:
    """Whether `value` is a random number generator whose draws follow from
    a state it holds: `random.Random` (the `random` module's functions are
    bound to one), numpy's `RandomState` (`np.random.rand` and the other
    legacy functions are bound to one), `Generator` and bit generators."""
    kind = type(value)
    random = sys.modules.get("random")  # not imported: no value is one of its generators
    if random is not None and isinstance(value, random.Random):
        return kind is not random.SystemRandom
    return kind.__module__.startswith("numpy.random") and (
        hasattr(value, "bit_generator") or hasattr(value, "_bit_generator") or hasattr(value, "random_raw")
    )


def _comparable(state: Any) -> Any:
    """A generator's state with its arrays as bytes (comparable with `==`)."""
    if isinstance(state, dict):
        return tuple((key, _comparable(item)) for key, item in state.items())
    if hasattr(state, "tobytes") and hasattr(state, "dtype"):
        return (state.dtype.str, state.tobytes())
    return state


def _random_state(value: Any) -> Any:
    """What a generator's next draws follow from: drawing a number changes it,
    so a call after a draw, or after `seed()`, sees another state."""
    random = sys.modules.get("random")
    if random is not None and isinstance(value, random.Random):
        return value.getstate()
    get_state = getattr(value, "get_state", None)
    if get_state is not None and hasattr(value, "_bit_generator"):
        return _comparable(get_state(legacy=False))  # RandomState: its cached Gaussian too
    bits = getattr(value, "bit_generator", value)
    return _comparable(bits.state)


def _is_builtin_iterator(value: Any) -> bool:
    """A generator, or an iterator of the standard library (`iter(list)`,
    `itertools.count()`, `map(...)`): reading it moves it. Files and
    packages' cursors are iterators too, but left out (their state is not
    what their reads return)."""
    kind = type(value)
    if isinstance(value, (types.GeneratorType, types.AsyncGeneratorType)):
        return True
    return kind.__module__ in ("builtins", "itertools", "collections") and hasattr(kind, "__next__")


def _pandas_bytes(value: Any) -> int | None:
    """A pandas DataFrame's, Series' or Index's size in bytes (its values
    and index, without what object columns point to), else None."""
    module = type(value).__module__
    if not module.startswith("pandas"):
        return None
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
        return None
    try:
        used = value.memory_usage(deep=False)
        return int(used.sum()) if hasattr(used, "sum") else int(used)
    except Exception:
        return None


def _array_bytes(value: Any) -> int | None:
    """A numpy array's size in bytes (of plain data), else None."""
    kind = type(value)
    if kind.__module__ == "numpy" and kind.__name__ == "ndarray":
        try:
            return None if value.dtype.hasobject else int(value.nbytes)
        except Exception:
            return None
    return None


# Names whose answer depends on the local time zone or locale
# (`datetime.fromtimestamp(ts)`, `d.astimezone()`, `time.localtime()`,
# `d.strftime("%A")`, `locale.format_string(...)`), called on a value of any
# origin (a datetime passed as an argument too).
_LOCAL_TIME_NAMES = frozenset(
    {
        "fromtimestamp", "astimezone", "timestamp", "localtime", "mktime", "ctime", "asctime", "strftime",
        "strptime", "now", "today", "tzname", "tzset", "format_string", "currency", "strcoll", "strxfrm",
        "localeconv", "atof", "atoi", "getlocale", "nl_langinfo",
    }
)  # fmt: skip


def _names_local_time(code: types.CodeType) -> bool:
    """Whether `code` (or code nested in it) names something of :data:`_LOCAL_TIME_NAMES`."""
    return any(not _LOCAL_TIME_NAMES.isdisjoint(nested.co_names) for nested in _bytecode.nested_codes(code))


# The key of the local time zone's and locale's probe in `Watched.probes`.
_LOCAL_TIME = object()


def _local_time(_: Any = None) -> list[Any]:
    """The local time zone and locale as the C library applies them now:
    `TZ`, what `time` says of the zone, and the current locale (C unless the
    program called `locale.setlocale`). Read before each call of a function
    using them (`os.environ["TZ"] = "UTC"` then `time.tzset()` is seen)."""
    import _locale

    try:
        current = _locale.setlocale(_locale.LC_ALL, None)
    except Exception:
        current = None
    return [os.environ.get("TZ"), time.tzname, time.timezone, time.altzone, time.daylight, current]


def _sqlite_files(value: Any) -> list[str]:
    """The files of an SQLite database a value holds open: a
    `sqlite3.Connection` (its main database, from `PRAGMA database_list`) or
    an SQLAlchemy engine whose URL is `sqlite:///…`; with the write-ahead log
    beside it when there is one. Empty for anything else (a server's
    database cannot be counted: docs/python.md)."""
    kind = type(value)
    path = None
    if kind.__module__ == "sqlite3" and kind.__name__ == "Connection":
        try:
            for _, name, file in value.execute("PRAGMA database_list").fetchall():
                if name == "main" and file:
                    path = file
        except Exception:
            return []
    else:
        url = getattr(value, "url", None)
        driver = getattr(url, "drivername", None)
        database = getattr(url, "database", None)
        if isinstance(driver, str) and driver.startswith("sqlite") and isinstance(database, str) and database:
            path = os.path.abspath(database)
    if not path or not os.path.isfile(path):
        return []
    return [file for file in (path, path + "-wal") if os.path.isfile(file)]


_NO_FORM: Any = object()


def _builtin_form(value: Any) -> Any:
    """What a mutable container that is not a plain one holds, as plain data
    a copy of which the checks compare (`HISTORY.append(x)` on a `deque`, an
    `array.array` or `bytearray` extended, `COUNTS["a"] += 1` on a `Counter`,
    a `defaultdict`, an `OrderedDict` or the project's own dict subclass, the
    dict behind a `MappingProxyType`); `_NO_FORM` for anything else."""
    if isinstance(value, collections.deque):
        return (value.maxlen, list(value))
    if isinstance(value, array.array):
        return (value.typecode, value.tobytes())
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, (dict, types.MappingProxyType)):
        return list(value.items())
    if isinstance(value, (list, set, frozenset, tuple)):
        return list(value)
    return _NO_FORM


def _slots_form(value: Any) -> Any:
    """What an instance keeps in `__slots__` (`class P: __slots__ = ("k",)`),
    slot by slot through its class's bases (an empty slot as `_MISSING`'s
    stand-in), with its `__dict__` when it has one too; `_NO_FORM` for an
    instance without slots."""
    slots: list[str] = []
    for klass in type(value).__mro__:
        names = klass.__dict__.get("__slots__", ())
        slots.extend([names] if isinstance(names, str) else names)
    slots = [name for name in slots if name not in ("__dict__", "__weakref__")]
    if not slots:
        return _NO_FORM
    form: list[Any] = [(name, getattr(value, name, "<empty slot>")) for name in slots]
    attributes = getattr(value, "__dict__", None)
    if type(attributes) is dict:
        form.append(("__dict__", attributes))
    return form


def _watched_form(value: Any) -> tuple[Any, Any] | None:
    """`(reader, form)` when `_builtin_form` (or, for an instance,
    `_slots_form`) gives small plain data for `value`, a copy of which the
    checks before each call compare; else None."""
    if type(value) in _PLAIN_CONTAINERS:
        return None  # compared as themselves (`_snapshot`)
    try:
        reader, form = _builtin_form, _builtin_form(value)
        if form is _NO_FORM and not isinstance(value, type):
            reader, form = _slots_form, _slots_form(value)
    except Exception:
        return None
    return (reader, form) if form is not _NO_FORM and _plain(form) else None


def _fully_watched(value: Any) -> bool:
    """Whether the checks before each call see every change of `value`:
    immutable scalars, small plain data (compared with a deep copy), small
    numpy arrays (by their bytes)."""
    kind = type(value)
    if kind in _PLAIN_SCALARS or isinstance(value, (type, types.FunctionType, types.ModuleType)):
        return True
    if kind in _PLAIN_CONTAINERS:
        return _plain(value)
    nbytes = _array_bytes(value)
    if nbytes is not None:
        return nbytes <= _ARRAY_WATCH_BYTES
    if _watched_form(value) is not None:
        return True  # a deque, a Counter, …: compared with a copy of what it holds
    attributes = getattr(value, "__dict__", None)
    if type(attributes) is dict and _plain(attributes) and not hasattr(kind, "__slots__"):
        return True  # an instance of small plain data: compared with a copy of its attributes
    return _is_random_generator(value) or _is_builtin_iterator(value)


def _readable_state(value: Any) -> str | None:
    """The digest of what an object pickle cannot save holds that can be
    read: what a container holds (`MappingProxyType`, `_builtin_form`), or
    its attributes (`threading.local()`: its `__dict__` in this thread),
    when that can be hashed; else None."""
    try:
        form = _builtin_form(value)
    except Exception:
        form = _NO_FORM
    if form is _NO_FORM:
        form = getattr(value, "__dict__", None)
        if type(form) is not dict or not form:
            return None
    try:
        return _native.value_digest(form)
    except _native.HitSaveError:
        return None


def _context_value(variable: Any) -> Any:
    """What a context variable holds in the current context (compared by
    identity, then equality: a value replaced by `.set()` is seen)."""
    return variable.get(_MISSING)


def _iterator_state(value: Any) -> str:
    """Where an iterator is: the digest of what pickle saves of it (`count(101)`,
    the list and index of a list iterator, the iterators a `map` reads)."""
    return _native.value_digest(value)


_BOUND_TYPES = (types.MethodType, *_BUILTIN_CODE)


def _bound_owner(value: Any) -> Any:
    """The instance a method is bound to (`model.predict`, `rng.random`,
    `np.random.rand`), else None (a function, a class method, a module's
    builtin function)."""
    if not isinstance(value, _BOUND_TYPES):
        return None
    owner = getattr(value, "__self__", None)
    return None if owner is None or isinstance(owner, (type, types.ModuleType)) else owner


def _probe(value: Any) -> tuple[Any, Any] | None:
    """For values that are not plain containers: a function of the value and
    what it returned now, which a later call compares again. A small numpy
    array by its dtype, shape and bytes (`ARRAY[0] = 5` is seen), a random
    number generator by its state (a draw or a `seed()` is seen), an
    instance whose attributes are small plain data by a copy of them
    (`CONFIG.scale = 5` is seen); anything else only by identity."""
    kind = type(value)
    if _is_random_generator(value):
        try:
            return _random_state, _random_state(value)
        except Exception:
            return None
    if _is_builtin_iterator(value):
        try:
            return _iterator_state, _iterator_state(value)
        except Exception:
            return None
    if kind.__module__ == "numpy" and kind.__name__ == "ndarray":
        nbytes = _array_bytes(value)
        if nbytes is None or nbytes > _ARRAY_WATCH_BYTES:
            return None
        try:
            return _array_state, _array_state(value)
        except Exception:
            return None
    if isinstance(value, (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType)):
        return None
    watched_form = _watched_form(value)
    if watched_form is not None:
        reader, form = watched_form
        copied = _copy_if_stable(form)
        if copied is not _SAME_OBJECT:
            return reader, copied
    attributes = getattr(value, "__dict__", None)
    if type(attributes) is dict and _plain(attributes):
        copied = _copy_if_stable(attributes)
        if copied is not _SAME_OBJECT:
            return _attributes, copied
    if (type(attributes) is dict and len(attributes) <= _SHALLOW_ITEMS) or (
        type(value) in _PLAIN_CONTAINERS and len(value) <= _SHALLOW_ITEMS
    ):
        # Too large for a copy: what it holds, by identity (a rebound
        # attribute or item is seen; a change inside a large item is seen
        # when that item is itself small enough, one level down).
        return _shallow, _shallow(value)
    return None


_RACY: Any = object()  # equal to no state


def _file_state(path: str) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size, status.st_ino)


class Watched:
    """What a graph read from module namespaces and closure cells, checked
    before the graph is used again (a rebinding, or a small value changed in
    place, means the graph must be built again). Grouped by namespace so a
    check runs in C loops: a few tens of ns per value."""

    def __init__(self) -> None:
        self.names: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.cells: dict[int, tuple[Any, Any]] = {}
        self.snapshots: dict[int, tuple[Any, Any]] = {}
        self.probes: dict[int, tuple[Any, Any, Any]] = {}
        self.groups: list[tuple[dict[str, Any], Any, tuple[Any, ...]]] = []
        self.codes: list[tuple[Any, Any]] = []
        self.files: list[tuple[str, Any]] = []
        self.environments: list[dict[str, str | None]] = []
        self.classes: dict[int, tuple[Any, int, Any, tuple[Any, ...]]] = {}
        self.sizes: list[tuple[Any, int]] = []
        # functools caches in the graph (`@lru_cache` helpers): cleared when the
        # graph is built again after a change, or they would answer from before it.
        self.caches: list[Any] = []
        # Values whose checks before a call are not complete (a large array
        # or container watched by identity, an instance one level deep),
        # with the digest their node counted: digested again before a miss
        # computes (`deep_current`), so a result is never stored under a
        # fingerprint of state the call did not read.
        self.deep: list[tuple[Any, str]] = []
        # Bytes of arrays digested before every call (up to _ARRAY_HASH_BYTES).
        self.hashed_bytes = 0
        # Whether code of the graph reads or writes files: then the files
        # that text arguments name count by contents (`_memo._path_texts`;
        # an output the call creates is handled by `_memo._save_created`).
        self.files_in_key = False

    def deep_current(self) -> bool:
        """Whether every value in :attr:`deep` still has the digest its node
        counted (a miss's check: it costs a digest of each, at BLAKE3 speed
        for arrays)."""
        for value, digest in self.deep:
            try:
                if _native.value_digest(value) != digest:
                    return False
            except _native.HitSaveError:
                return False
        return True

    def code(self, fn: types.FunctionType) -> None:
        """A function whose ``__code__`` the graph read (reassigning it is an edit)."""
        self.codes.append((fn, fn.__code__))

    def environment(self, values: dict[str, str | None]) -> None:
        """Environment variables the graph read, with their values."""
        self.environments.append(values)

    def file(self, path: str) -> None:
        """A file the graph read by contents (a new size, time or inode is an
        edit). A file modified in the last two seconds may change again
        within its timestamp's granularity unseen (git's "racy" case): it is
        read again at each call until it is older."""
        state = _file_state(path)
        if state is not None and time.time_ns() - state[0] < 2_000_000_000:
            state = _RACY
        self.files.append((path, state))

    def name(self, namespace: dict[str, Any], name: str, value: Any) -> None:
        self.names.setdefault(id(namespace), (namespace, {}))[1].setdefault(name, value)
        if type(value) not in _CODE_TYPES:  # a function, class or module: only a rebinding counts
            self._snapshot(value)

    def klass(self, cls: type, data: list[Any]) -> None:
        """A project class the graph read: any attribute rebound, added or
        deleted (`Config.lr = 0.7`, a method replaced) is an edit, and its
        small plain `data` attributes are snapshotted (`Config.layers.append(3)`)."""
        if id(cls) in self.classes:
            return
        # A live view of the class's namespace: checked with the module namespaces.
        attributes = cls.__dict__
        keys = tuple(attributes)
        getter = operator.itemgetter(*keys) if len(keys) > 1 else (lambda ns, key=keys[0]: (ns[key],))
        self.classes[id(cls)] = (attributes, len(keys), getter, tuple(attributes[key] for key in keys))
        for value in data:
            self._snapshot(value)

    def cell(self, cell: Any, value: Any) -> None:
        self.cells.setdefault(id(cell), (cell, value))
        self._snapshot(value)

    def _snapshot(self, value: Any, depth: int = 0) -> None:
        if type(value) in _CODE_TYPES:
            return  # functions, classes and modules (most of what a graph reads): only a rebinding counts
        owner = _bound_owner(value)
        if owner is not None:
            value = owner  # `predict = model.predict`: the model's state (`model.w = 5`)
        if type(value) in _IDENTITY_ONLY or id(value) in self.snapshots or id(value) in self.probes:
            return  # a builtin function, or watched already
        snapshot = _snapshot(value)
        if snapshot is not _SAME_OBJECT:
            self.snapshots[id(value)] = (value, snapshot)
            return
        probe = _probe(value)
        if probe is not None:
            self.probes[id(value)] = (value, *probe)
            if probe[0] is _shallow and depth == 0:
                # One level down (the items the shallow probe holds), containers
                # and arrays (not instances, whose caches change as they are
                # read): `CONFIG["rows"][-1] = 7`, `model.opts["lr"] = 0.1`.
                for item in probe[1].items:
                    kind = type(item)
                    if kind in _PLAIN_CONTAINERS or (kind.__module__ == "numpy" and kind.__name__ == "ndarray"):
                        self._snapshot(item, 1)
                    elif kind.__module__ not in ("builtins", "numpy") and not is_external(kind):
                        # An instance of the project's own class (`APP.config.k = 10`):
                        # a package's objects keep caches that change as they are read.
                        self._snapshot(item, 1)
                    elif id(item) not in self.probes:
                        # A DataFrame in a dict or on a model (`CFG["df"].loc[0, "a"] = 5`).
                        nbytes = _pandas_bytes(item)
                        if nbytes is not None:
                            try:
                                self.digested(item, nbytes)
                            except _native.HitSaveError:
                                pass

    def digested(self, value: Any, nbytes: int, digest: str | None = None) -> bool:
        """Digests `value` (`nbytes` of array or frame data; its digest now,
        computed when not given) again before every call when the budget of
        them, 8 MiB per graph, allows (`_ARRAY_HASH_BYTES`); whether it does."""
        if self.hashed_bytes + nbytes > _ARRAY_HASH_BYTES:
            return False
        if digest is None:
            digest = _native.value_digest(value)
        self.hashed_bytes += nbytes
        self.probes[id(value)] = (value, _native.value_digest, digest)
        return True

    def freeze(self) -> "Watched":
        flat: list[tuple[Any, str, Any]] = []
        for namespace, names in self.names.values():
            keys = tuple(names)
            getter = operator.itemgetter(*keys) if len(keys) > 1 else (lambda ns, key=keys[0]: (ns[key],))
            self.groups.append((namespace, getter, tuple(names[key] for key in keys)))
            flat.extend((namespace, key, names[key]) for key in keys)
        for attributes, count, getter, values in self.classes.values():
            self.groups.append((attributes, getter, values))
            self.sizes.append((attributes, count))  # an attribute added or removed
            flat.extend(zip([attributes] * len(values), attributes, values))
        compiled = _compile_checks(self, flat)
        if compiled is not None:
            self.current = compiled  # type: ignore[method-assign]
        return self

    def current(self) -> bool:
        # The hot path of every call: inline loops, no helper calls (a small
        # graph's checks are compiled into one function instead: `_compile_checks`).
        for namespace, getter, values in self.groups:
            try:
                now = getter(namespace)
            except KeyError:
                return False
            if any(map(operator.is_not, now, values)):
                return False
        for attributes, count in self.sizes:
            if len(attributes) != count:
                return False
        for cell, value in self.cells.values():
            try:
                if cell.cell_contents is not value:
                    return False
            except ValueError:
                return False
        for fn, code in self.codes:
            if fn.__code__ is not code:
                return False
        for path, state in self.files:
            if _file_state(path) != state:
                return False
        for variables in self.environments:
            for key, value in variables.items():
                if os.environ.get(key) != value:
                    return False
        for value, snapshot in self.snapshots.values():
            if value != snapshot:
                return False
        for value, probe, then in self.probes.values():
            try:
                if probe(value) != then:
                    return False
            except Exception:
                return False
        return True


# Graphs watching up to this many things get their checks compiled into one
# function (a few tens of ns each instead of a loop per kind); larger ones
# loop, as compiling costs more than it saves at a first call.
_COMPILED_CHECKS = 48


def _compile_checks(watched: Watched, flat: list[tuple[Any, str, Any]]) -> Any:
    """`watched.current` as one generated function with every check inline
    (a warm hit runs it at every call), or None when the graph watches too
    much or a name is not a plain string."""
    count = (
        len(flat) + len(watched.sizes) + len(watched.cells) + len(watched.codes) + len(watched.files)
        + sum(len(v) for v in watched.environments) + len(watched.snapshots) + len(watched.probes)
    )
    if count > _COMPILED_CHECKS or any(type(key) is not str for _, key, _ in flat):
        return None
    scope: dict[str, Any] = {"_file_state": _file_state, "_environ": os.environ}
    names: dict[int, str] = {}

    def bound(value: Any) -> str:
        name = names.get(id(value))
        if name is None or scope[name] is not value:
            name = f"o{len(scope)}"
            names[id(value)] = name
            scope[name] = value
        return name

    lines = ["def current():", "    try:"]
    for namespace, key, value in flat:
        lines.append(f"        if {bound(namespace)}[{key!r}] is not {bound(value)}: return False")
    for cell, value in watched.cells.values():
        lines.append(f"        if {bound(cell)}.cell_contents is not {bound(value)}: return False")
    lines.append("    except (KeyError, ValueError):")
    lines.append("        return False")
    for attributes, size in watched.sizes:
        lines.append(f"    if len({bound(attributes)}) != {size!r}: return False")
    for fn, code in watched.codes:
        lines.append(f"    if {bound(fn)}.__code__ is not {bound(code)}: return False")
    for path, state in watched.files:
        lines.append(f"    if _file_state({bound(path)}) != {bound(state)}: return False")
    for variables in watched.environments:
        for key, value in variables.items():
            lines.append(f"    if _environ.get({bound(key)}) != {bound(value)}: return False")
    for value, snapshot in watched.snapshots.values():
        lines.append(f"    if {bound(value)} != {bound(snapshot)}: return False")
    for value, probe, then in watched.probes.values():
        lines.append("    try:")
        lines.append(f"        if {bound(probe)}({bound(value)}) != {bound(then)}: return False")
        lines.append("    except Exception:")
        lines.append("        return False")
    lines.append("    return True")
    try:
        exec(compile("\n".join(lines), "<hitsave checks>", "exec"), scope)
    except Exception:
        return None
    return scope["current"]


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[tuple[str, str, str, list[int]]] = []
        self.index: dict[str, int] = {}
        self.seen: dict[int, str] = {}
        self.watched = Watched()
        # Function objects already visited, by identity (the graph holds them alive).
        self.functions: dict[int, int] = {}
        # Whether a module (by its globals' identity) is installed code.
        self.external_modules: dict[int, bool] = {}
        # The package node of an installed module, by the module's identity.
        self.modules: dict[int, int] = {}
        # The node of a package's callable (`math.sqrt`), by its identity:
        # read by many functions, looked up once.
        self.package_callables: dict[int, int] = {}
        # Whether any code in the graph reads files, and the code that does
        # not read or write any itself (its named files count if some does).
        self.reads_files = False
        self.writes_files = False
        self.file_namers: list[tuple[int, types.CodeType, dict[str, Any]]] = []
        # Paths held inside module-level values code of the graph reads
        # (`MODEL = Model("weights.bin")`, `CFG = {"data": Path("data/train.csv")}`):
        # (node, hint, path, a Path object, namespace), and the values walked.
        self.value_paths: list[tuple[int, str, str, bool, dict[str, Any]]] = []
        self.values_walked: set[int] = set()

    def files_named_for_readers(self) -> None:
        """When code in the graph reads files, the files other code of the
        graph names by a string constant count too: a helper reading the
        path it is given (`parse("table.csv")`, a class's method opening
        `self.path`) reads what its callers name; and so do the paths held
        in module-level values the graph reads (a path string or `Path` in a
        dict, a list or a project instance's attributes: `MODEL =
        Model("weights.bin")` with a method opening `self.path`). More misses
        at worst."""
        if not self.reads_files:
            return
        for node, code, namespace in self.file_namers:
            for name, path in _files_named_in(code, namespace):
                self._file(node, name, path)
        for node, hint, text, is_path, namespace in self.value_paths:
            directories: list[tuple[str, str]] = []
            self._path_value(node, text, f"dir:{hint}/{text}", namespace, directories)
            if is_path or "/" in text:
                # A directory only as a `Path` or a path with a `/`: a bare word in a
                # config dict is as often a mode or a name.
                for name, path in directories:
                    self._data_directory(node, name, path, set(), hint)

    def _value_paths(self, node: int, hint: str, value: Any, namespace: dict[str, Any]) -> None:
        """Records the path strings and `Path`s inside a module-level value
        (dict values, list/tuple/set items, a project instance's attributes,
        a package's small record's (`argparse.Namespace`); at most 2,000
        items, 6 levels deep) for :meth:`files_named_for_readers`."""
        stack: list[tuple[Any, int]] = [(value, 0)]
        budget = 2000
        while stack and budget > 0:
            item, depth = stack.pop()
            budget -= 1
            kind = type(item)
            if kind is str:
                if "/" in item or _EXTENSION.search(item):
                    if _PATH_LIKE.fullmatch(item):
                        self.value_paths.append((node, hint, item, False, namespace))
                continue
            if kind in _PLAIN_SCALARS or depth >= 6 or id(item) in self.values_walked:
                continue
            self.values_walked.add(id(item))
            if isinstance(item, os.PathLike):
                text = os.fspath(item)
                if isinstance(text, str):
                    self.value_paths.append((node, hint, text, True, namespace))
            elif kind is dict:
                stack.extend((child, depth + 1) for child in item.values())
            elif kind in (list, tuple, set, frozenset):
                stack.extend((child, depth + 1) for child in item)
            elif not isinstance(item, (type, types.ModuleType, types.FunctionType)):
                attributes = getattr(item, "__dict__", None)
                # A project instance's attributes; a package's small record
                # too (`args = parser.parse_args()`, a SimpleNamespace, a
                # settings model): `open(args.config)` reads the path it holds.
                if type(attributes) is dict and (
                    not is_external(type(item)) or (depth <= 2 and len(attributes) <= 64)
                ):
                    stack.extend((child, depth + 1) for child in attributes.values())

    def _add(self, kind: str, name: str, content: str) -> int:
        if name in self.index:
            return self.index[name]
        self.index[name] = len(self.nodes)
        self.nodes.append((kind, name, content, []))
        return self.index[name]

    def _link(self, parent: int, child: int | None) -> None:
        if child is not None and child not in self.nodes[parent][3]:
            self.nodes[parent][3].append(child)

    def visit(self, obj: Any, name_hint: str | None = None) -> int | None:
        if type(obj) is types.FunctionType and not obj.__dict__:
            # The common case first: a plain function (no attributes, so not
            # a singledispatch or wraps wrapper) of the project.
            known = self.functions.get(id(obj))
            if known is not None:
                return known
            globals_id = id(obj.__globals__)
            external = self.external_modules.get(globals_id)
            if external is None:
                external = self.external_modules[globals_id] = is_external(obj)
            if not external:
                return self._function(obj)
        if isinstance(obj, functools.partial):
            if id(obj) in self.functions:
                return self.functions[id(obj)]
            # Named by where it was found, never by its address (which differs
            # in every process, so no later process could ever hit).
            base = name_hint or f"partial:{self._name(obj.func)}"
            name, number = base, 2
            while name in self.index:
                name, number = f"{base}#{number}", number + 1
            content = _native.value_digest(["partial", _safe_value(list(obj.args)), _safe_value(dict(obj.keywords))])
            node = self._add("function", name, content)
            self.functions[id(obj)] = node
            # Named, so a bound method's instance counts (`partial(model.predict, scale=2)`).
            self._link(node, self.visit(obj.func, f"{name}.func"))
            return node
        if isinstance(obj, types.MethodType) or _bound_owner(obj) is not None:
            return self._method(obj, name_hint)
        memoized = _memoized(obj)
        if memoized is not None:
            # A memoized function another one calls: its code (and what it
            # binds), never the wrapper object: editing the inner function
            # must change the outer's fingerprint.
            return self.visit(memoized, name_hint)
        if isinstance(obj, types.ModuleType) and is_external(obj):
            known = self.modules.get(id(obj))
            if known is not None:
                return known
            dist, version = package_of(obj)
            known = self.index.get(f"package:{dist}")
            if known is None:
                known = self._add("package", f"package:{dist}", _native.value_digest(f"{dist}=={version}"))
            self.modules[id(obj)] = known
            self._package_state(known, obj.__name__)
            return known
        known = self.package_callables.get(id(obj))
        if known is not None:
            return known
        if (
            callable(obj)
            and isinstance(getattr(obj, "__name__", None), str)
            and (isinstance(obj, (types.FunctionType, type)) or is_code_object(obj) or not hasattr(obj, "__dict__"))
            and is_external(obj)
        ):
            # A package's function or class counts by its distribution, version
            # and qualified name: `statistics.mean` is not `statistics.median`.
            # (A package's callable *instance* has no name: it counts by value, below.)
            dist, version = package_of(obj)
            qualified = f"{_module_name_of(obj)}:{getattr(obj, '__qualname__', None) or obj.__name__}"
            name = f"package:{dist}:{qualified}"
            known = self.index.get(name)
            if known is None:
                known = self._add("package", name, _native.value_digest(f"{dist}=={version} {qualified}"))
            self.package_callables[id(obj)] = known
            self._package_state(known, _module_name_of(obj))
            return known
        if not isinstance(obj, types.FunctionType):
            extension = _project_extension(obj)
            if extension is not None:
                return self._extension(*extension)
        registry = getattr(obj, "registry", None)
        if isinstance(obj, types.FunctionType) and callable(getattr(obj, "dispatch", None)) and isinstance(registry, collections.abc.Mapping):
            # functools.singledispatch: the code that runs is each registered implementation.
            name = f"singledispatch:{obj.__module__}:{obj.__qualname__}"
            if name in self.index:
                return self.index[name]
            node = self._add("function", name, _native.value_digest(["singledispatch", [_qualified_type(t) for t in registry]]))
            for implementation in list(registry.values()):
                child = self.visit(implementation)
                if child is not None and child != node:
                    self._link(node, child)
            return node
        wrapped = getattr(obj, "__wrapped__", None)
        if wrapped is not None and callable(obj) and not isinstance(obj, (types.FunctionType, type)):
            # functools.lru_cache and cache wrappers (C objects): the function inside.
            if callable(getattr(obj, "cache_clear", None)):
                self.watched.caches.append(obj)
            return self.visit(wrapped, name_hint)
        if isinstance(obj, types.FunctionType):
            return self._function(obj)
        if isinstance(obj, type):
            return self._class(obj)
        if isinstance(obj, types.ModuleType):
            known = self.index.get(f"module:{obj.__name__}")
            if known is not None:
                return known
            node = self._add("module", f"module:{obj.__name__}", _native.value_digest(obj.__name__))
            # A project module used as a value (`getattr(m, name)`, passed to
            # a call, `import_module("m")`): whatever it binds may be read,
            # so all of it counts (more than needed, never less).
            self._namespace(node, vars(obj), f"{module_name(obj.__name__)}:")
            return node
        if name_hint is None:
            return None
        if type(obj).__module__ == "_contextvars" and type(obj).__qualname__ == "ContextVar":
            # `PRECISION = ContextVar("p", default=2)` read with `.get()`: the
            # value the current context holds (`PRECISION.set(4)` between calls).
            value = obj.get(_MISSING)
            node = self._add("constant", name_hint, _native.value_digest(["context variable", obj.name]))
            if value is not _MISSING:
                child = self.visit(value, f"{name_hint}.value")
                if child is not None and child != node:
                    self._link(node, child)
                self.watched._snapshot(value)  # changed in place
            self.watched.probes[id(obj)] = (obj, _context_value, value)
            return node
        try:
            content = _native.value_digest(obj)
        except _native.HitSaveError:
            if _is_builtin_iterator(obj):
                # A generator (or an iterator that cannot be pickled): each
                # `next()` moves it, and where it is cannot be read.
                raise _native.code_unavailable_error(
                    f"{name_hint} is a {type(obj).__qualname__} whose position changes as it is read and cannot be "
                    "read back, so results computed at different positions could not be told apart; pass the "
                    "values it gives as arguments, or make it a list"
                ) from None
            # A module-level value that cannot be hashed faithfully (a lock, a
            # database engine, an object holding one): its type and the
            # source that makes it (`ENGINE = create_engine(URL)`: editing
            # the URL misses), since its state cannot be read.
            described: list[Any] = ["opaque", type(obj).__module__, type(obj).__qualname__, _assignments_of(name_hint)]
            readable = _readable_state(obj)
            if readable is not None:
                # What it holds that can be read (a `MappingProxyType`'s
                # mapping, `threading.local()`'s attributes): counted (the
                # checks before each call compare it), never its type alone.
                described.append(readable)
            content = _native.value_digest(described)
            opaque = True
        else:
            opaque = False
            if not _fully_watched(obj):
                nbytes = _array_bytes(obj)
                if nbytes is None:
                    nbytes = _pandas_bytes(obj)
                # A mid-sized array, a DataFrame, Series or Index (whose
                # changes in place, `DF.loc[0, "a"] = 5`, `S[0] = 5`,
                # `DF.columns = [...]`, leave its attributes as they were):
                # digested again before every call, within the budget.
                if nbytes is None or not self.watched.digested(obj, nbytes, content):
                    self.watched.deep.append((obj, content))
        node = self._add("constant", name_hint, content)
        if opaque:
            # An SQLite database held open (`CONN = sqlite3.connect("app.db")`,
            # an SQLAlchemy engine on `sqlite:///app.db`): its file counts by
            # contents (and its write-ahead log), as a data file does.
            for path in _sqlite_files(obj):
                self._file(node, f"file:sqlite:{name_hint}/{os.path.basename(path)}", path)
        # Code a value holds runs when the function uses it: an instance of the
        # project's own class (`model = Model()`, also a callable one) runs its
        # class's methods; a registry (`MODELS = {"a": Model()}`) or a list of
        # steps (`STEPS = [double, abs]`) holds classes and functions.
        for code in _code_held_by(obj, 100_000 if opaque else 1000):
            child = self.visit(code)
            if child is not None and child != node:
                self._link(node, child)
        return node

    def _method(self, method: Any, name_hint: str | None) -> int | None:
        """A bound method: its code, and what it is bound to. A class
        method's class counts as code; an instance (`predict =
        model.predict`, `np.random.rand`, bound to numpy's global generator)
        by value, under the name it was read by, and watched: the
        instance's state is an input of every call (`Model(2)` edited to
        `Model(3)`, `model.w = 5`, a draw or a `seed()` of the generator).
        Without a name (an item of a container) the value holding it counts
        it already."""
        function = getattr(method, "__func__", None)
        owner = method.__self__
        code = self.visit(function) if function is not None else self.visit(type(owner))
        if isinstance(owner, types.ModuleType):
            return code
        if isinstance(owner, type):
            name = f"method:{self._name(owner)}.{getattr(method, '__name__', '?')}"
            state = self.visit(owner)
        elif name_hint is None:
            return code
        else:
            name = name_hint
            state = self.visit(owner, f"{name_hint}.__self__")
            self.watched._snapshot(owner)
        if name in self.index:
            return self.index[name]
        node = self._add("constant", name, _native.value_digest(["method", getattr(method, "__name__", "?")]))
        for child in (code, state):
            if child is not None and child != node:
                self._link(node, child)
        return node

    def _local_time_node(self) -> int:
        """A node of the local time zone and locale (:func:`_local_time`, and
        the zone file `/etc/localtime` names), watched before each call: a
        result computed in Tokyo is not one for Berlin."""
        known = self.index.get("local:time")
        if known is not None:
            return known
        value = _local_time()
        try:
            zone = os.path.realpath("/etc/localtime") if os.path.exists("/etc/localtime") else None
        except OSError:
            zone = None
        node = self._add("constant", "local:time", _native.value_digest(["local time", [repr(v) for v in value], zone]))
        self.watched.probes[id(_LOCAL_TIME)] = (_LOCAL_TIME, _local_time, value)
        return node

    def _package_state(self, node: int, module_name: str) -> None:
        """Settings of a package that change what its code computes, counted
        by value where the graph uses that package and watched in the
        process (:data:`_PACKAGE_SETTINGS`): the `decimal` context
        (`getcontext().prec = 8` at the top of a module changes every
        division), numpy's print options and floating-point error handling
        (`np.set_printoptions(precision=3)` changes `str(array)`)."""
        top = module_name.split(".")[0]
        entry = _PACKAGE_SETTINGS.get(top)
        if entry is None:
            return
        owner, read = entry
        child = self.index.get(f"{owner}:settings")
        if child is None:
            module = sys.modules.get(owner)
            if module is None:
                return
            import copy

            try:
                settings = copy.deepcopy(read(module))  # compared with the live ones before each call
            except Exception:
                return  # another version keeps them elsewhere: not read (docs/python.md)
            child = self._add("constant", f"{owner}:settings", _native.value_digest([owner, _setting_value(settings)]))
            self.watched.probes[id(module)] = (module, read, settings)
        self._link(node, child)

    def _namespace(self, node: int, namespace: dict[str, Any], prefix: str, keep: tuple[str, ...] = ()) -> None:
        """Everything `namespace` binds (a module's globals, a function's
        attributes) as dependencies of `node`, watched like module-level
        names: data by value (named `prefix` + the name), code as code.
        Dunder names are left out, except those in `keep`."""
        for attr, value in list(namespace.items()):
            if attr.startswith("__") and attr.endswith("__") and attr not in keep:
                continue
            self.watched.name(namespace, attr, value)
            hint = None if isinstance(value, (types.FunctionType, type, types.ModuleType)) else f"{prefix}{attr}"
            child = self.visit(value, hint)
            if child is not None and child != node:
                self._link(node, child)

    def _name(self, obj: Any) -> str:
        if isinstance(obj, types.FunctionType):
            # Where its code was defined: `functools.wraps` copies the wrapped
            # function's name onto a decorator's wrapper, which is other code.
            return f"{module_name(obj.__globals__.get('__name__', obj.__module__))}:{obj.__code__.co_qualname}"
        return f"{module_name(getattr(obj, '__module__', None) or '?')}:{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"

    def _function(self, fn: types.FunctionType) -> int:
        if id(fn) in self.functions:
            return self.functions[id(fn)]
        name = self._name(fn)
        if name in self.index:
            # Another function object of the same code (closures one factory
            # made, wrappers of one decorator): its closure differs, so it is a
            # node of its own, numbered in the (deterministic) order reached.
            number = 2
            while f"{name}#{number}" in self.index:
                number += 1
            name = f"{name}#{number}"
        # What runs (bytecode, names, constants, nested code), never the
        # source on disk, which may be newer than the code loaded (a file
        # saved after import); two lambdas on one line differ here too.
        facts = _code_facts(fn.__code__)
        annotations = _annotations(fn)
        if not annotations and fn.__defaults__ is None and fn.__kwdefaults__ is None:
            content = facts[_FACT_BARE]
        else:
            parts = ["function", facts[_FACT_SUMMARY], annotations, fn.__defaults__, fn.__kwdefaults__]
            try:
                content = _native.value_digest(parts)
            except _native.HitSaveError:
                # A default cannot be hashed (one holding a lock): that item
                # by its type, every other item by value.
                parts[3] = None if fn.__defaults__ is None else [_safe_value(d) for d in fn.__defaults__]
                parts[4] = None if fn.__kwdefaults__ is None else {k: _safe_value(v) for k, v in fn.__kwdefaults__.items()}
                content = _native.value_digest(parts)
        self.watched.code(fn)
        node = self._add("function", name, content)
        self.functions[id(fn)] = node
        use = self._deps_of_code(node, fn.__code__, fn.__globals__, module_name(fn.__globals__.get("__name__", fn.__module__)), facts)
        # Paths in its defaults (`def load(path="data.csv")`) count like those
        # in module-level values, when code of the graph reads files.
        if use != "writes":
            for default in (fn.__defaults__ or ()) + tuple((fn.__kwdefaults__ or {}).values()):
                self._value_paths(node, f"{name}.<defaults>", default, fn.__globals__)
        for cell_name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            self.watched.cell(cell, value)
            self._link(node, self.visit(value, f"{name}.<closure {cell_name}>"))
            if not isinstance(value, (types.FunctionType, type, types.ModuleType)):
                self._value_paths(node, f"{name}.<closure {cell_name}>", value, fn.__globals__)
        # Attributes set on the function (`helper.factor = 3`), which its code
        # (or its callers') may read: by value, watched like module-level
        # names; `__wrapped__` (functools.wraps) as code.
        self._namespace(node, fn.__dict__, f"{name}.", keep=("__wrapped__",))
        # A method depends on its class (and so on the class's other methods).
        qualname = fn.__qualname__
        if "." in qualname and "<locals>" not in qualname:
            owner: Any = sys.modules.get(fn.__module__)
            for part in qualname.split(".")[:-1]:
                owner = getattr(owner, part, None)
            if isinstance(owner, type):
                self._link(node, self.visit(owner))
        return node

    def _deps_of_code(
        self, node: int, code: types.CodeType, namespace: dict[str, Any], module: str, facts: tuple[Any, ...] | None = None
    ) -> str:
        """Links what `code` reads to `node`; returns its :func:`_file_use`."""
        if facts is None:
            facts = _code_facts(code)
        use = facts[_FACT_USE]
        if facts[_FACT_LOCAL_TIME]:
            self._link(node, self._local_time_node())
        reads_files = use == "reads"
        if reads_files:
            self.reads_files = True
        elif use == "writes":
            self.writes_files = True
        elif use == "none":
            # It may name a file that code it calls reads (`parse("table.csv")`
            # with `parse` opening its parameter): see `files_named_for_readers`.
            self.file_namers.append((node, code, namespace))
        directories: list[tuple[str, str]] = []  # (node name, path) of data directories the code reads
        strings: set[str] = set()  # module-level strings it reads (`CONFIG = "config.json"`)
        for name, bound, value, qualified in _referenced(code, namespace, facts[_FACT_REFERENCES]):
            if name is not None and name in namespace:
                # Watched under the name the code reads (never another name
                # bound to an equal small int or interned string), against
                # what that name is bound to (the module of `module.attr`).
                self.watched.name(namespace, name, bound)
            if qualified is not None and qualified.startswith("env:"):
                # Named environment variables: watched by value (a program
                # may set one between calls).
                self.watched.environment(value)
                if reads_files:
                    # `open(os.path.join(os.environ["DATA_DIR"], name))`: a
                    # variable naming a file or a directory, read by code that
                    # reads files, counts that file or directory too.
                    for key, text in value.items():
                        if isinstance(text, str):
                            self._path_value(node, text, f"dir:env:{key}", namespace, directories)
            elif qualified is not None:
                owner, _, attr = qualified.partition(":")
                module_object = sys.modules.get(owner)
                if module_object is not None and getattr(module_object, attr, None) is value:
                    self.watched.name(vars(module_object), attr, value)
            hint = None
            if not isinstance(value, (types.FunctionType, type, types.ModuleType)):
                if qualified is not None:
                    hint = qualified
                elif name is not None:
                    hint = f"{module}:{name}"
            self._link(node, self.visit(value, hint))
            if hint is not None and use != "writes" and not (reads_files and isinstance(value, (str, os.PathLike))):
                # Paths inside it count when code of the graph reads files.
                self._value_paths(node, hint, value, namespace)
            if reads_files and hint is not None and isinstance(value, (str, os.PathLike)):
                # `DATA = "data/train.csv"` (or a Path) read by the code: the file too.
                text = os.fspath(value)
                if isinstance(text, str):
                    if isinstance(value, str):
                        strings.add(value)
                    self._path_value(node, text, f"dir:{hint}", namespace, directories)
        if reads_files:
            codes = _bytecode.nested_codes(code)
            packages = _packages_named(codes, namespace)
            for name, path in _files_named_in(code, namespace, codes, packages):
                self._file(node, name, path)
            constants = {
                constant for nested in codes for constant in nested.co_consts if type(constant) is str and constant
            }
            for constant in constants:
                # `Path("data").iterdir()`, `open(os.path.join("data", name))`: a directory it names.
                directories.extend((f"dir:{module}/{constant}", path) for path in _directories_named(constant, namespace))
                if _GLOB.search(constant):
                    self._glob(node, constant, namespace)
            for package, directory in packages:
                # `resources.files("pkg") / "data"`: a directory under a package it names.
                for constant in constants:
                    path = os.path.join(directory, constant)
                    if constant.strip("/.") and not os.path.isabs(constant) and os.path.isdir(path):
                        directories.append((f"dir:package:{package}/{constant}", path))
                # `resources.files("pkg").iterdir()`: the package's own files.
                if any(not _LISTERS.isdisjoint(nested.co_names) for nested in codes):
                    directories.append((f"dir:package:{package}", directory))
            for name, path in directories:
                self._data_directory(node, name, path, constants | strings, f"{module}:{code.co_qualname}")
        return use

    def _path_value(
        self, node: int, text: str, directory_name: str, namespace: dict[str, Any], directories: list[tuple[str, str]]
    ) -> None:
        """A path value file-reading code reads (a module-level string or
        `Path`, an environment variable's value): the file it names counts
        now; a directory it names (`DATA_DIR = Path(__file__).parent /
        "data"`) is added to `directories`, for :meth:`_data_directory`."""
        files = _files_named(text, namespace)
        for file_name, path in files:
            self._file(node, file_name, path)
        if not files:
            directories.extend((directory_name, path) for path in _directories_named(text, namespace))

    def _glob(self, node: int, pattern: str, namespace: dict[str, Any]) -> None:
        """A glob pattern file-reading code names (`glob.glob("data/*.csv")`,
        `Path(".").glob("data/**/*.json")`): the files it matches now count by
        contents, from each place a path may point (:func:`_places`), and the
        directories it lists are watched, so a file added in this process
        counts too. A pattern with no directory part matches in those places only."""
        if not _PATH_LIKE.fullmatch(pattern) or len(pattern) > 255:
            return
        import glob

        wildcard = _GLOB.search(pattern)
        if wildcard is None:
            return
        inside = pattern[: wildcard.start()].rpartition("/")[0]  # the directory in front of the first wildcard
        for label, path in _places(pattern, namespace):
            # Where the pattern is matched from (a directory holding `[` is not part of the pattern).
            root = path[: len(path) - len(pattern)] if not os.path.isabs(pattern) else None
            base = os.path.join(root or "", inside) if inside or root else ""
            if not base or base == os.sep or not os.path.isdir(base):
                continue
            found = glob.glob(pattern, root_dir=root, recursive=True)
            matches = sorted(os.path.join(root, match) if root else match for match in found)
            if len(matches) > 4096:
                raise _native.code_unavailable_error(
                    f"{pattern!r} matches {len(matches)} files: too many to count at each first call of a process; "
                    "pass the inputs as File arguments"
                )
            listed = {base} | {os.path.dirname(match) for match in matches}
            for directory in sorted(listed):
                self.watched.file(directory)  # a file added or removed changes its directory's listing
            for match in matches:
                if os.path.isfile(match):
                    self._file(node, f"file:glob:{label}/{os.path.relpath(match, base)}", match)
            self._link(node, self.visit([os.path.relpath(match, base) for match in matches], f"glob:{label}"))

    def _data_directory(self, node: int, name: str, directory: str, texts: set[str], reader: str) -> None:
        """A directory the code reads files from (`DATA_DIR / "train.csv"`,
        `open(DATA_DIR / f"{name}.csv")`): the files its strings (constants,
        and module-level strings it reads) name under it when there are any,
        else every file under it by contents (`hitsave_host::files`: hidden
        entries, caches and stores left out; too many to count is
        `code_unavailable`), watched with the directories' listings so a file
        added or edited in this process counts too."""
        # Names inside it only: an absolute text (`__file__`, which code
        # locating its data reads too) or one leaving it (`../x`) is no file
        # of the directory, and taking it for one left the directory's own
        # files uncounted.
        inside = os.path.join(os.path.normpath(directory), "")
        named = sorted(
            text
            for text, path in ((text, os.path.normpath(os.path.join(directory, text))) for text in texts)
            if path.startswith(inside) and os.path.isfile(path)
        )
        if named:
            for constant in named:
                self._file(node, f"{name}/{constant}", os.path.join(directory, constant))
            return
        files, directories = _native.directory_files(directory, reader)
        for path in directories:
            self.watched.file(path)  # a file added or removed changes its directory's listing
        for path in files:
            self.watched.file(path)
        contents = [[os.path.relpath(path, directory), _types.File(path)] for path in files]
        self._link(node, self.visit(contents, name))

    def _extension(self, module: str, path: str) -> int:
        """A compiled module of the project (C, Cython, pybind11, built in
        place): its functions and types run its machine code, which no source
        shows, so they count by the file's contents."""
        name = f"extension:{module}"
        known = self.index.get(name)
        if known is not None:
            return known
        self.watched.file(path)
        return self._add("module", name, _native.value_digest(["extension", _types.File(path)]))

    def _file(self, node: int, name: str, path: str) -> None:
        """A data file the code names (`pd.read_csv("data/train.csv")`,
        `open("config.json")`, `HERE / "weights.npy"`): by its contents, and
        watched, so an edit in this process counts too."""
        self.watched.file(path)
        self._link(node, self.visit(_types.File(path), name))

    def _class(self, cls: type) -> int:
        name = self._name(cls)
        if name in self.index:
            return self.index[name]
        source = _class_source(cls)
        # What its methods run, besides the source (which may be newer than the loaded code).
        try:
            content = _native.value_digest(["class", source, _member_summaries(cls)])
        except _native.HitSaveError:
            content = _native.value_digest(["class", source, _member_summaries(cls, safe=True)])
        node = self._add("class", name, content)
        for base in cls.__bases__:
            if base is not object:
                self._link(node, self.visit(base))
        # Its metaclass runs when the class is called or subclassed
        # (`Meta.__call__`): the project's counts by its code, a package's by version.
        if type(cls) is not type:
            child = self.visit(type(cls))
            if child is not None and child != node:
                self._link(node, child)
        data: list[Any] = []
        module_namespace = vars(sys.modules[cls.__module__]) if cls.__module__ in sys.modules else {}
        for attribute, member in vars(cls).items():
            if isinstance(member, cls) and hasattr(member, "_value_"):
                # An enum's member: a path as its value counts like a class attribute's.
                self._value_paths(node, f"{name}.{attribute}", member._value_, module_namespace)
            if isinstance(member, (cls, types.MemberDescriptorType, types.GetSetDescriptorType)):
                # An enum's members and the slots' descriptors: written in the
                # class's source, and made from the class itself.
                continue
            if not _member_functions(member) and not (attribute.startswith("__") and attribute.endswith("__")):
                # A class attribute's value (`RATE = rate()`, `model = Model()`):
                # the source says how it was made, not what the code it ran did.
                child = self.visit(member, f"{name}.{attribute}")
                if child != node:
                    self._link(node, child)
                data.append(member)
                # A path it holds (`PATH = "x.csv"` read as `open(Cfg.PATH)`) counts
                # when code of the graph reads files.
                self._value_paths(node, f"{name}.{attribute}", member, module_namespace)
            for function in _member_functions(member):
                if function.__code__.co_qualname.startswith(cls.__qualname__ + "."):
                    self._deps_of_code(node, function.__code__, function.__globals__, module_name(cls.__module__))
                else:
                    # Code defined elsewhere (a decorator's wrapper, a function
                    # assigned in the class body): not in the class's source, so
                    # a node of its own, with its closure (the method it wraps).
                    self._link(node, self.visit(function))
        # Changed in this process after the graph was built: built again.
        self.watched.klass(cls, data)
        return node


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _annotations(fn: types.FunctionType) -> list[Any]:
    """A function's annotations as text (code that reads them, such as a
    validating decorator, runs differently when they change); types by
    qualified name, never by address."""
    try:
        annotations = dict(getattr(fn, "__annotations__", None) or {})
    except Exception:  # an annotation that cannot be evaluated now
        return ["unavailable"]
    return [
        [str(name), value if isinstance(value, str) else _qualified_type(value) if isinstance(value, type) else _ADDRESS.sub("", repr(value))]
        for name, value in annotations.items()
    ]


def _class_source(cls: type) -> str | list[str] | None:
    """The normalised source of a class (AST without docstrings and
    ``@memo`` decorators): read from its module's file, parsed once per file
    version, found by qualified name (every definition of that name, if
    there are several); else through :mod:`inspect` (notebooks, ``exec``)."""
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if isinstance(file, str) and file.endswith(".py"):
        try:
            found = _class_dumps(file, os.stat(file).st_mtime_ns, cls.__qualname__)
        except OSError:
            found = []
        if found:
            return found
    return normalised_source(cls)


@functools.lru_cache(maxsize=64)
def _classes_in(file: str, mtime: int) -> dict[str, list[ast.ClassDef]]:
    """The class definitions of a file by qualified name, docstrings and
    ``@memo`` decorators stripped (a tree of its own, never the shared one)."""
    import ast

    try:
        with open(file, "rb") as source:
            tree = ast.parse(source.read())
    except (OSError, SyntaxError, ValueError):
        return {}
    _strip_memo_decorators(_strip_docstrings(tree))
    found: dict[str, list[ast.ClassDef]] = {}
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                qualified = prefix + child.name
                found.setdefault(qualified, []).append(child)
                stack.append((child, qualified + "."))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                stack.append((child, f"{prefix}{child.name}.<locals>."))
            elif not isinstance(child, (ast.expr, ast.Lambda)):
                stack.append((child, prefix))
    return found


@functools.lru_cache(maxsize=1024)
def _class_dumps(file: str, mtime: int, qualname: str) -> list[str]:
    import ast

    return [ast.dump(node, include_attributes=False) for node in _classes_in(file, mtime).get(qualname, [])]


@functools.lru_cache(maxsize=256)
def _module_tree(file: str, mtime: int) -> ast.Module | None:
    import ast

    try:
        with open(file, "rb") as source:
            return ast.parse(source.read())
    except (OSError, SyntaxError, ValueError):
        return None


def _assignments_of(qualified: str) -> list[str]:
    """The module-level statements that assign ``module:NAME`` (or
    ``module:Class.attr``: the class's), normalised, in source order."""
    import ast

    owner, _, name = qualified.partition(":")
    module = sys.modules.get(owner)
    file = getattr(module, "__file__", None)
    if not file or not name:
        return []
    try:
        tree = _module_tree(file, os.stat(file).st_mtime_ns)
    except OSError:
        return []
    if tree is None:
        return []
    head = name.split(".")[0]
    found = []
    for statement in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(statement, ast.Assign):
            targets = list(statement.targets)
        elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
            targets = [statement.target]
        elif isinstance(statement, ast.ClassDef) and statement.name == head:
            found.append(ast.dump(statement, include_attributes=False))
            continue
        names = {node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)}
        if head in names:
            found.append(ast.dump(statement, include_attributes=False))
    return found


def _memoized(obj: Any) -> Any:
    """The function a HitSave ``@memo`` wrapper wraps (as given: a function,
    a bound method, a partial), or ``None``."""
    if not _MEMO_FUNCTION:
        from hitsave._memo import MemoFunction

        _MEMO_FUNCTION.append(MemoFunction)
    return obj._fn if isinstance(obj, _MEMO_FUNCTION[0]) else None


_MEMO_FUNCTION: list[type] = []  # `_memo.MemoFunction`, imported at first use (`_memo` imports this module)


def _qualified_type(kind: Any) -> str:
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', repr(kind))}"


def _member_summaries(cls: type, safe: bool = False) -> list[Any]:
    """What the methods a class defines run, by attribute name."""
    return sorted(
        (
            (attribute, _code_summary(function.__code__, safe))
            for attribute, member in vars(cls).items()
            for function in _member_functions(member)
            if function.__code__.co_qualname.startswith(cls.__qualname__ + ".")
        ),
        key=operator.itemgetter(0),
    )


def _member_functions(member: Any) -> list[types.FunctionType]:
    """The functions a class attribute runs: a method, the function inside a
    staticmethod, classmethod, cached_property or partialmethod, a property's
    getter, setter and deleter."""
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    if isinstance(member, property):
        return [f for f in (member.fget, member.fset, member.fdel) if isinstance(f, types.FunctionType)]
    if isinstance(member, (functools.cached_property, functools.partialmethod)):
        member = member.func
    return [member] if isinstance(member, types.FunctionType) else []


def _safe_value(value: Any) -> Any:
    try:
        _native.value_digest(value)
        return value
    except _native.HitSaveError:
        return ["opaque", type(value).__qualname__]


def graph_of(obj: Any) -> tuple[str, list[tuple[str, str, str, list[int]]]]:
    """``(root name, nodes)`` of the dependency graph of a function or class."""
    root, nodes, _ = graph_and_watched(obj)
    return root, nodes


# Graphs by function object, reused while what they read is unchanged: memo()
# applied again to one function (inside a request handler) does not analyse
# it again.
_GRAPHS: "weakref.WeakKeyDictionary[Any, tuple[str, list[tuple[str, str, str, list[int]]], Watched]]" = weakref.WeakKeyDictionary()


def graph_and_watched(obj: Any, rebuild: bool = False) -> tuple[str, list[tuple[str, str, str, list[int]]], Watched]:
    """:func:`graph_of`, and what :meth:`Watched.current` checks before the
    graph is used again (module-level values and closure cells it read);
    `rebuild` builds it again although those checks hold (a value the
    checks cannot see whole changed: :meth:`Watched.deep_current`)."""
    try:
        known = _GRAPHS.get(obj)
    except TypeError:  # not weakly referenceable
        known = None
    if known is not None and not rebuild and known[2].current():
        return known
    found = _graph_and_watched(obj)
    if known is not None:
        # Something the graph read changed in this process: a `@lru_cache`
        # helper of it may hold a value computed from before the change, which
        # the call would return and store under the new fingerprint. Cleared.
        for cache in {id(cache): cache for cache in known[2].caches + found[2].caches}.values():
            cache.cache_clear()
    try:
        _GRAPHS[obj] = found
    except TypeError:
        pass
    return found


_ANALYSING = threading.local()


def _graph_and_watched(obj: Any) -> tuple[str, list[tuple[str, str, str, list[int]]], Watched]:
    # A value met while analysing `obj` may name `obj` itself (an instance of
    # a class stored on the class): that value cannot be fingerprinted by code
    # still being read, so it is refused there, and counts by its type.
    analysing = _ANALYSING.__dict__.setdefault("ids", set())
    if id(obj) in analysing:
        raise TypeError(f"{obj!r} is being analysed")
    analysing.add(id(obj))
    try:
        return _build_graph(obj)
    finally:
        analysing.discard(id(obj))


def _build_graph(obj: Any) -> tuple[str, list[tuple[str, str, str, list[int]]], Watched]:
    builder = _GraphBuilder()
    # A callable instance (np.vectorize(…), a project class's instance) has no
    # qualified name of its own: it is named by its type and counts by value.
    hint = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or f"{type(obj).__module__}.{type(obj).__qualname__}"
    root = builder.visit(obj, hint)
    if root is None:
        raise TypeError(f"{obj!r} has no code to fingerprint")
    builder.files_named_for_readers()
    builder.watched.files_in_key = builder.reads_files or builder.writes_files
    if _FACTS_ADDED:
        save_facts()
    return builder.nodes[root][1], builder.nodes, builder.watched.freeze()
