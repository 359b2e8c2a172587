/**
 * Runtime values of the reference interpreter. Every float dtype (f32, f16, bf16) is held and
 * computed in float64; i32 tensors are Int32Arrays; index lists (canvas positions) are bare
 * Int32Arrays. Data is row-major.
 */
export interface HostTensor {
  readonly shape: number[];
  readonly data: Float64Array;
}

export interface HostInts {
  readonly shape: number[];
  readonly data: Int32Array;
}

export type RuntimeValue = HostTensor | HostInts | Int32Array;

const float32Forms = new WeakMap<HostTensor, Float32Array>();

/**
 * A tensor a float32 backend hands out (hidden states, every layer, for scores that may never read
 * them): held as float32, widened to float64 data only on first read. Compiled consumers take the
 * float32 form itself (float32Of) and skip the round trip.
 */
export function float32Tensor(shape: readonly number[], narrow: Float32Array): HostTensor {
  let wide: Float64Array | undefined;
  const t: HostTensor = {
    shape: [...shape],
    get data() {
      wide ??= new Float64Array(narrow);
      return wide;
    },
  };
  float32Forms.set(t, narrow);
  return t;
}

/** The float32 data a tensor was made from by float32Tensor, if it was. */
export const float32Of = (t: HostTensor): Float32Array | undefined => float32Forms.get(t);

export const isIndexList = (v: RuntimeValue): v is Int32Array => v instanceof Int32Array;
export const isHostTensor = (v: RuntimeValue): v is HostTensor =>
  !(v instanceof Int32Array) && v.data instanceof Float64Array;
export const isHostInts = (v: RuntimeValue): v is HostInts =>
  !(v instanceof Int32Array) && v.data instanceof Int32Array;

export const sizeOf = (shape: readonly number[]): number => shape.reduce((a, d) => a * d, 1);

/** Elements per row (the product of all dimensions but the first). */
export const rowSize = (shape: readonly number[]): number => sizeOf(shape.slice(1));

export const zeros = (shape: readonly number[]): HostTensor => ({
  shape: [...shape],
  data: new Float64Array(sizeOf(shape)),
});

export const filled = (shape: readonly number[], value: number): HostTensor => ({
  shape: [...shape],
  data: new Float64Array(sizeOf(shape)).fill(value),
});

export const fromFlat = (shape: readonly number[], data: ArrayLike<number>): HostTensor => {
  if (data.length !== sizeOf(shape))
    throw new Error(`${data.length} values do not fill [${shape.join(',')}]`);
  return { shape: [...shape], data: Float64Array.from(data) };
};

export const ints = (shape: readonly number[], data: ArrayLike<number>): HostInts => {
  if (data.length !== sizeOf(shape))
    throw new Error(`${data.length} values do not fill [${shape.join(',')}]`);
  return { shape: [...shape], data: Int32Array.from(data) };
};

export type Nested = number | readonly Nested[];

/** A tensor from nested arrays (for tests): `fromNested([[1, 2], [3, 4]])` is f[2,2]. */
export function fromNested(x: Nested): HostTensor {
  const shape: number[] = [];
  for (let cur: Nested = x; Array.isArray(cur); cur = (cur as readonly Nested[])[0] as Nested) {
    shape.push(cur.length);
    if (cur.length === 0) break;
  }
  const flat: number[] = [];
  const walk = (v: Nested, depth: number): void => {
    if (typeof v === 'number') {
      if (depth !== shape.length) throw new Error('ragged nested array');
      flat.push(v);
      return;
    }
    if (v.length !== shape[depth]) throw new Error('ragged nested array');
    for (const e of v) walk(e, depth + 1);
  };
  walk(x, 0);
  return fromFlat(shape, flat);
}

/** Row `i` of a tensor as a view (no copy). */
export const row = (t: HostTensor, i: number): Float64Array => {
  const n = rowSize(t.shape);
  return t.data.subarray(i * n, (i + 1) * n);
};

export const cloneTensor = (t: HostTensor): HostTensor => ({ shape: [...t.shape], data: t.data.slice() });
