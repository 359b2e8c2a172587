/**
 * A CudaDevice that runs the generated kernels' documented semantics in JS, for testing the PTX
 * runner's host side (slots, weight layouts, index lists, sizes, launch order, argument packing)
 * where no GPU is. Device memory is host memory behind fake 64-bit addresses.
 *
 * What makes it a check rather than a second implementation to trust blindly:
 * - arguments are decoded from the packed parameter buffer by the `.param` list of the PTX text
 *   itself, and constants the kernel bakes in (rope's inverse frequencies) are read from the PTX;
 * - every launch must cover its work: grid × block against the counts in its own arguments;
 * - it reproduces the kernels' observable corner cases: masked keys (later blocks, other sequences)
 *   still contribute 0 · V (so a
 *   NaN-poisoned V row of a masked key poisons the row, as on the GPU), merges drop a zero-weight
 *   side, the tensor-core GEMM paths round their inputs to f16 / bf16 (a 16-bit weight is read as
 *   its bits, exactly).
 * Whether it matches the PTX is settled on a GPU: bench/gpu replays its results against the kernels.
 *
 * `eager` rounds every operation to float32 (Math.fround), for the derived error budgets; by
 * default it computes in float64 and rounds only when storing to device memory.
 */
import type { ParamType } from '../../../src/backends/cuda-ptx/kernels/ptx.ts';
import type { CudaDevice, Dim3, PackedParams } from '../../../src/backends/cuda-ptx/launch.ts';
import { type HalfDtype, halfToFloat32 } from '../../../src/model/half.ts';
import { interpretPtx } from './interpret.ts';

interface Kernel {
  readonly name: string;
  readonly params: readonly { readonly name: string; readonly type: ParamType }[];
  readonly ptx: string;
}

interface Allocation {
  readonly base: bigint;
  readonly bytes: ArrayBuffer;
}

export interface EmulatedLaunch {
  readonly kernel: string;
  readonly grid: Dim3;
  readonly args: Readonly<Record<string, number | bigint>>;
}

export class EmulatorError extends Error {
  override readonly name = 'EmulatorError';
}

/** Round to nearest even at f16 precision (what `cvt.rn.f16x2.f32` does), overflow to infinity. */
export function roundF16(x: number): number {
  const a = Math.abs(x);
  if (!Number.isFinite(a) || a === 0) return x;
  if (a >= 65520) return Math.sign(x) * Number.POSITIVE_INFINITY;
  const e = Math.max(-14, Math.floor(Math.log2(a)));
  // log2 can land one off near powers of two; fix the exponent so that 2^e <= a < 2^(e+1).
  const exp = a < 2 ** e ? e - 1 : a >= 2 ** (e + 1) ? e + 1 : e;
  const ulp = 2 ** (Math.max(-14, exp) - 10);
  const q = a / ulp;
  const f = Math.floor(q);
  const r = q - f > 0.5 || (q - f === 0.5 && f % 2 === 1) ? f + 1 : f;
  return Math.sign(x) * r * ulp;
}

const bits = new DataView(new ArrayBuffer(4));
/** Round to nearest even at bf16 precision (`cvt.rn.bf16x2.f32`). */
export function roundBf16(x: number): number {
  if (!Number.isFinite(x)) return x;
  bits.setFloat32(0, x);
  const u = bits.getUint32(0);
  bits.setUint32(0, ((u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000) >>> 0);
  return bits.getFloat32(0);
}

/** The rounding of a conversion to a tensor-core dtype; none for float32 (undefined). */
export const roundTo = (dtype: HalfDtype | undefined): ((x: number) => number) =>
  dtype === 'f16' ? roundF16 : dtype === 'bf16' ? roundBf16 : (x) => x;

/** The bits of x rounded to nearest even in a 16-bit format (`cvt.rn.{f16,bf16}.f32`). */
export function halfBits(dtype: HalfDtype, x: number): number {
  if (dtype === 'bf16') {
    bits.setFloat32(0, roundBf16(x));
    return bits.getUint32(0) >>> 16;
  }
  if (Number.isNaN(x)) return 0x7e00;
  const v = roundF16(x);
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === Number.POSITIVE_INFINITY) return sign | 0x7c00;
  if (a < 2 ** -14) return sign | (a / 2 ** -24);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  return sign | ((e + 15) << 10) | ((a / 2 ** e - 1) * 1024);
}

/** A kernel's parameters as its PTX text declares them. */
export const declaredParams = (ptx: string) =>
  [...ptx.matchAll(/\.param\s+\.(u64|u32|f32)\s+(\w+)/g)].map((m) => ({
    name: m[2] as string,
    type: m[1] as ParamType,
  }));

function constTable(ptx: string, name: string): Float64Array {
  const m = ptx.match(new RegExp(`\\.f64 ${name}\\[\\d+\\] = \\{([^}]*)\\}`));
  if (!m) throw new EmulatorError(`no constant table ${name}`);
  const view = new DataView(new ArrayBuffer(8));
  return Float64Array.from(
    (m[1] as string).split(',').map((s) => s.trim()),
    (s) => {
      view.setBigUint64(0, BigInt(`0x${s.slice(2)}`));
      return view.getFloat64(0);
    },
  );
}

export class EmulatedDevice implements CudaDevice {
  readonly computeCapability: readonly [number, number] = [9, 0];
  readonly launches: EmulatedLaunch[] = [];
  private readonly live: Allocation[] = [];
  private next = 0x7f00_0000_0000n;
  private readonly r: (x: number) => number;

  private readonly interpret: RegExp | undefined;
  private readonly views = new WeakMap<ArrayBuffer, DataView>();

  /**
   * `eager`: every operation rounded to float32. `interpret`: kernels whose name matches run their
   * PTX text on the instruction-level interpreter (interpret.ts) instead of their semantics here.
   */
  constructor(opts: { eager?: boolean; interpret?: RegExp } = {}) {
    this.r = opts.eager ? Math.fround : (x) => x;
    this.interpret = opts.interpret;
  }

  /** Allocations not freed yet. */
  get allocations(): number {
    return this.live.length;
  }

  loadKernel(ptx: string, name: string): Kernel {
    if (!ptx.includes(`.visible .entry ${name}(`)) throw new EmulatorError(`the module has no entry ${name}`);
    return { name, params: declaredParams(ptx), ptx };
  }
  /** Entries unloaded so far. */
  unloaded = 0;
  unloadKernel(): void {
    this.unloaded++;
  }
  alloc(bytes: number): bigint {
    const base = this.next;
    const size = Math.max(bytes, 256);
    this.live.push({ base, bytes: new ArrayBuffer(size) });
    this.next += BigInt(Math.ceil(size / 4096) * 4096 + 4096);
    return base;
  }
  free(ptr: bigint): void {
    const i = this.live.findIndex((a) => a.base === ptr);
    if (i < 0) throw new EmulatorError(`free of ${ptr.toString(16)}, which was not allocated`);
    this.live.splice(i, 1);
  }
  private at(ptr: bigint, bytes: number): { buf: ArrayBuffer; off: number } {
    for (const a of this.live) {
      const off = Number(ptr - a.base);
      if (off >= 0 && off + bytes <= a.bytes.byteLength) return { buf: a.bytes, off };
    }
    throw new EmulatorError(`${bytes} bytes at ${ptr.toString(16)} are outside every allocation`);
  }
  private bytesAt(ptr: bigint, bytes: number): Uint8Array {
    const { buf, off } = this.at(ptr, bytes);
    return new Uint8Array(buf, off, bytes);
  }
  upload(dst: bigint, src: ArrayBufferView): void {
    this.bytesAt(dst, src.byteLength).set(new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
  }
  download(dst: ArrayBufferView, src: bigint): void {
    new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength).set(this.bytesAt(src, dst.byteLength));
  }
  copy(dst: bigint, src: bigint, bytes: number): void {
    this.bytesAt(dst, bytes).set(this.bytesAt(src, bytes).slice());
  }
  fill(dst: bigint, byte: number, bytes: number): void {
    this.bytesAt(dst, bytes).fill(byte);
  }
  synchronize(): void {}
  close(): void {}

  /** Float32 view from a pointer to the end of its allocation; null pointers give undefined. */
  f32(ptr: bigint): Float32Array;
  f32(ptr: bigint, optional: true): Float32Array | undefined;
  f32(ptr: bigint, optional = false): Float32Array | undefined {
    if (ptr === 0n) {
      if (optional) return undefined;
      throw new EmulatorError('null pointer where a buffer is required');
    }
    const { buf, off } = this.at(ptr, 4);
    if (off % 4 !== 0) throw new EmulatorError(`misaligned float pointer ${ptr.toString(16)}`);
    return new Float32Array(buf, off);
  }
  /** 16-bit view from a pointer to the end of its allocation. */
  u16(ptr: bigint): Uint16Array {
    const { buf, off } = this.at(ptr, 2);
    if (off % 2 !== 0) throw new EmulatorError(`misaligned 16-bit pointer ${ptr.toString(16)}`);
    return new Uint16Array(buf, off, (buf.byteLength - off) >> 1);
  }
  i32(ptr: bigint): Int32Array | undefined {
    if (ptr === 0n) return undefined;
    const { buf, off } = this.at(ptr, 4);
    return new Int32Array(buf, off);
  }

  launch(fn: unknown, grid: Dim3, block: Dim3, sharedBytes: number, params: PackedParams): void {
    const k = fn as Kernel;
    if (params.offsets.length !== k.params.length)
      throw new EmulatorError(
        `${k.name}: ${params.offsets.length} arguments for ${k.params.length} parameters`,
      );
    const view = new DataView(params.bytes.buffer, params.bytes.byteOffset, params.bytes.byteLength);
    const args: Record<string, number | bigint> = {};
    k.params.forEach((p, i) => {
      const at = params.offsets[i] as number;
      args[p.name.replace(/^p_/, '')] =
        p.type === 'u64'
          ? view.getBigUint64(at, true)
          : p.type === 'f32'
            ? view.getFloat32(at, true)
            : view.getUint32(at, true);
    });
    this.launches.push({ kernel: k.name, grid, args });
    if (this.interpret?.test(k.name)) {
      interpretPtx(k.ptx, {
        grid,
        block,
        sharedBytes,
        params: Object.fromEntries(k.params.map((p) => [p.name, Number(args[p.name.replace(/^p_/, '')])])),
        global: (addr, bytes) => {
          const { buf, off } = this.at(BigInt(addr), bytes);
          let view = this.views.get(buf);
          if (!view) {
            view = new DataView(buf);
            this.views.set(buf, view);
          }
          return { view, off };
        },
      });
      return;
    }
    const threads = grid[0] * block[0];
    const covers = (what: string, have: number, need: number) => {
      if (have < need)
        throw new EmulatorError(`${k.name}: the launch covers ${have} ${what}, ${need} needed`);
    };
    const name = k.name;
    const a = args as Record<string, number> & Record<string, bigint>;
    const u = (n: string) => Number(args[n]);
    const ptr = (n: string): bigint => {
      const v = args[n];
      if (typeof v !== 'bigint') throw new EmulatorError(`${name}: no pointer parameter p_${n}`);
      return v;
    };
    if (name.startsWith('kvp_gemm')) {
      covers('columns', grid[0] * 64, u('n'));
      covers('rows', grid[1] * 64, u('m'));
      covers('k', grid[2] * u('kchunk'), u('k'));
      if (u('kchunk') % 32 !== 0 && grid[2] > 1)
        throw new EmulatorError(`${name}: a split's k-range ${u('kchunk')} is not whole k-steps`);
      // kvp_gemm_fma, kvp_gemm_mma_<dtype> (f32 W), kvp_gemm16_<dtype> (W stored as dtype bits)
      const dtype = name.match(/_(b?f16)$/)?.[1] as HalfDtype | undefined;
      this.gemm(a, dtype, name.startsWith('kvp_gemm16_'), grid[2]);
    } else if (name.startsWith('kvp_attention_hd')) {
      covers('pairs', grid[0] * 32, u('nq') * u('group'));
      // One CTA row per KV head: all of them, or (pointers moved to it) one KV head alone.
      if (grid[1] !== 1 && grid[1] * u('group') !== u('heads'))
        throw new EmulatorError(`${name}: grid.y must be the KV heads, or 1`);
      this.attention(a, Number(name.match(/hd(\d+)/)?.[1]), grid[1]);
    } else if (name.startsWith('kvp_rope_hd')) {
      const hd = Number(name.match(/hd(\d+)/)?.[1]);
      covers('pairs', threads, (u('n') * u('heads') * hd) / 2);
      this.rope(a, hd, constTable(k.ptx, 'kvp_invfreq'));
    } else {
      switch (name) {
        case 'kvp_rmsnorm':
          covers('rows', grid[0], u('n'));
          this.rmsnorm(a);
          break;
        case 'kvp_add':
        case 'kvp_swiglu':
          covers('elements', threads, u('count'));
          this.binary(a, name === 'kvp_add');
          break;
        case 'kvp_embed':
          covers('elements', threads, u('n') * u('d'));
          this.rows(ptr('out'), undefined, ptr('table'), this.i32(ptr('ids')), u('n'), u('d'));
          break;
        case 'kvp_copy_rows':
          covers('elements', threads, u('n') * u('width'));
          this.rows(
            ptr('dst'),
            this.i32(ptr('dst_rows')),
            ptr('src'),
            this.i32(ptr('src_rows')),
            u('n'),
            u('width'),
          );
          break;
        case 'kvp_splitk_reduce':
          covers('elements', threads, u('count'));
          this.splitkReduce(a);
          break;
        case 'kvp_fill':
          covers('elements', threads, u('count'));
          this.f32(ptr('out')).fill(u('value'), 0, u('count'));
          break;
        case 'kvp_merge':
          covers('elements', threads, u('pairs') * u('hd'));
          this.merge(
            ptr('o'),
            ptr('lse'),
            [ptr('o1'), ptr('lse1')],
            [ptr('o2'), ptr('lse2')],
            u('pairs'),
            u('hd'),
          );
          break;
        case 'kvp_softmax_stats':
          covers('rows', grid[0], u('rows'));
          this.softmaxStats(a);
          break;
        default:
          throw new EmulatorError(`no emulation of kernel ${name}`);
      }
    }
  }

  /**
   * C = A[rows]·W + bias. `dtype`: the tensor-core paths, which round A (and a float32 W) to it;
   * `w16`: W holds `dtype` bits.
   */
  private gemm(a: Record<string, bigint>, dtype: HalfDtype | undefined, w16: boolean, splits: number): void {
    const r = this.r;
    const [m, n, k, lda, ldc, kchunk, zstride] = ['m', 'n', 'k', 'lda', 'ldc', 'kchunk', 'zstride'].map((x) =>
      Number(a[x]),
    ) as [number, number, number, number, number, number, number];
    // Inputs are rounded once, as the tensor-core paths convert them once while staging.
    const round = roundTo(dtype);
    const A = this.f32(a.a as bigint).map(round);
    const W =
      w16 && dtype
        ? halfToFloat32(this.u16(a.w as bigint).subarray(0, k * n), dtype)
        : this.f32(a.w as bigint)
            .subarray(0, k * n)
            .map(round);
    const bias = this.f32(a.bias as bigint, true);
    const rows = this.i32(a.arows as bigint);
    const C = this.f32(a.c as bigint);
    // Split z sums its k-range into its own partial, zstride floats further on.
    for (let z = 0; z < splits; z++) {
      const [k0, k1] = [z * kchunk, Math.min(k, (z + 1) * kchunk)];
      const out = new Float64Array(m * n);
      for (let i = 0; i < m; i++) {
        const src = (rows ? (rows[i] as number) : i) * lda;
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let t = k0; t < k1; t++) s = r(s + r((A[src + t] as number) * (W[t * n + j] as number)));
          out[i * n + j] = bias ? r(s + (bias[j] as number)) : s;
        }
      }
      for (let i = 0; i < m; i++) C.set(out.subarray(i * n, (i + 1) * n), z * zstride + i * ldc);
    }
  }

  /** out = the partials summed in split order, + bias. */
  private splitkReduce(a: Record<string, bigint>): void {
    const r = this.r;
    const [count, n, splits, zstride] = ['count', 'n', 'splits', 'zstride'].map((x) => Number(a[x])) as [
      number,
      number,
      number,
      number,
    ];
    const ws = this.f32(a.ws as bigint);
    const bias = this.f32(a.bias as bigint, true);
    const out = this.f32(a.out as bigint);
    for (let i = 0; i < count; i++) {
      let s = ws[i] as number;
      for (let z = 1; z < splits; z++) s = r(s + (ws[z * zstride + i] as number));
      out[i] = bias ? r(s + (bias[i % n] as number)) : s;
    }
  }

  /** The pairs of the first `kvHeads` KV heads' query heads (CTA rows g < grid.y), the rest untouched. */
  private attention(a: Record<string, bigint | number>, hd: number, kvHeads: number): void {
    const r = this.r;
    const u = (n: string) => Number(a[n]);
    const [nq, nk, heads, group, ksr, ksh, vsr, vsh] = [
      'nq',
      'nk',
      'heads',
      'group',
      'k_row_stride',
      'k_head_stride',
      'v_row_stride',
      'v_head_stride',
    ].map(u) as [number, number, number, number, number, number, number, number];
    const scale = u('scale');
    const Q = this.f32(a.q as bigint);
    const K = this.f32(a.k as bigint);
    const V = this.f32(a.v as bigint);
    const qpos = this.i32(a.qpos as bigint) as Int32Array;
    const kpos = this.i32(a.kpos as bigint) as Int32Array;
    const blocks = this.i32(a.blocks as bigint);
    const seqs = a.seqs === undefined ? undefined : this.i32(a.seqs as bigint);
    const O = new Float64Array(nq * heads * hd);
    const LSE = new Float64Array(nq * heads);
    const s = new Float64Array(nk);
    const computed = kvHeads * group;
    for (let i = 0; i < nq; i++)
      for (let h = 0; h < computed; h++) {
        const g = Math.floor(h / group);
        const qo = (i * heads + h) * hd;
        let m = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < nk; j++) {
          const kp = kpos[j] as number;
          const qp = qpos[i] as number;
          if (
            (blocks && (blocks[kp] as number) > (blocks[qp] as number)) ||
            (seqs && seqs[kp] !== seqs[qp])
          ) {
            s[j] = Number.NEGATIVE_INFINITY;
            continue;
          }
          let d = 0;
          const ko = kp * ksr + g * ksh;
          for (let e = 0; e < hd; e++) d = r(d + r((Q[qo + e] as number) * (K[ko + e] as number)));
          s[j] = r(d * scale);
          m = Math.max(m, s[j] as number);
        }
        const row = i * heads + h;
        if (m === Number.NEGATIVE_INFINITY) {
          LSE[row] = m;
          continue;
        }
        let l = 0;
        for (let j = 0; j < nk; j++) {
          // A masked key weighs 0 but its value row is still read, as in the kernel.
          const p = r(Math.exp((s[j] as number) - m));
          l = r(l + p);
          const vo = (kpos[j] as number) * vsr + g * vsh;
          for (let e = 0; e < hd; e++) O[qo + e] = r((O[qo + e] as number) + r(p * (V[vo + e] as number)));
        }
        for (let e = 0; e < hd; e++) O[qo + e] = r((O[qo + e] as number) / l);
        LSE[row] = r(m + Math.log(l));
      }
    const pairs = nq * heads;
    if (a.o_prev === undefined) {
      const o = this.f32(a.o as bigint);
      const lse = this.f32(a.lse as bigint);
      for (let i = 0; i < nq; i++)
        for (let h = 0; h < computed; h++) {
          const row = i * heads + h;
          o.set(O.subarray(row * hd, (row + 1) * hd), row * hd);
          lse[row] = LSE[row] as number;
        }
      return;
    }
    if (computed !== heads) throw new EmulatorError('a merge folded into an attention over one KV head');
    const prevO = this.f32(a.o_prev as bigint).slice(0, pairs * hd);
    const prevL = this.f32(a.lse_prev as bigint).slice(0, pairs);
    this.mergeInto(a.o as bigint, a.lse as bigint, [O, LSE], [prevO, prevL], pairs, hd);
  }

  private merge(o: bigint, lse: bigint, x: [bigint, bigint], y: [bigint, bigint], pairs: number, hd: number) {
    const take = (p: [bigint, bigint]) =>
      [this.f32(p[0]).slice(0, pairs * hd), this.f32(p[1]).slice(0, pairs)] as const;
    this.mergeInto(o, lse, take(x), take(y), pairs, hd);
  }

  private mergeInto(
    o: bigint,
    lse: bigint,
    [o1, l1]: readonly [ArrayLike<number>, ArrayLike<number>],
    [o2, l2]: readonly [ArrayLike<number>, ArrayLike<number>],
    pairs: number,
    hd: number,
  ): void {
    const r = this.r;
    const O = this.f32(o);
    const L = this.f32(lse);
    for (let p = 0; p < pairs; p++) {
      const a = l1[p] as number;
      const b = l2[p] as number;
      const m = Math.max(a, b);
      if (m === Number.NEGATIVE_INFINITY) {
        O.fill(0, p * hd, (p + 1) * hd);
        L[p] = m;
        continue;
      }
      const wa = r(Math.exp(a - m));
      const wb = r(Math.exp(b - m));
      const tot = r(wa + wb);
      const ca = r(wa / tot);
      const cb = r(wb / tot);
      for (let e = 0; e < hd; e++) {
        const x = ca === 0 ? 0 : r((o1[p * hd + e] as number) * ca);
        const y = cb === 0 ? 0 : r((o2[p * hd + e] as number) * cb);
        O[p * hd + e] = r(x + y);
      }
      L[p] = r(m + Math.log(tot));
    }
  }

  private rope(a: Record<string, bigint | number>, hd: number, invFreq: Float64Array): void {
    const r = this.r;
    const n = Number(a.n);
    const heads = Number(a.heads);
    const half = hd / 2;
    const X = this.f32(a.x as bigint).slice(0, n * heads * hd);
    const pos = this.i32(a.pos as bigint);
    const out = this.f32(a.out as bigint);
    for (let row = 0; row < n; row++) {
      const p = pos ? (pos[row] as number) : row;
      for (let i = 0; i < half; i++) {
        const ang = p * (invFreq[i] as number);
        const c = r(Math.cos(ang));
        const s = r(Math.sin(ang));
        for (let h = 0; h < heads; h++) {
          const base = (row * heads + h) * hd;
          const lo = X[base + i] as number;
          const hi = X[base + i + half] as number;
          out[base + i] = r(r(lo * c) - r(hi * s));
          out[base + i + half] = r(r(hi * c) + r(lo * s));
        }
      }
    }
  }

  private rmsnorm(a: Record<string, bigint | number>): void {
    const r = this.r;
    const n = Number(a.n);
    const d = Number(a.d);
    const X = this.f32(a.x as bigint);
    const W = this.f32(a.w as bigint);
    const rows = this.i32(a.rows as bigint);
    const out = new Float64Array(n * d);
    for (let i = 0; i < n; i++) {
      const src = (rows ? (rows[i] as number) : i) * d;
      let ss = 0;
      for (let j = 0; j < d; j++) ss = r(ss + r((X[src + j] as number) ** 2));
      const inv = r(1 / r(Math.sqrt(r(r(ss / d) + Number(a.eps)))));
      for (let j = 0; j < d; j++) out[i * d + j] = r(r((X[src + j] as number) * (W[j] as number)) * inv);
    }
    this.f32(a.out as bigint).set(out);
  }

  /**
   * kvp_softmax_stats: confidence, margin and entropy at 3r..3r+2, the argmax at 3 rows + r (-1,
   * and zeros, for a row with a logit that is not finite or none but the excluded one), summed as
   * the kernel sums:
   * each of 256 threads its strided share in order, then five butterfly rounds per warp, then the
   * eight warps in turn (eager: every operation rounded to float32).
   */
  private softmaxStats(a: Record<string, bigint | number>): void {
    const r = this.r;
    const [rows, v, exclude] = [Number(a.rows), Number(a.v), Number(a.exclude)];
    const logits = this.f32(a.logits as bigint);
    const out = this.f32(a.stats as bigint);
    for (let i = 0; i < rows; i++) {
      const row = logits.subarray(i * v, (i + 1) * v);
      let at = -1;
      for (let j = 0; j < v; j++)
        if (j !== exclude && (at < 0 || (row[j] as number) > (row[at] as number))) at = j;
      if (at < 0 || !row.every(Number.isFinite)) {
        out.set([0, 0, 0], 3 * i);
        out[3 * rows + i] = -1;
        continue;
      }
      const max = row[at] as number;
      let second = Number.NEGATIVE_INFINITY;
      for (let j = 0; j < v; j++) if (j !== exclude && j !== at) second = Math.max(second, row[j] as number);
      const sums = new Float64Array(256);
      const weighted = new Float64Array(256);
      for (let t = 0; t < 256; t++)
        for (let j = t; j < v; j += 256) {
          if (j === exclude) continue;
          const z = r((row[j] as number) - max);
          const e = r(2 ** r(z * r(Math.LOG2E)));
          sums[t] = r((sums[t] as number) + e);
          weighted[t] = r(e * z + (weighted[t] as number));
        }
      for (const x of [sums, weighted]) {
        for (const lane of [16, 8, 4, 2, 1]) {
          const before = x.slice();
          for (let t = 0; t < 256; t++) x[t] = r((before[t] as number) + (before[t ^ lane] as number));
        }
        for (let w = 1; w < 8; w++) x[0] = r((x[0] as number) + (x[32 * w] as number));
      }
      const [sum, w] = [sums[0] as number, weighted[0] as number];
      const conf = r(1 / sum);
      const d = r(second - max);
      // 1 - exp(d) by its series near 0, each step one fma, as the kernel computes it.
      const series = () => -r(r(d * r(d * r(d * r(d * r(1 / 24) + r(1 / 6)) + 0.5) + 1)));
      const gap = d > -1 / 32 ? series() : r(1 - r(2 ** r(d * r(Math.LOG2E))));
      const log = r(r(Math.log2(sum)) * r(Math.LN2));
      out.set([conf, r(gap * conf), r(log - r(w * conf))], 3 * i);
      out[3 * rows + i] = at;
    }
  }

  private binary(a: Record<string, bigint | number>, add: boolean): void {
    const r = this.r;
    const count = Number(a.count);
    const A = this.f32(a.a as bigint).slice(0, count);
    const B = this.f32(a.b as bigint).slice(0, count);
    const out = this.f32(a.out as bigint);
    for (let i = 0; i < count; i++) {
      const x = A[i] as number;
      out[i] = add ? r(x + (B[i] as number)) : r(r(x / r(1 + Math.exp(-x))) * (B[i] as number));
    }
  }

  /** dst[dr(i)] = src[sr(i)] for n rows of width floats; every row is read before any is written. */
  private rows(
    dst: bigint,
    dstRows: Int32Array | undefined,
    src: bigint,
    srcRows: Int32Array | undefined,
    n: number,
    width: number,
  ): void {
    const S = this.f32(src);
    const D = this.f32(dst);
    const taken = Array.from({ length: n }, (_, i) => {
      const s = (srcRows ? (srcRows[i] as number) : i) * width;
      return S.slice(s, s + width);
    });
    taken.forEach((row, i) => {
      D.set(row, (dstRows ? (dstRows[i] as number) : i) * width);
    });
  }
}
