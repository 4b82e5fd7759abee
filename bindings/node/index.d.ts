// Types for the `hitsave` package (CommonJS `index.js` and ESM `index.mjs`).

/** Options of {@link memo}. */
interface MemoCommonOptions {
  /** Parameters left out of the key, by name or position. */
  ignore?: Array<string | number>;
  /** Use the local store (default `true`); `false` always computes. */
  local?: boolean;
  /** Use the HitSave cloud when one is configured (default `true`); `false` keeps this function's results local. */
  cloud?: boolean;
  /**
   * How results are stored: `'portable'` (read by every language; a result
   * without an exact portable form is returned but not stored) or `'v8'`
   * (Node only; class instances come back as plain objects). Default:
   * portable when exact, else v8 when v8 brings the result back as it was
   * (a result holding a class instance is returned but not stored, with a
   * `HitSaveNotStoredWarning`).
   */
  codec?: 'portable' | 'v8';
  /**
   * The function returns a promise, so hits are returned as promises too.
   * Default: `true` for `async` functions.
   */
  async?: boolean;
  /** A store directory other than the configured one (`HITSAVE_CACHE_DIR`). */
  cacheDir?: string;
}

/**
 * Options of `memo()`. An explicit identity takes both `name` and
 * `version`, or neither (the code's fingerprint is the identity then).
 */
export type MemoOptions = MemoCommonOptions &
  (
    | {
        /**
         * Explicit identity, with `version`: the function is known by this name
         * instead of a fingerprint of its code. The same name and version in
         * Python and Node share results.
         */
        name: string;
        /** Explicit identity's version: change it when the function's behaviour changes. */
        version: string | number;
      }
    | { name?: undefined; version?: undefined }
  );

/** Returned by `.lookup()` when nothing is stored for the arguments. */
export declare const MISS: unique symbol;

/** A memoized function: call it like the original. */
export type MemoFunction<F extends (...args: any[]) => any> = F & {
  /** The function's name in the store (`hitsave ls`). */
  readonly functionName: string;
  /** The eval key (`key2_…`) these arguments have. */
  key(...args: Parameters<F>): string;
  /** The stored result for these arguments, or {@link MISS}, without running the function. */
  lookup(...args: Parameters<F>): Awaited<ReturnType<F>> | typeof MISS;
  /** Removes this function's stored results; returns how many. */
  clear(): number;
  /** `'hit'`, or why these arguments miss (which dependencies changed since results were stored). */
  why(...args: Parameters<F>): string;
  /** Fetches this function's cloud results in bulk, in parallel, off the JS thread; resolves to how many. */
  download(): Promise<number>;
  /** The dependency graph the fingerprint covers (automatic identity), or `null`. */
  graph(): { root: string; fingerprint: string; nodes: Array<[string, string, string, number[]]> } | null;
};

/**
 * Save `fn`'s results on disk, keyed by its arguments and its code: every
 * function, class and constant it reaches in the project's sources, and the
 * versions of the packages it imports. Sync functions stay sync; async
 * functions return promises and concurrent calls with one key share one run.
 */
export declare function memo<F extends (...args: any[]) => any>(fn: F, options?: MemoOptions): MemoFunction<F>;

/** Every HitSave error. */
export declare class HitSaveError extends Error {
  constructor(message: string, code?: string, path?: string | null);
  /** A stable snake_case code (docs/errors.md), the same in Python and Rust. */
  readonly code: string;
  /** Where in the arguments the error arose (`args[1]["x"]`), when it is about one place. */
  readonly path: string | null;
}

/** A file's contents as an argument: the key changes when the file does. */
export declare class File {
  constructor(path: string);
  readonly path: string;
}

export type DType =
  | 'bool' | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64'
  | 'float16' | 'float32' | 'float64' | 'complex64' | 'complex128';

/** A numeric array with a dtype and a C-order shape: numpy's arrays in Node. */
/** The TypedArrays that hold an NDArray's data (a DataView is not one: it has no element type). */
export type NDArrayData =
  | Int8Array | Uint8Array | Uint8ClampedArray | Int16Array | Uint16Array | Int32Array | Uint32Array
  | Float32Array | Float64Array | BigInt64Array | BigUint64Array;

export declare class NDArray {
  /** Throws a `TypeError` when the data's byte length is not the shape's item count times the dtype's size. */
  constructor(dtype: DType, shape: number[], data: NDArrayData);
  readonly dtype: DType;
  readonly shape: number[];
  readonly data: NDArrayData;
}

/** The `val2` digest of a value: what it contributes to a key. */
export declare function valueDigest(value: unknown): string;
/** Writes buffered hit counts now (they are also written in the background). */
export declare function flush(): void;
/** Every stable error code, in the order of docs/errors.md. */
export declare function errorCodes(): string[];
/** The BLAKE3 of the embedded core component (the same in every binding). */
export declare function componentDigest(): string;
/** The configured mode and store directory. */
export declare function configuration(): { mode: 'off' | 'local' | 'cloud' | 'read-only'; cacheDir: string };
