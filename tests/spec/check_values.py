#!/usr/bin/env python3
"""An independent implementation of docs/spec/values.md and docs/spec/keys.md,
written from the documents alone, checked against tests/vectors.

If this disagrees with the vectors, either the spec is not precise enough to
implement from or the Rust core drifted from it. Prints one line per file and
a closing `N passed, N failed` line; exits non-zero on any failure.
"""

import json
import struct
import sys
from pathlib import Path

from blake3 import blake3

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
MAX_DEPTH = 256
DTYPES = {
    "bool": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint8": 1, "uint16": 2, "uint32": 4,
    "uint64": 8, "float16": 2, "float32": 4, "float64": 8, "complex64": 8, "complex128": 16,
}
KIND_PREFIX = {"value": "val", "key": "key", "code": "code", "blob": "blob"}
KIND_TAG = {"val": 1, "key": 2, "code": 3, "blob": 4}
NODE_TAG = {"function": 1, "class": 2, "constant": 3, "package": 4, "module": 5}


class SpecError(Exception):
    def __init__(self, code, path):
        super().__init__(code)
        self.code, self.path = code, path


def u64be(n):
    return struct.pack(">Q", n)


def sized(data):
    return u64be(len(data)) + data


def canonical_int(value):
    if value == 0:
        return b"\x03" + struct.pack(">I", 0)
    length = 1
    while not (-(1 << (8 * length - 1)) <= value < (1 << (8 * length - 1))):
        length += 1
    return b"\x03" + struct.pack(">I", length) + value.to_bytes(length, "big", signed=True)


def canonical_float(bits):
    value = struct.unpack("<d", struct.pack("<Q", bits))[0]
    if value != value:
        return b"\x04" + bytes.fromhex("7ff8000000000000")
    return b"\x04" + struct.pack(">Q", bits)


class Reader:
    def __init__(self, data):
        self.data, self.pos, self.path = data, 0, []

    def fail(self, code):
        raise SpecError(code, "".join(self.path))

    def take(self, n):
        if self.pos + n > len(self.data):
            self.fail("malformed_stream")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def text(self, n):
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            self.fail("invalid_utf8")

    def count(self):
        n = self.u32()
        if n > len(self.data) - self.pos:
            self.fail("malformed_stream")
        return n

    def key_label(self, at, entry):
        token = self.data[at]
        if token == 0x06:
            n = struct.unpack("<I", self.data[at + 1:at + 5])[0]
            return json.dumps(self.data[at + 5:at + 5 + n].decode("utf-8"), ensure_ascii=False)
        if token == 0x03:
            return str(struct.unpack("<q", self.data[at + 1:at + 9])[0])
        return f"#{entry}"

    def value(self):
        if len(self.path) >= MAX_DEPTH:
            self.fail("too_deep")
        token = self.u8()
        if token == 0x00:
            return b"\x00"
        if token in (0x01, 0x02):
            return bytes([token])
        if token == 0x03:
            return canonical_int(struct.unpack("<q", self.take(8))[0])
        if token == 0x04:
            sign = self.u8()
            if sign > 1:
                self.fail("malformed_stream")
            magnitude = int.from_bytes(self.take(self.u32()), "little")
            return canonical_int(-magnitude if sign else magnitude)
        if token == 0x05:
            return canonical_float(self.u64())
        if token == 0x06:
            return b"\x05" + sized(self.text(self.u32()).encode())
        if token == 0x12:
            name = self.text(self.u32())
            if not name:
                self.fail("malformed_stream")
            return b"\x0f" + sized(name.encode()) + self.value()
        if token == 0x07:
            data = self.take(self.u32())
            return b"\x06" + u64be(len(data)) + blake3(data).digest()
        if token in (0x08, 0x0F):
            length = self.u64()
            return (b"\x06" if token == 0x08 else b"\x0c") + u64be(length) + self.take(32)
        if token == 0x09:
            out = [b"\x07", u64be(n := self.count())]
            for i in range(n):
                self.path.append(f"[{i}]")
                out.append(self.value())
                self.path.pop()
            return b"".join(out)
        if token == 0x0A:
            n = self.count()
            entries = []
            for i in range(n):
                at = self.pos
                self.path.append(f"{{key #{i}}}")
                key = self.value()
                self.path[-1] = f"[{self.key_label(at, i)}]"
                entries.append((key, self.value()))
                self.path.pop()
            if len({key for key, _ in entries}) != len(entries):
                self.fail("duplicate_key")
            return b"\x08" + u64be(n) + b"".join(k + v for k, v in entries)
        if token == 0x0B:
            n = self.count()
            members = set()
            for i in range(n):
                self.path.append(f"{{member #{i}}}")
                members.add(self.value())
                self.path.pop()
            return b"\x09" + u64be(len(members)) + b"".join(sorted(members))
        if token == 0x0C:
            name = self.text(self.u32())
            n = self.count()
            fields = []
            for _ in range(n):
                field = self.text(self.u32())
                self.path.append("." + field)
                fields.append((field.encode(), self.value()))
                self.path.pop()
            fields.sort(key=lambda f: f[0])
            if any(a[0] == b[0] for a, b in zip(fields, fields[1:])):
                self.fail("duplicate_key")
            return b"\x0a" + sized(name.encode()) + u64be(n) + b"".join(sized(f) + v for f, v in fields)
        if token in (0x0D, 0x0E):
            dtype = self.text(self.u8())
            if dtype not in DTYPES:
                self.fail("invalid_array")
            dims = [self.u64() for _ in range(self.u8())]
            length = self.u64()
            items = 1
            for dim in dims:
                items *= dim
            if items * DTYPES[dtype] != length:
                self.fail("invalid_array")
            digest = blake3(self.take(length)).digest() if token == 0x0D else self.take(32)
            return (b"\x0b" + sized(dtype.encode()) + u64be(len(dims)) + b"".join(u64be(d) for d in dims)
                    + u64be(length) + digest)
        if token == 0x10:
            version = self.u8()
            fingerprint = self.take(32)
            if version != 2:
                self.fail("invalid_digest")
            return b"\x0d" + bytes([version]) + fingerprint
        if token == 0x7F:
            self.take(self.u32())
            self.fail("unhashable_value")
        self.pos -= 1
        self.fail("malformed_stream")


def canonical(stream):
    reader = Reader(stream)
    out = reader.value()
    if reader.pos != len(stream):
        reader.fail("malformed_stream")
    return out


def derive(context, data):
    return blake3(data, derive_key_context=context).digest()


def value_digest(canonical_bytes):
    return "val2_" + derive("hitsave 2026-12 value v2", canonical_bytes).hex()


def parse_digest(text):
    head, hex_part = text.split("_")
    for prefix in ("code", "blob", "val", "key"):
        if head.startswith(prefix):
            return prefix, int(head[len(prefix):]), bytes.fromhex(hex_part)
    raise ValueError(text)


def key_digest(identity, arguments):
    kind, version, args = parse_digest(arguments)
    if (kind, version) != ("val", 2):
        raise SpecError("invalid_digest", None)
    if "fingerprint" in identity:
        kind, version, fingerprint = parse_digest(identity["fingerprint"])
        if (kind, version) != ("code", 2):
            raise SpecError("invalid_digest", None)
        material = b"\x01" + fingerprint + args
    else:
        name, version_text = identity["name"].encode(), identity["version"].encode()
        for part in (identity["name"], identity["version"]):
            if not part or len(part.encode()) > 256 or any(c < " " or "\x7f" <= c <= "\x9f" for c in part):
                raise SpecError("invalid_identity", None)
        material = b"\x02" + sized(name) + sized(version_text) + args
    return "key2_" + derive("hitsave 2026-12 key v2", material).hex()


def sccs(nodes):
    """Tarjan's strongly connected components, dependencies first."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in nodes[v]["deps"]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(component)

    for v in range(len(nodes)):
        if v not in index:
            visit(v)
    return out


def fingerprints(nodes):
    names = [n["name"] for n in nodes]
    if len(set(names)) != len(names) or any(d >= len(nodes) for n in nodes for d in n["deps"]):
        raise SpecError("invalid_graph", None)
    result, component_of = {}, {}
    components = sccs(nodes)
    for number, component in enumerate(components):
        for member in component:
            component_of[member] = number
    for number, component in enumerate(components):
        members = sorted(component, key=lambda m: nodes[m]["name"].encode())
        material = [b"scc", u64be(len(members))]
        for m in members:
            node = nodes[m]
            kind, version, content = parse_digest(node["content"])
            internal = sorted({nodes[d]["name"].encode() for d in node["deps"] if component_of[d] == number})
            external = sorted({result[d] for d in node["deps"] if component_of[d] != number})
            material += [bytes([NODE_TAG[node["kind"]]]), sized(node["name"].encode()),
                         bytes([KIND_TAG[kind], version]), content, u64be(len(internal))]
            material += [sized(name) for name in internal] + [u64be(len(external))] + external
        scc = derive("hitsave 2026-12 code v2", b"".join(material))
        for m in members:
            result[m] = derive("hitsave 2026-12 code v2", b"node" + scc + sized(nodes[m]["name"].encode()))
    return ["code2_" + result[i].hex() for i in range(len(nodes))]


def main():
    passed, failed = 0, 0

    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL", what)

    values = json.loads((VECTORS / "values.json").read_text())
    for case in values["cases"]:
        out = canonical(bytes.fromhex(case["stream"]))
        check(out.hex() == case["canonical"], f"values: canonical bytes of {case['name']}")
        check(value_digest(out) == case["digest"], f"values: digest of {case['name']}")
    for case in values["errors"]:
        try:
            canonical(bytes.fromhex(case["stream"]))
            check(False, f"values: {case['name']} must fail")
        except SpecError as error:
            check((error.code, error.path) == (case["code"], case["path"]),
                  f"values: {case['name']}: got {error.code} at {error.path!r}")
    print(f"values.json: {len(values['cases'])} cases, {len(values['errors'])} errors")

    keys = json.loads((VECTORS / "keys.json").read_text())
    for case in keys["cases"]:
        check(key_digest(case["identity"], case["arguments_digest"]) == case["key"], f"keys: {case['name']}")
    for case in keys["errors"]:
        try:
            key_digest(case["identity"], case["arguments_digest"])
            check(False, f"keys: {case['name']} must fail")
        except SpecError as error:
            check(error.code == case["code"], f"keys: {case['name']}: got {error.code}")
    print(f"keys.json: {len(keys['cases'])} cases, {len(keys['errors'])} errors")

    graphs = json.loads((VECTORS / "graphs.json").read_text())
    for case in graphs["fingerprints"]:
        got = fingerprints(case["nodes"])
        want = [case["fingerprints"][node["name"]] for node in case["nodes"]]
        check(got == want, f"graphs: {case['name']}")
    for case in graphs["edits"]:
        before, after = fingerprints(case["before"]), fingerprints(case["after"])
        changed = sorted(n["name"] for n, a, b in zip(case["before"], before, after) if a != b)
        check(changed == case["changed"], f"graphs: {case['name']}")
    for case in graphs["errors"]:
        try:
            fingerprints(case["nodes"])
            check(False, f"graphs: {case['name']} must fail")
        except SpecError as error:
            check(error.code == case["code"], f"graphs: {case['name']}")
    print(f"graphs.json: {len(graphs['fingerprints'])} graphs, {len(graphs['edits'])} edits")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
