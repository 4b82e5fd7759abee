'use strict';
// The vector notation (tests/vectors) as JavaScript values.
const fs = require('node:fs');
const path = require('node:path');
const hitsave = require('..');

class NotRepresentable extends Error {}

const TYPED = {
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array, int32: Int32Array,
  uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array, float32: Float32Array, float64: Float64Array,
};
const CARRIER = { bool: Uint8Array, float16: Uint16Array, complex64: Float32Array, complex128: Float64Array };

function fromNotation(node, dir) {
  if (node === null || typeof node === 'boolean' || typeof node === 'string') return node;
  if (typeof node === 'number') {
    // JSON.parse rounds integers beyond 2^53; the notation's exact value is not known here.
    if (Number.isInteger(node) && !Number.isSafeInteger(node)) throw new NotRepresentable('a rounded integer');
    return node;
  }
  if (Array.isArray(node)) return node.map((item) => fromNotation(item, dir));
  if ('record' in node) {
    const names = node.fields.map(([name]) => name);
    if (new Set(names).size !== names.length) throw new NotRepresentable('repeated field');
    const Class = { [node.record]: class {} }[node.record];
    const instance = new Class();
    for (const [name, value] of node.fields) instance[name] = fromNotation(value, dir);
    return instance;
  }
  const [[tag, body]] = Object.entries(node);
  switch (tag) {
    case 'int':
    case 'bigint':
      return BigInt(body);
    case 'float':
      return body === 'inf' ? Infinity : body === '-inf' ? -Infinity : body === 'nan' ? NaN : Number(body);
    case 'float_bits': {
      const view = new DataView(new ArrayBuffer(8));
      Buffer.from(body, 'hex').forEach((byte, index) => view.setUint8(index, byte));
      return view.getFloat64(0, false);
    }
    case 'bytes':
      return Buffer.from(body, 'hex');
    case 'tuple':
      return body.map((item) => fromNotation(item, dir));
    case 'map': {
      const map = new Map(body.map(([k, v]) => [fromNotation(k, dir), fromNotation(v, dir)]));
      if (map.size !== body.length) throw new NotRepresentable('keys equal in JavaScript');
      return map;
    }
    case 'set': {
      const set = new Set(body.map((item) => fromNotation(item, dir)));
      if (set.size !== body.length) throw new NotRepresentable('members equal in JavaScript');
      return set;
    }
    case 'array': {
      const bytes = Buffer.from(body.data, 'hex');
      const Type = TYPED[body.dtype] || CARRIER[body.dtype];
      if (!Type || bytes.length % Type.BYTES_PER_ELEMENT) throw new NotRepresentable('array data that fits no TypedArray');
      const buffer = new ArrayBuffer(bytes.length);
      new Uint8Array(buffer).set(bytes);
      const data = new Type(buffer);
      if (body.shape.length === 1 && TYPED[body.dtype] && body.dtype !== 'uint8') return data;
      if (body.shape.length === 1 && body.dtype === 'uint8') return data;
      return new hitsave.NDArray(body.dtype, body.shape, data);
    }
    case 'file': {
      const file = path.join(dir, `file-${fs.readdirSync(dir).length}`);
      fs.writeFileSync(file, Buffer.from(body, 'hex'));
      return new hitsave.File(file);
    }
    case 'unhashable':
      return new WeakMap();
    default:
      throw new NotRepresentable(tag); // path, function: no JavaScript value stands for them
  }
}

module.exports = { fromNotation, NotRepresentable };
