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
  // A class instance is its class's code and a record: no notation record is one.
  if ('record' in node) throw new NotRepresentable('record');
  if ('typed' in node) return typed(node.typed, node.value, dir);
  const [[tag, body]] = Object.entries(node);
  switch (tag) {
    case 'int':
    case 'bigint': {
      // A JavaScript number is an integer only while it is a safe integer (a bigint is typed js:bigint).
      const number = Number(body);
      if (!Number.isSafeInteger(number)) throw new NotRepresentable('an integer beyond 2^53');
      return number;
    }
    case 'float':
    case 'float_bits': {
      let number;
      if (tag === 'float') {
        number = body === 'inf' ? Infinity : body === '-inf' ? -Infinity : body === 'nan' ? NaN : Number(body);
      } else {
        const view = new DataView(new ArrayBuffer(8));
        Buffer.from(body, 'hex').forEach((byte, index) => view.setUint8(index, byte));
        number = view.getFloat64(0, false);
      }
      // A float a safe integer equals is that integer in JavaScript.
      if (Number.isSafeInteger(number) && !Object.is(number, -0)) throw new NotRepresentable('an integral float');
      return number;
    }
    case 'bytes':
      return Buffer.from(body, 'hex');
    case 'map': {
      // A plain object: string keys, in an order JavaScript keeps (no array-index keys, which it sorts first).
      const object = {};
      for (const [k, v] of body) {
        if (typeof k !== 'string' || /^(0|[1-9][0-9]*)$/.test(k)) throw new NotRepresentable('a key a plain object cannot keep in order');
        object[k] = fromNotation(v, dir);
      }
      if (Object.keys(object).length !== body.length) throw new NotRepresentable('repeated key');
      return object;
    }
    case 'set':
      throw new NotRepresentable('set'); // a JavaScript Set keeps its order: typed js:Set
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

function typed(name, value, dir) {
  switch (name) {
    case 'js:bigint':
      return BigInt(typeof value === 'number' ? value : value.int ?? value.bigint);
    case 'js:Date':
      return new Date(Number(value.float ?? value));
    case 'js:undefined':
      return undefined;
    case 'js:Map':
      return new Map(value.map.map(([k, v]) => [fromNotation(k, dir), fromNotation(v, dir)]));
    case 'js:Set':
      return new Set(value.map((item) => fromNotation(item, dir)));
    default:
      throw new NotRepresentable(name);
  }
}

/** `{ value }` for a notation JavaScript can express, `null` for one it cannot. */
function tryNotation(node, dir) {
  try {
    return { value: fromNotation(node, dir) };
  } catch (error) {
    if (error instanceof NotRepresentable) return null;
    throw error;
  }
}

module.exports = { fromNotation, tryNotation, NotRepresentable };
