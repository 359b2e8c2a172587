/**
 * kv_gemm16 (bf16 and f16 weights, float32 activations and accumulation) against float64
 * references computed from the weights as stored (decoded here, independently of the C), under
 * the derived budget of primitives.test.ts: max |C - ref64| <= 4 max |eager32 - ref64| + 4 2^-24
 * scale, where eager32 is the float32 evaluation of the same products (Math.fround after every
 * operation). The only error the budget allows is float32 accumulation: for bf16 and f16 the
 * reference uses the activations as given; for bf16-dot it uses them rounded to bf16 (the kernel's
 * documented numerics), and a second check bounds that rounding against the unrounded reference.
 *
 * Each code path is forced by a build: native (on an AVX512_BF16 CPU, bf16-dot runs vdpbf16ps),
 * AVX-512 without BF16 (-mno-avx512bf16), AVX2 (-mno-avx512f) and portable C
 * (-mno-avx512f -mno-avx2 -mno-fma); each build reports the path it takes (kv_gemm16_path).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DEFAULT_FLAGS } from '../../../src/backends/cpu/compiler.ts';
import { Dtype16, loadPrimitives, type Primitives } from '../../../src/backends/cpu/primitives.ts';
import { derivedBound, expectClose, f32, maxError, scaleOf } from '../../support/float32.ts';
import { randFloats, rng } from '../../support/random.ts';

// ---------------------------------------------------------------------------------------------
// 16-bit formats, written from the IEEE definitions (not from the C)

function roundHalfEven(x: number): number {
  const fl = Math.floor(x);
  const d = x - fl;
  if (d > 0.5) return fl + 1;
  if (d < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

/** x rounded to nearest even in a binary format with `mant` stored bits and exponents [emin, emax]. */
function roundTo(x: number, mant: number, emin: number, emax: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  let e = Math.max(Math.floor(Math.log2(a)), emin);
  while (e > emin && 2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  const q = 2 ** (e - mant);
  let r = roundHalfEven(a / q) * q;
  if (r > (2 - 2 ** -mant) * 2 ** emax) r = Number.POSITIVE_INFINITY;
  return x < 0 ? -r : r;
}

const toBf16 = (x: number) => roundTo(x, 7, -126, 127);
const toF16 = (x: number) => roundTo(x, 10, -14, 15);

const view = new DataView(new ArrayBuffer(4));

/** Bits of a bf16-representable value (the top half of its float32). */
function bf16Bits(v: number): number {
  if (Number.isNaN(v)) return 0x7fc0;
  view.setFloat32(0, v);
  const u = view.getUint32(0);
  if ((u & 0xffff) !== 0) throw new Error(`${v} is not a bf16 value`);
  return u >>> 16;
}

function bf16Value(bits: number): number {
  view.setUint32(0, (bits & 0xffff) << 16);
  return view.getFloat32(0);
}

/** Bits of an f16-representable value. */
function f16Bits(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === Number.POSITIVE_INFINITY) return sign | 0x7c00;
  if (a < 2 ** -14) {
    const q = a * 2 ** 24;
    if (!Number.isInteger(q)) throw new Error(`${v} is not an f16 value`);
    return sign | q;
  }
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  const m = (a / 2 ** e - 1) * 1024;
  if (!Number.isInteger(m) || e > 15) throw new Error(`${v} is not an f16 value`);
  return sign | ((e + 15) << 10) | m;
}

function f16Value(bits: number): number {
  const s = bits & 0x8000 ? -1 : 1;
  const e = (bits >> 10) & 0x1f;
  const m = bits & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

test('the test formats: rounding, encoding and decoding agree with known values', () => {
  expect(bf16Bits(toBf16(1))).toBe(0x3f80);
  expect(toBf16(1 + 2 ** -8)).toBe(1); // a tie rounds to even
  expect(toBf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6);
  expect(bf16Value(0x0001)).toBe(2 ** -133); // smallest subnormal
  expect(toBf16(3.5e38)).toBe(Number.POSITIVE_INFINITY);
  expect(f16Bits(toF16(65504))).toBe(0x7bff);
  expect(toF16(65519)).toBe(65504);
  expect(toF16(65520)).toBe(Number.POSITIVE_INFINITY);
  expect(f16Value(0x0001)).toBe(2 ** -24);
  expect(f16Value(0x03ff)).toBe(1023 * 2 ** -24);
  expect(f16Bits(toF16(2 ** -25))).toBe(0); // a tie between 0 and the smallest subnormal
  expect(f16Bits(toF16(-(2 ** -24) * 1.5))).toBe(0x8002);
  for (let b = 0; b < 0x7c00; b += 37) {
    expect(f16Bits(f16Value(b))).toBe(b);
    expect(bf16Bits(bf16Value(b))).toBe(b);
  }
});

interface Weights {
  /** Raw bits, [n][k]. */
  bits: Uint16Array;
  /** The values the bits stand for. */
  values: Float64Array;
}

function weightsFrom(values: ArrayLike<number>, dtype: Dtype16): Weights {
  const bits = new Uint16Array(values.length);
  const vals = new Float64Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i] as number;
    const x = dtype === Dtype16.f16 ? toF16(v) : toBf16(v);
    bits[i] = dtype === Dtype16.f16 ? f16Bits(x) : bf16Bits(x);
    vals[i] = dtype === Dtype16.f16 ? f16Value(bits[i] as number) : bf16Value(bits[i] as number);
  }
  return { bits, values: vals };
}

function weightsFromBits(bits: Uint16Array, dtype: Dtype16): Weights {
  const values = Float64Array.from(bits, (b) => (dtype === Dtype16.f16 ? f16Value(b) : bf16Value(b)));
  return { bits, values };
}

// ---------------------------------------------------------------------------------------------
// One GEMM against its references

interface Case {
  m: number;
  n: number;
  k: number;
  lda: number;
  ldc: number;
  a: Float32Array;
  arows: Int32Array | null;
  w: Weights;
  bias: Float32Array | null;
  c0: Float32Array;
  accumulate: boolean;
}

function makeCase(
  seed: number,
  m: number,
  n: number,
  k: number,
  dtype: Dtype16,
  opts: { bias: boolean; indirect: boolean; accumulate: boolean; wAmp?: number; aAmp?: number },
): Case {
  const r = rng(seed);
  const lda = k + (opts.indirect ? 3 : 0);
  const ldc = n + (opts.accumulate ? 2 : 0);
  const aRows = opts.indirect ? m + 5 : m;
  const arows = opts.indirect ? Int32Array.from({ length: m }, () => Math.floor(r() * aRows)) : null;
  return {
    m,
    n,
    k,
    lda,
    ldc,
    a: randFloats(r, aRows * lda, opts.aAmp ?? 1),
    arows,
    w: weightsFrom(randFloats(r, n * k, opts.wAmp ?? 1), dtype),
    bias: opts.bias ? randFloats(r, n) : null,
    c0: randFloats(r, m * ldc),
    accumulate: opts.accumulate,
  };
}

interface Result {
  got: Float64Array;
  /** float64 with the activations as the dtype's numerics read them (bf16-dot: rounded). */
  ref: Float64Array;
  /** float32 eager evaluation of the same products. */
  eager: Float64Array;
  /** float64 and float32 eager with the activations as given, and sum_k |a w| per entry. */
  exact: Float64Array;
  eagerExact: Float64Array;
  absSum: Float64Array;
}

function run(p: Primitives, t: Case, dtype: Dtype16): Result {
  const { m, n, k, lda, ldc, a, arows, w, bias, c0, accumulate } = t;
  const packed = p.packWeight16(n, k, w.bits, dtype);
  expect(packed.length).toBe(p.packedSize16(n, k));
  const c = Float32Array.from(c0);
  p.gemm16(m, n, k, a, lda, arows, packed, dtype, bias, c, ldc, accumulate);
  const roundA = dtype === Dtype16.bf16Dot;
  const got = new Float64Array(m * n);
  const ref = new Float64Array(m * n);
  const eager = new Float64Array(m * n);
  const exact = new Float64Array(m * n);
  const eagerExact = new Float64Array(m * n);
  const absSum = new Float64Array(m * n);
  const x = new Float64Array(k);
  const xr = new Float64Array(k);
  for (let i = 0; i < m; i++) {
    const ar = (arows ? (arows[i] as number) : i) * lda;
    for (let kk = 0; kk < k; kk++) {
      x[kk] = a[ar + kk] as number;
      xr[kk] = roundA ? toBf16(x[kk] as number) : (x[kk] as number);
    }
    for (let j = 0; j < n; j++) {
      const start = accumulate ? (c0[i * ldc + j] as number) : 0;
      const b = bias ? (bias[j] as number) : 0;
      const wo = j * k;
      let d64 = 0;
      let d32 = 0;
      let dx = 0;
      let dx32 = 0;
      let s = 0;
      for (let kk = 0; kk < k; kk++) {
        const y = w.values[wo + kk] as number;
        const pr = (xr[kk] as number) * y;
        d64 += pr;
        d32 = f32(d32 + f32(pr));
        if (roundA) {
          const px = (x[kk] as number) * y;
          dx += px;
          dx32 = f32(dx32 + f32(px));
          s += Math.abs(px);
        } else s += Math.abs(pr);
      }
      if (!roundA) {
        dx = d64;
        dx32 = d32;
      }
      ref[i * n + j] = start + d64 + b;
      eager[i * n + j] = f32(f32(start + d32) + b);
      exact[i * n + j] = start + dx + b;
      eagerExact[i * n + j] = f32(f32(start + dx32) + b);
      absSum[i * n + j] = s;
      got[i * n + j] = c[i * ldc + j] as number;
    }
    // Padding columns of C are never written.
    for (let j = n; j < ldc; j++) expect(c[i * ldc + j]).toBe(c0[i * ldc + j]);
  }
  return { got, ref, eager, exact, eagerExact, absSum };
}

/** The derived check; scale defaults to that of GEMM in primitives.test.ts (at least 1). */
function check(label: string, res: Result, scale = Math.max(scaleOf(res.ref), 1)): void {
  expectClose(label, res.got, res.ref, res.eager, scale);
}

// ---------------------------------------------------------------------------------------------
// Builds under test

interface Build {
  readonly name: string;
  readonly flags?: readonly string[];
  /** The expected start of kv_gemm16_path per dtype, where the host decides it. */
  readonly paths?: Partial<Record<Dtype16, string>>;
}

const cpuFlags = (() => {
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('flags'));
    return new Set((line ?? '').split(/\s+/));
  } catch {
    return new Set<string>();
  }
})();

const builds: Build[] = [];
if (process.arch === 'x64' && cpuFlags.has('avx512f')) {
  builds.push({
    name: 'native',
    paths: {
      [Dtype16.bf16]: 'avx512 bf16: shift, fma',
      [Dtype16.f16]: 'avx512 f16: vcvtph2ps, fma',
      [Dtype16.bf16Dot]: cpuFlags.has('avx512_bf16')
        ? 'avx512 bf16 dot: vdpbf16ps'
        : 'avx512 bf16 dot: rounded activations',
    },
  });
  if (cpuFlags.has('avx512_bf16'))
    builds.push({
      name: 'avx512 without BF16',
      flags: [...DEFAULT_FLAGS, '-mno-avx512bf16'],
      paths: { [Dtype16.bf16Dot]: 'avx512 bf16 dot: rounded activations, shift, fma' },
    });
} else {
  builds.push({ name: 'native' });
}
if (process.arch === 'x64') {
  const avx2 = cpuFlags.has('avx2') && cpuFlags.has('fma') && cpuFlags.has('f16c');
  builds.push({
    name: 'avx2',
    flags: [...DEFAULT_FLAGS, '-mno-avx512f'],
    ...(avx2
      ? {
          paths: {
            [Dtype16.bf16]: 'avx2 bf16: shift, fma',
            [Dtype16.f16]: 'avx2 f16: vcvtph2ps, fma',
            [Dtype16.bf16Dot]: 'avx2 bf16 dot: rounded activations, shift, fma',
          },
        }
      : {}),
  });
  builds.push({
    name: 'portable',
    flags: [...DEFAULT_FLAGS, '-mno-avx512f', '-mno-avx2', '-mno-fma'],
    paths: {
      [Dtype16.bf16]: 'portable bf16: shift, mul-add',
      [Dtype16.f16]: 'portable f16: c-convert, mul-add',
      [Dtype16.bf16Dot]: 'portable bf16 dot: rounded activations',
    },
  });
}

const dtypes = [
  { name: 'bf16', dtype: Dtype16.bf16 },
  { name: 'f16', dtype: Dtype16.f16 },
  { name: 'bf16-dot', dtype: Dtype16.bf16Dot },
] as const;

let cacheDir = '';
beforeAll(() => {
  cacheDir = mkdtempSync(join(tmpdir(), 'kvplan-gemm16-'));
});
afterAll(() => {
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
});

describe.each(builds)('kv_gemm16 ($name build)', (build) => {
  let p: Primitives;
  beforeAll(async () => {
    p = await loadPrimitives({ cacheDir, ...(build.flags ? { flags: build.flags } : {}) });
    p.setThreads(2);
  });

  test('each dtype takes the path this build forces', () => {
    for (const { dtype } of dtypes) {
      const path = p.gemm16Path(dtype);
      expect(path.length).toBeGreaterThan(0);
      const want = build.paths?.[dtype];
      if (want) expect(path.startsWith(want), `${path} should start with ${want}`).toBe(true);
    }
  });

  test('the packed weight takes 2 bytes a weight (half the float32 panels)', () => {
    for (const [n, k] of [
      [4096, 4096],
      [11008, 4096],
      [256, 64],
    ] as const)
      expect(p.packedSize16(n, k) * 2).toBe((p.packedSize(n, k) * 4) / 2);
    // Odd k is padded to even, n to whole panels.
    expect(p.packedSize16(5, 3)).toBeGreaterThanOrEqual(5 * 4);
    expect(p.packedSize16(5, 3) % 2).toBe(0);
    expect(p.packedSize16(0, 3)).toBe(0);
    expect(p.packedSize16(3, 0)).toBe(0);
  });

  describe.each(dtypes)('$name', ({ dtype }) => {
    // 9, 12, 17, 20 and 33 rows end in a partial micro-panel that rides on the one before it (AVX-512).
    const ms = [1, 2, 7, 9, 12, 16, 17, 20, 21, 33, 64, 70];
    const ns = [1, 5, 33, 100];
    const ks = [1, 2, 15, 64, 257];

    test(`odd shapes m in {${ms}}, n in {${ns}}, k in {${ks}}; bias, indirect rows, accumulate`, () => {
      let seed = 1000 * dtype;
      for (const m of ms)
        for (const n of ns)
          for (const k of ks) {
            // Every (bias, indirect, accumulate) combination, rotating through the shapes.
            const f = seed++ % 8;
            const opts = { bias: (f & 1) !== 0, indirect: (f & 2) !== 0, accumulate: (f & 4) !== 0 };
            const res = run(p, makeCase(seed, m, n, k, dtype, opts), dtype);
            check(`m=${m} n=${n} k=${k} ${JSON.stringify(opts)}`, res);
          }
    });

    test('larger shapes: several row units and k-blocks, partial panels, k past the whole-A limit', () => {
      const all = { bias: true, indirect: true, accumulate: true };
      const none = { bias: false, indirect: false, accumulate: false };
      for (const [m, n, k, opts] of [
        [130, 40, 300, all],
        [130, 40, 300, none],
        [9, 513, 257, none],
        [200, 33, 1, all],
        [1, 1000, 300, all],
        [3, 5, 140_001, all], // A packed per k-block (too long to keep whole) in every build
        [130, 7, 40_001, none], // a row block kept whole, but not all three at once
        [333, 41, 300, all], // a band of rows a thread, the last micro-panel partial
      ] as const)
        check(
          `m=${m} n=${n} k=${k} ${JSON.stringify(opts)}`,
          run(p, makeCase(m + n + k, m, n, k, dtype, opts), dtype),
        );
    });

    if (dtype === Dtype16.bf16Dot)
      test('bf16-dot: the activations are rounded, within 2^-9 sum |a w| of the unrounded product', () => {
        const opts = { bias: true, indirect: false, accumulate: false };
        const res = run(p, makeCase(77, 33, 100, 257, dtype, opts), dtype);
        check('rounded reference', res);
        const budget = derivedBound(res.ref, res.eager, Math.max(scaleOf(res.ref), 1));
        for (let i = 0; i < res.got.length; i++) {
          const err = Math.abs((res.got[i] as number) - (res.exact[i] as number));
          expect(err).toBeLessThanOrEqual(2 ** -9 * (res.absSum[i] as number) + budget);
        }
        // The rounding is real: the float32 budget of the unrounded product does not hold.
        const unrounded = derivedBound(res.exact, res.eagerExact, Math.max(scaleOf(res.exact), 1));
        expect(maxError(res.got, res.exact)).toBeGreaterThan(unrounded);
      });

    test('special values: zeros, subnormal weights, large values', () => {
      const zeroCase = makeCase(5, 19, 37, 41, dtype, { bias: true, indirect: true, accumulate: true });
      const signs = Float64Array.from({ length: 37 * 41 }, (_, i) => (i % 3 ? 0 : -0));
      zeroCase.w = weightsFrom(signs, dtype);
      const z = run(p, zeroCase, dtype);
      // Zero weights: C is exactly (C +) bias.
      for (let i = 0; i < z.got.length; i++) expect(z.got[i]).toBe(z.eager[i]);

      // Subnormal weights, every subnormal bit pattern of the format with both signs. The exact
      // dtypes are checked at the scale of the (tiny) results: a weight flushed to zero fails.
      // vdpbf16ps flushes subnormals by design; bf16-dot is checked at the usual scale (>= 1).
      const r = rng(11);
      const top = dtype === Dtype16.f16 ? 0x3ff : 0x7f;
      const n = 40;
      const k = 2 * top + 2;
      const bits = Uint16Array.from({ length: n * k }, (_, i) => {
        const b = (i % k) % (top + 1);
        return (i % k > top ? 0x8000 : 0) | (b === 0 ? 1 + Math.floor(r() * top) : b);
      });
      const sub = makeCase(12, 21, n, k, dtype, { bias: false, indirect: true, accumulate: false });
      sub.w = weightsFromBits(bits, dtype);
      const s = run(p, sub, dtype);
      if (dtype === Dtype16.bf16Dot) check('subnormal weights', s);
      else {
        expect(scaleOf(s.ref)).toBeGreaterThan(0);
        check('subnormal weights', s, scaleOf(s.ref));
      }

      // Large values: bf16 weights near 2^100 with activations near 2^20; f16 weights near the
      // format's maximum (65504) with activations near 1e30. No overflow, checked at their scale.
      const big =
        dtype === Dtype16.f16
          ? makeCase(13, 17, 33, 300, dtype, {
              bias: true,
              indirect: false,
              accumulate: true,
              wAmp: 65504,
              aAmp: 1e30,
            })
          : makeCase(13, 17, 33, 300, dtype, {
              bias: true,
              indirect: false,
              accumulate: true,
              wAmp: 2 ** 100,
              aAmp: 2 ** 20,
            });
      const l = run(p, big, dtype);
      expect(scaleOf(l.ref)).toBeGreaterThan(1e30);
      check('large values', l, scaleOf(l.ref));
    });

    test('infinite and NaN weights reach only their own columns', () => {
      const n = 37;
      const k = 29;
      const t = makeCase(14, 11, n, k, dtype, { bias: true, indirect: false, accumulate: false });
      t.a = t.a.map((x) => Math.abs(x) + 0.25); // positive activations: +inf stays +inf
      const inf = dtype === Dtype16.f16 ? 0x7c00 : 0x7f80;
      const nan = dtype === Dtype16.f16 ? 0x7e00 : 0x7fc0;
      const bits = Uint16Array.from(t.w.bits);
      bits[3 * k + 5] = inf; // column 3: +inf
      bits[7 * k + 0] = inf | 0x8000; // column 7: -inf
      bits[20 * k + 28] = nan; // column 20: NaN
      t.w = weightsFromBits(bits, dtype);
      const res = run(p, t, dtype);
      for (let i = 0; i < t.m; i++) {
        expect(res.got[i * n + 3]).toBe(Number.POSITIVE_INFINITY);
        expect(res.got[i * n + 7]).toBe(Number.NEGATIVE_INFINITY);
        expect(res.got[i * n + 20]).toBeNaN();
      }
      const finite = (x: Float64Array) => x.filter((_, idx) => ![3, 7, 20].includes(idx % n));
      expectClose(
        'finite columns',
        finite(res.got),
        finite(res.ref),
        finite(res.eager),
        Math.max(scaleOf(res.ref), 1),
      );
    });

    test("a row's result does not depend on the other rows (bitwise), riding or not", () => {
      // 161 columns: five whole 32-column panels, where a partial micro-panel of up to 4 rows rides
      // on the pass before it (17, 20 rows; not 21) and 1-4 rows alone run the rows kernel of
      // their count (kvi_micro16_part), and a partial panel, where neither happens.
      const n = 161;
      const k = 301;
      const large = makeCase(77, 21, n, k, dtype, { bias: true, indirect: false, accumulate: false });
      const packed = p.packWeight16(n, k, large.w.bits, dtype);
      const rows = (m: number, from = 0) => {
        const c = new Float32Array(m * large.ldc);
        p.gemm16(
          m,
          n,
          k,
          large.a.subarray(from * large.lda),
          large.lda,
          null,
          packed,
          dtype,
          large.bias,
          c,
          large.ldc,
          false,
        );
        return c;
      };
      const all = rows(21);
      for (const m of [1, 2, 3, 4, 8, 16, 17, 20]) {
        const c = rows(m);
        expect(Buffer.from(c.buffer).equals(Buffer.from(all.buffer, 0, c.byteLength)), `${m} rows`).toBe(
          true,
        );
        // The last row, a rider at 17 and 20, against itself alone.
        const last = rows(1, m - 1);
        const at = (m - 1) * large.ldc * 4;
        expect(
          Buffer.from(last.buffer).equals(Buffer.from(c.buffer, at, last.byteLength)),
          `row ${m - 1}`,
        ).toBe(true);
      }
    });

    test('the result does not depend on the thread count (bitwise)', () => {
      // 150 rows: the threads split the columns; 397 rows: a band of rows a thread (three unequal
      // bands at 3 threads).
      for (const m of [150, 397]) {
        const t = makeCase(15, m, 300, 700, dtype, { bias: true, indirect: true, accumulate: true });
        const packed = p.packWeight16(t.n, t.k, t.w.bits, dtype);
        const out = (threads: number) => {
          p.setThreads(threads);
          const c = Float32Array.from(t.c0);
          p.gemm16(t.m, t.n, t.k, t.a, t.lda, t.arows, packed, dtype, t.bias, c, t.ldc, true);
          return Buffer.from(c.buffer);
        };
        const one = out(1);
        for (const threads of [2, 3])
          expect(out(threads).equals(one), `m=${m}, ${threads} threads`).toBe(true);
      }
      p.setThreads(2);
    });
  });

  test('m = 0 and n = 0 touch nothing; k = 0 gives bias (+ C)', () => {
    for (const { dtype } of dtypes) {
      const c = Float32Array.from([1, 2, 3, 4]);
      const packed = p.packWeight16(2, 3, new Uint16Array(6), dtype);
      p.gemm16(0, 2, 3, new Float32Array(0), 3, null, packed, dtype, null, c, 2, false);
      p.gemm16(2, 0, 3, new Float32Array(6), 3, null, new Uint16Array(0), dtype, null, c, 2, false);
      expect([...c]).toEqual([1, 2, 3, 4]);
      const empty = new Uint16Array(0);
      p.gemm16(2, 2, 0, new Float32Array(0), 0, null, empty, dtype, new Float32Array([10, 20]), c, 2, true);
      expect([...c]).toEqual([11, 22, 13, 24]);
      p.gemm16(2, 2, 0, new Float32Array(0), 0, null, empty, dtype, null, c, 2, false);
      expect([...c]).toEqual([0, 0, 0, 0]);
    }
  });

  test('bad sizes, indices and dtypes are RangeErrors, not crashes', () => {
    const packed = p.packWeight16(4, 4, new Uint16Array(16), Dtype16.bf16);
    const c = new Float32Array(16);
    const a = new Float32Array(16);
    expect(() => p.gemm16(4, 4, 4, a.subarray(1), 4, null, packed, Dtype16.bf16, null, c, 4, false)).toThrow(
      RangeError,
    );
    expect(() =>
      p.gemm16(4, 4, 4, a, 4, Int32Array.from([0, 1, 2, 4]), packed, Dtype16.bf16, null, c, 4, false),
    ).toThrow(/arows\[3\] = 4/);
    expect(() => p.gemm16(4, 4, 4, a, 4, null, packed.subarray(1), Dtype16.bf16, null, c, 4, false)).toThrow(
      RangeError,
    );
    expect(() => p.gemm16(4, 4, 4, a, 4, null, packed, 4 as Dtype16, null, c, 4, false)).toThrow(/dtype/);
    expect(() => p.packWeight16(4, 4, new Uint16Array(15), Dtype16.f16)).toThrow(RangeError);
    expect(() => p.packWeight16(4, 4, new Uint16Array(16), 0 as Dtype16)).toThrow(/dtype/);
    expect(() => p.gemm16Path(7 as Dtype16)).toThrow(/dtype/);
  });
});
