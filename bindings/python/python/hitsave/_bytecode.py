"""What code objects read, from their bytecode (for `hitsave._code`).

A function's first call reads every function it reaches; `dis` builds an
object per instruction (about 80 µs for a small function), so the bytecode
is read natively (``bytecode.rs``). How each instruction stores its argument
differs between Python versions, so the native reader knows nothing of its
own: its tables are learned from :mod:`dis` on probe code, and used only when
the reader then reads the probe exactly as :mod:`dis` does (else :mod:`dis`
reads, ten times slower). The learned tables of an interpreter are kept in
the store (``analysis/bytecode-*.bin``, keyed by the exact interpreter
build), so a fresh process neither imports :mod:`dis` nor learns again.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

from hitsave import _native


def write_atomically(path: str, data: bytes) -> None:
    """Writes a file of the store's analysis directory whole or not at all
    (a read-only store: computed again next time)."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except OSError:
        pass


def nested_codes(code: types.CodeType) -> list[types.CodeType]:
    """`code` and every code object nested in it, depth first, in order."""
    out = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out.extend(nested_codes(const))
    return out


def references(code: types.CodeType) -> list[tuple[Any, ...]]:
    """``("global", name, [attr, …])`` and ``("import", module, level,
    [name, …])`` for `code` and its nested code, in order: read natively
    when this Python's bytecode layout was learned (`_calibrate`), else from
    :mod:`dis`."""
    native = reader()
    if native is not None:
        return native.references(code)
    found: list[tuple[Any, ...]] = []
    for nested in nested_codes(code):
        found.extend(_references_in(_instructions_by_dis(nested)))
    return found


def _references_in(instructions: list[tuple[str, Any]]) -> list[tuple[Any, ...]]:
    """`_references` of one code object's instructions (the rule the native
    reader follows)."""
    found: list[tuple[Any, ...]] = []
    for index, (opname, argval) in enumerate(instructions):
        if opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            attrs = []
            follow = index + 1
            while follow < len(instructions) and instructions[follow][0] in ("LOAD_ATTR", "LOAD_METHOD"):
                attrs.append(instructions[follow][1])
                follow += 1
            found.append(("global", argval, attrs))
        elif opname == "IMPORT_NAME":
            before = instructions[index - 2] if index >= 2 else ("", None)
            level = before[1] if before[0] in ("LOAD_CONST", "LOAD_SMALL_INT") else 0
            taken = []
            follow = index + 1
            while follow < len(instructions) and instructions[follow][0] in _TAKES:
                if instructions[follow][0] == "IMPORT_FROM":
                    taken.append(instructions[follow][1])
                follow += 1
            found.append(("import", argval, level, taken))
    return found


_TAKES = ("IMPORT_FROM", "STORE_FAST", "STORE_NAME", "STORE_DEREF", "STORE_GLOBAL")


# The instructions `_referenced` reads, and how their argument names a value.
_SCANNED = {
    "IMPORT_NAME": "name", "IMPORT_FROM": "name", "LOAD_GLOBAL": "name", "LOAD_NAME": "name",
    "LOAD_ATTR": "name", "LOAD_METHOD": "name", "LOAD_CONST": "const", "LOAD_SMALL_INT": "int",
}


def _instructions_by_dis(code: types.CodeType) -> list[tuple[str, Any]]:
    """``(opname, argval)`` of each instruction, as :mod:`dis` reads them
    (``EXTENDED_ARG`` prefixes left out; ``argval`` only for `_SCANNED`)."""
    import dis

    return [
        (i.opname, i.argval if i.opname in _SCANNED else None)
        for i in dis.get_instructions(code)
        if i.opname != "EXTENDED_ARG"
    ]


def _calibrate() -> dict[int, tuple[str, str, int]] | None:
    """How this Python's bytecode stores the scanned instructions' arguments
    (``LOAD_GLOBAL``'s name index is shifted by a flag bit since 3.11,
    ``LOAD_ATTR``'s since 3.12), learned from :mod:`dis` on probe code;
    ``None`` when the probe cannot tell (then `dis` itself reads, ten times
    slower)."""
    def probe():  # pragma: no cover - never called, only read
        import os.path as p
        from json import dumps, loads as ld
        from . import sibling  # type: ignore[attr-defined]
        global G
        G = PROBE_A.attribute.method(p, dumps, ld, sibling, 10, 1000, "s", (1, 2))
        H = PROBE_B.b.c(PROBE_C.d, PROBE_D.e.f(), PROBE_E, G.g)

        class Probe:
            attribute = PROBE_H.j(__name__)

        return [PROBE_F.x for PROBE_A in (1, 2)], lambda: PROBE_G.h.i(H, PROBE_A), Probe

    import dis

    table: dict[int, tuple[str, str, int]] = {}
    try:
        codes = nested_codes(probe.__code__)
        samples: dict[int, tuple[str, list[tuple[types.CodeType, int, Any]]]] = {}
        for code in codes:
            raw = _raw_ops(code)
            by_dis = [i for i in dis.get_instructions(code) if i.opname != "EXTENDED_ARG"]
            if len(raw) != len(by_dis):
                return None
            for (op, arg), instruction in zip(raw, by_dis):
                if instruction.opname in _SCANNED:
                    samples.setdefault(op, (instruction.opname, []))[1].append((code, arg, instruction.argval))
        for op, (opname, seen) in samples.items():
            kind = _SCANNED[opname]
            if kind != "name":
                table[op] = (opname, kind, 0)
                continue
            fits = [
                shift
                for shift in (0, 1, 2)
                if all((arg >> shift) < len(code.co_names) and code.co_names[arg >> shift] == value for code, arg, value in seen)
            ]
            if len(fits) != 1:
                return None  # the probe cannot tell: read with dis
            table[op] = (opname, kind, fits[0])
        calibrated = {opname for opname, _, _ in table.values()}
        if any(dis.opmap.get(opname, 256) < 256 and opname not in calibrated for opname in _SCANNED):
            return None  # an instruction the probe did not show
    except Exception:
        return None
    return table


def _raw_ops(code: types.CodeType) -> list[tuple[int, int]]:
    """``(opcode, argument)`` of each instruction: ``EXTENDED_ARG`` folded
    into the argument, inline ``CACHE`` entries skipped."""
    import dis

    extended_arg, cache = dis.opmap["EXTENDED_ARG"], dis.opmap.get("CACHE", -1)
    raw = code.co_code
    ops = []
    extended = 0
    for offset in range(0, len(raw), 2):
        op = raw[offset]
        arg = raw[offset + 1] | extended
        if op == extended_arg:
            extended = arg << 8
            continue
        extended = 0
        if op == cache:
            continue
        ops.append((op, arg))
    return ops


def _cache_entries() -> list[int]:
    """How many inline ``CACHE`` entries follow each opcode (the table
    :mod:`dis` itself skips them by), or none known."""
    import dis

    known = getattr(dis, "_inline_cache_entries", None)
    out = [0] * 256
    try:
        for op in range(256):
            if isinstance(known, dict):
                out[op] = int(known.get(dis.opname[op], known.get(op, 0)))  # type: ignore[call-overload]
            elif known is not None:
                out[op] = int(known[op])
    except Exception:
        return [0] * 256
    return out


_READER: list[Any] = []

# The reader's kinds (`bytecode.rs`).
_KINDS = {
    "LOAD_GLOBAL": 1, "LOAD_NAME": 1, "LOAD_ATTR": 2, "LOAD_METHOD": 2, "IMPORT_NAME": 3, "IMPORT_FROM": 4,
    "LOAD_CONST": 5, "LOAD_SMALL_INT": 6, "STORE_FAST": 7, "STORE_NAME": 7, "STORE_DEREF": 7, "STORE_GLOBAL": 7,
}


def reader() -> Any:
    """The native bytecode reader for this Python, or ``None`` (read with :mod:`dis`)."""
    if not _READER:
        _READER.append(_load_or_make_reader())
    return _READER[0]


def analysis_file(kind: str, key: Any, suffix: str) -> str | None:
    """Where the store's analysis directory keeps the file `kind` for `key`
    (what its contents were derived from, digested by the core: another key
    is another file), `<kind>-<digest>.<suffix>`; None without a store."""
    from hitsave import _memo

    store = _memo._open_store()
    if store is None:
        return None
    digest = _native.value_digest(key).split("_", 1)[1][:32]
    return os.path.join(store.path, "analysis", f"{kind}-{digest}.{suffix}")


def _tables_path() -> str | None:
    """Where the learned tables of this exact interpreter are kept in the
    store, so a fresh process neither imports :mod:`dis` nor learns again."""
    build = [sys.version, sys.implementation.name, sys.implementation.cache_tag, sys.hexversion, _FORMAT]
    return analysis_file("bytecode", build, "bin")


# The tables' layout in the file (three rows of 256 bytes: kinds, shifts,
# cache entries): a new layout is a new file.
_FORMAT = 1


def _load_or_make_reader() -> Any:
    path = _tables_path()
    if path is not None:
        try:
            with open(path, "rb") as file:
                data = file.read()
            if len(data) == 3 * 256:
                return _native.BytecodeReader(list(data[:256]), list(data[256:512]), list(data[512:]), types.CodeType)
        except (OSError, ValueError, TypeError):
            pass
    made = _make_reader()
    if made is None:
        return None
    native, tables = made
    if path is not None:
        rows = tables["kinds"] + tables["shifts"] + tables["caches"]
        if all(0 <= value < 256 for value in rows):
            write_atomically(path, bytes(rows))
    return native


def _make_reader() -> tuple[Any, dict[str, list[int]]] | None:
    import dis

    table = _calibrate()
    if table is None:
        return None
    kinds, shifts = [0] * 256, [0] * 256
    for op, name in enumerate(dis.opname):
        if op < 256 and name in _KINDS and _SCANNED.get(name) is None:
            kinds[op] = _KINDS[name]  # STORE_*: only their kind matters
    for op, (name, _, shift) in table.items():
        kinds[op], shifts[op] = _KINDS[name], shift
    kinds[dis.opmap["EXTENDED_ARG"]] = 8
    if 0 <= dis.opmap.get("CACHE", -1) < 256:
        kinds[dis.opmap["CACHE"]] = 9
    tables = {"kinds": kinds, "shifts": shifts, "caches": _cache_entries()}
    try:
        native = _native.BytecodeReader(tables["kinds"], tables["shifts"], tables["caches"], types.CodeType)
        # Used only when it reads the probe exactly as `dis` does.
        for code in nested_codes(_calibrate.__code__):
            if [tuple(r) for r in native.references(code)] != [tuple(r) for r in references_by_dis(code)]:
                return None
    except Exception:
        return None
    return native, tables


def references_by_dis(code: types.CodeType) -> list[tuple[Any, ...]]:
    return [r for nested in nested_codes(code) for r in _references_in(_instructions_by_dis(nested))]
