/**
 * `npm run bench -- kernels`: our CPU primitives (kv_gemm, kv_gemm16, kv_attention through koffi)
 * against onnxruntime-node (MLAS) on the same shapes, in one process and one run; the 16-bit
 * GEMM rows also against our float32 GEMM. Prints a table; with --write, records
 * bench/results/kernels.json ({ machine, rows, skipped }).
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { DEFAULT_FLAGS } from '../src/backends/cpu/compiler.ts';
import { Dtype16, type Primitives } from '../src/backends/cpu/primitives.ts';
import { measureCpu, pureRooflineMeter } from '../src/cost/probe.ts';
import { presets } from '../src/model/presets.ts';
import { fmt, table } from '../src/report/table.ts';
import {
  attentionModel,
  createSession,
  floatTensor,
  fusedAttentionModel,
  int32Tensor,
  matmulModel,
  type OrtTensor,
  ortVersion,
  runFloat,
} from './onnx.ts';
import { type Destination, saveResults } from './save.ts';
import {
  machineInfo,
  measure,
  median,
  otherProcessesMeter,
  randomFloats,
  randomSubset,
  type Timing,
} from './timing.ts';

/** The part of the CPU primitives (src/backends/cpu/primitives.ts) the benchmark uses. */
export type BenchPrimitives = Pick<
  Primitives,
  'setThreads' | 'packWeight' | 'gemm' | 'attention' | 'packWeight16' | 'gemm16' | 'gemm16Path'
>;

export interface KernelRow {
  name: string;
  ours_ms: number;
  ort_ms: number | null;
  /** ort_ms / ours_ms: above 1 means ours is faster. */
  ratio: number | null;
  threads: number;
  gflops_ours?: number;
  gflops_ort?: number;
  /** Index-list attention only: our dense attention on the same shape. */
  dense_ms?: number;
  /** dense_ms / ours_ms. */
  speedup_vs_dense?: number;
  /** Attention: onnxruntime's fused com.microsoft.MultiHeadAttention on the same shape. */
  ort_fused_ms?: number | null;
  /** ort_fused_ms / ours_ms. */
  ratio_fused?: number | null;
  gflops_ort_fused?: number;
  /** 16-bit GEMM only: our float32 GEMM (kv_gemm) on the same shape, in the same run. */
  f32_ms?: number;
  /** f32_ms / ours_ms: the speedup of the 16-bit weights over float32 ones. */
  speedup_vs_f32?: number;
  /** Largest |ours - onnxruntime| over the outputs (a sanity check, not a test). */
  max_abs_diff?: number;
  /**
   * 16-bit GEMM rows: our float32 GEMM on the same shape (f32_ms) against the roofline: the longer
   * of its FLOPs at the machine's GEMM peak and its weight bytes at the memory bandwidth of a
   * STREAM-like kernel, both measured at the same thread count just before the row was timed
   * (`roofline`), over f32_ms. 1 is the machine's limit.
   */
  f32_of_roofline?: number;
  roofline?: Pick<MachineRoof, 'peak_gflops' | 'stream_gbps'>;
}

/** The machine's float32 GEMM peak and memory bandwidth at one thread count, this run. */
export interface MachineRoof {
  readonly threads: number;
  readonly peak_gflops: number;
  /** A STREAM-like read and write of 2 x 128 MiB (kv_rmsnorm), the roofline's bandwidth. */
  readonly stream_gbps: number;
  /** Packed weights streamed from memory by our GEMM of one row, for comparison. */
  readonly weight_gbps: number;
  /** Rows at which a GEMM's FLOPs at the peak take as long as its weights at the stream bandwidth. */
  readonly ridge_rows: number;
}

export async function machineRoofs(threads: readonly number[]): Promise<MachineRoof[]> {
  const out: MachineRoof[] = [];
  for (const t of threads) {
    const m = await measureCpu(t);
    out.push({
      threads: t,
      peak_gflops: m.peakFlops / 1e9,
      stream_gbps: m.bandwidth / 1e9,
      weight_gbps: m.weightBandwidth / 1e9,
      // FLOPs per weight byte of an m-row GEMM: 2m / 4.
      ridge_rows: Math.round((2 * m.peakFlops) / m.bandwidth),
    });
  }
  return out;
}

/** A float32 GEMM's roofline time in ms: FLOPs at the peak or weight bytes at the bandwidth. */
const rooflineMs = (
  roof: Pick<MachineRoof, 'peak_gflops' | 'stream_gbps'>,
  m: number,
  n: number,
  k: number,
): number =>
  Math.max((2 * m * n * k) / (roof.peak_gflops * 1e9), (4 * n * k) / (roof.stream_gbps * 1e9)) * 1e3;

export interface KernelOptions {
  threads: readonly number[];
  /** Only cases whose name contains this string. */
  filter?: string;
  /** A first run slower than this (ms) skips the case. */
  skipAboveMs: number;
}

interface GemmCase {
  name: string;
  m: number;
  n: number;
  k: number;
}

interface AttnCase {
  n: number;
  heads: number;
  /** Key/value heads (grouped-query attention when fewer than heads); default heads. */
  kvHeads?: number;
  d: number;
  /** Also time attention over index lists keeping these fractions of the keys. */
  keeps: readonly number[];
}

function gemmCases(): GemmCase[] {
  const s = presets.small;
  if (!s) throw new Error('preset small is missing');
  const d = s.dModel;
  const qkv = (s.heads + 2 * s.kvHeads) * s.headDim;
  const shapes = [
    { label: 'qkv', n: qkv, k: d },
    { label: 'o_proj', n: d, k: s.heads * s.headDim },
    { label: 'gate_up', n: 2 * s.dFF, k: d },
    { label: 'down', n: d, k: s.dFF },
  ];
  const out: GemmCase[] = [{ name: 'gemm 1024x1024x1024', m: 1024, n: 1024, k: 1024 }];
  for (const rows of [16, 64, 256, 1024]) {
    for (const sh of shapes) {
      out.push({ name: `gemm small.${sh.label} ${rows}x${sh.k}·${sh.k}x${sh.n}`, m: rows, n: sh.n, k: sh.k });
    }
  }
  return out;
}

/**
 * The 16-bit GEMM: LLaMA-7B layer shapes (d_model 4096, d_ff 11008) at the few rows a cached step
 * computes, where a GEMM is bound by weight traffic.
 */
interface Gemm16Case {
  label: string;
  n: number;
  k: number;
}

const gemm16Shapes: readonly Gemm16Case[] = [
  { label: 'llama7b.q/k/v/o', n: 4096, k: 4096 },
  { label: 'llama7b.gate/up', n: 11008, k: 4096 },
  { label: 'llama7b.down', n: 4096, k: 11008 },
];
const gemm16Rows = [16, 32, 64] as const;
const gemm16Dtypes = [
  { key: 'bf16', dtype: Dtype16.bf16 },
  { key: 'f16', dtype: Dtype16.f16 },
  { key: 'bf16-dot', dtype: Dtype16.bf16Dot },
] as const;

/**
 * Times several functions in turns (one sample of each, then the next round), so that a change in
 * the machine's load during the run falls on all of them alike and their ratios stay meaningful.
 * Each gets a warm-up call, then samples of `reps` back-to-back calls (at least 2 ms), until
 * `minSeconds` per function and `minSamples` rounds have passed. Returns the median time of one
 * call per function; a first call over `skipAboveMs` ends it (all skipped).
 */
async function measureInTurns(
  fns: ReadonlyArray<() => unknown | Promise<unknown>>,
  opts: { skipAboveMs: number; minSeconds?: number; minSamples?: number },
): Promise<Timing[]> {
  const minSeconds = opts.minSeconds ?? 0.5;
  const minSamples = opts.minSamples ?? 7;
  const first: number[] = [];
  for (const fn of fns) {
    const t0 = performance.now();
    await fn();
    first.push(performance.now() - t0);
  }
  if (first.some((t) => t > opts.skipAboveMs))
    return first.map((firstMs) => ({ ms: Number.NaN, samples: 0, reps: 0, firstMs, skipped: true }));
  const reps: number[] = [];
  for (const [i, fn] of fns.entries()) {
    const t0 = performance.now();
    await fn();
    reps.push(
      Math.max(1, Math.ceil(2 / Math.max(Math.min(first[i] as number, performance.now() - t0), 1e-4))),
    );
  }
  const times: number[][] = fns.map(() => []);
  const start = performance.now();
  for (let round = 0; ; round++) {
    for (const [i, fn] of fns.entries()) {
      const t0 = performance.now();
      for (let r = 0; r < (reps[i] as number); r++) await fn();
      times[i]?.push((performance.now() - t0) / (reps[i] as number));
    }
    const elapsed = (performance.now() - start) / 1000;
    if (round + 1 >= minSamples && elapsed >= minSeconds * fns.length) break;
  }
  return times.map((t, i) => ({
    ms: median(t),
    samples: t.length,
    reps: reps[i] as number,
    firstMs: first[i] as number,
    skipped: false,
  }));
}

function gemm16Name(key: string, label: string, m: number, n: number, k: number): string {
  return `gemm16 ${key} ${label} ${m}x${k}·${k}x${n}`;
}

/** float32 -> bf16 bits, round to nearest even (finite inputs). */
function bf16Bits(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < u.length; i++) {
    const v = u[i] as number;
    out[i] = (v + 0x7fff + ((v >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** float32 -> f16 bits, round to nearest even (finite inputs; overflow to infinity). */
function f16Bits(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < u.length; i++) {
    const v = u[i] as number;
    const sign = (v >>> 16) & 0x8000;
    const e = ((v >>> 23) & 0xff) - 127 + 15;
    let mant = v & 0x7fffff;
    let r: number;
    let rem: number;
    let half: number;
    if (e >= 31) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      r = mant >>> shift;
      rem = mant & ((1 << shift) - 1);
      half = 1 << (shift - 1);
    } else {
      r = (e << 10) | (mant >>> 13);
      rem = mant & 0x1fff;
      half = 0x1000;
    }
    if (rem > half || (rem === half && (r & 1) === 1)) r++;
    out[i] = sign | r;
  }
  return out;
}

const attnCases: readonly AttnCase[] = [
  { n: 1024, heads: 8, d: 64, keeps: [0.5, 0.25] },
  { n: 1024, heads: 8, d: 128, keeps: [0.5, 0.25] },
  { n: 1024, heads: 32, d: 64, keeps: [0.5, 0.25] },
  { n: 1024, heads: 32, d: 128, keeps: [0.5, 0.25] },
  { n: 4096, heads: 8, d: 64, keeps: [0.5, 0.25] },
  { n: 4096, heads: 8, d: 128, keeps: [0.5, 0.25] },
  { n: 4096, heads: 32, d: 64, keeps: [] },
  { n: 4096, heads: 32, d: 128, keeps: [] },
  // Grouped-query attention (SDAR-8B, Qwen3-8B: 32 heads sharing 8 key/value heads).
  { n: 1024, heads: 32, kvHeads: 8, d: 128, keeps: [] },
  { n: 4096, heads: 32, kvHeads: 8, d: 128, keeps: [] },
];

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

/** [N][H][d] (our canvas / query layout) -> [H][N][d] (the ONNX graph's layout). */
function toHeadMajor(x: Float32Array, n: number, h: number, d: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < h; j++) out.set(x.subarray((i * h + j) * d, (i * h + j + 1) * d), (j * n + i) * d);
  return out;
}

/** The roofline at a thread count, measured when asked: just before the GEMM it judges is timed. */
export type RoofMeter = (threads: number) => Pick<MachineRoof, 'peak_gflops' | 'stream_gbps'>;

/** The roofline time of a float32 GEMM over its measured time, and the roofline, when there is one. */
function ofRoofline(
  roof: Pick<MachineRoof, 'peak_gflops' | 'stream_gbps'> | undefined,
  c: { m: number; n: number; k: number },
  ms: number,
): Pick<KernelRow, 'f32_of_roofline' | 'roofline'> {
  return roof ? { f32_of_roofline: rooflineMs(roof, c.m, c.n, c.k) / ms, roofline: roof } : {};
}

function gflops(flops: number, ms: number): number {
  return flops / (ms * 1e6);
}

export async function runKernels(
  p: BenchPrimitives,
  opts: KernelOptions,
  roofAt?: RoofMeter,
): Promise<{ rows: KernelRow[]; skipped: string[] }> {
  const rows: KernelRow[] = [];
  const skipped: string[] = [];
  const want = (name: string) => !opts.filter || name.includes(opts.filter);
  const progress = (r: KernelRow) => {
    rows.push(r);
    let extra =
      r.ort_fused_ms !== undefined ? `  fused ${fmt(r.ort_fused_ms)} ms ratio ${fmt(r.ratio_fused)}` : '';
    if (r.speedup_vs_dense !== undefined) extra += `  ${fmt(r.speedup_vs_dense)}x vs dense`;
    if (r.speedup_vs_f32 !== undefined)
      extra += `  f32 ${fmt(r.f32_ms)} ms, ${fmt(r.speedup_vs_f32)}x vs f32`;
    console.error(
      `  ${r.name}  t=${r.threads}  ours ${fmt(r.ours_ms)} ms  ort ${fmt(r.ort_ms)} ms  ratio ${fmt(r.ratio)}${extra}`,
    );
  };
  const skip = (what: string) => {
    skipped.push(what);
    console.error(`  skipped: ${what}`);
  };

  // ---- GEMM -------------------------------------------------------------------------------
  for (const c of gemmCases()) {
    if (!want(c.name)) continue;
    const a = randomFloats(c.m * c.k, 1);
    const w = randomFloats(c.n * c.k, 2); // [n][k], as the model stores it
    const wt = new Float32Array(c.k * c.n); // [k][n] for ONNX MatMul
    for (let j = 0; j < c.n; j++) for (let i = 0; i < c.k; i++) wt[i * c.n + j] = w[j * c.k + i] as number;
    const packed = p.packWeight(c.n, c.k, w);
    const out = new Float32Array(c.m * c.n);
    const bytes = matmulModel(c.m, c.n, c.k, wt);
    const feeds = { A: floatTensor(a, [c.m, c.k]) };
    const flops = 2 * c.m * c.n * c.k;
    for (const threads of opts.threads) {
      p.setThreads(threads);
      const ours = () => p.gemm(c.m, c.n, c.k, a, c.k, null, packed, null, out, c.n, false);
      const tOurs = await measure(ours, { skipAboveMs: opts.skipAboveMs });
      const session = await createSession(bytes, threads);
      const tOrt = await measure(() => session.run(feeds), { skipAboveMs: opts.skipAboveMs });
      ours();
      const ref = await runFloat(session, feeds, 'C');
      await session.release();
      if (tOurs.skipped || tOrt.skipped) {
        skip(`${c.name} t=${threads}: first run over ${opts.skipAboveMs / 1000} s`);
        continue;
      }
      progress({
        name: c.name,
        ours_ms: tOurs.ms,
        ort_ms: tOrt.ms,
        ratio: tOrt.ms / tOurs.ms,
        threads,
        gflops_ours: gflops(flops, tOurs.ms),
        gflops_ort: gflops(flops, tOrt.ms),
        max_abs_diff: maxAbsDiff(out, ref),
      });
    }
  }

  // ---- 16-bit GEMM --------------------------------------------------------------------------
  for (const sh of gemm16Shapes) {
    const names = (m: number) => gemm16Dtypes.map((d) => gemm16Name(d.key, sh.label, m, sh.n, sh.k));
    const cases = gemm16Rows.filter((m) => names(m).some(want));
    if (cases.length === 0) continue;
    const { n, k } = sh;
    // bf16-representable weights (hence f16-representable too, but for the few below 2^-14):
    // every engine multiplies by the same weights, so max_abs_diff is a sanity check.
    const w = randomFloats(n * k, 12);
    const wb = bf16Bits(w);
    new Uint32Array(w.buffer, w.byteOffset, w.length).set(Uint32Array.from(wb, (b) => b << 16));
    const wt = new Float32Array(k * n); // [k][n] for ONNX MatMul
    for (let j = 0; j < n; j++) for (let i = 0; i < k; i++) wt[i * n + j] = w[j * k + i] as number;
    const packed = p.packWeight(n, k, w);
    const packed16 = {
      bf16: p.packWeight16(n, k, wb, Dtype16.bf16),
      f16: p.packWeight16(n, k, f16Bits(w), Dtype16.f16),
    };
    for (const m of cases) {
      const a = randomFloats(m * k, 13);
      const feeds = { A: floatTensor(a, [m, k]) };
      const bytes = matmulModel(m, n, k, wt);
      const flops = 2 * m * n * k;
      const out = new Float32Array(m * n);
      for (const threads of opts.threads) {
        p.setThreads(threads);
        const f32 = () => p.gemm(m, n, k, a, k, null, packed, null, out, n, false);
        const runs = gemm16Dtypes.map((d) => {
          const pk = d.dtype === Dtype16.f16 ? packed16.f16 : packed16.bf16;
          return () => p.gemm16(m, n, k, a, k, null, pk, d.dtype, null, out, n, false);
        });
        // The roofline of this moment: the host's bandwidth has phases of seconds to minutes.
        const roof = roofAt?.(threads);
        // Ours in turns; onnxruntime on its own after them: its worker threads spin after a run
        // and would take the cores from the next of ours (and OpenMP's from it).
        const [tF32, ...t16s] = await measureInTurns([f32, ...runs], { skipAboveMs: opts.skipAboveMs });
        if (!tF32) throw new Error('unreachable');
        const session = await createSession(bytes, threads);
        const tOrt = await measure(() => session.run(feeds), { skipAboveMs: opts.skipAboveMs });
        const ref = await runFloat(session, feeds, 'C');
        await session.release();
        const t16 = gemm16Dtypes.map((d, i) => {
          (runs[i] as () => void)();
          return { d, t: t16s[i] as Timing, out: Float32Array.from(out) };
        });
        for (const { d, t, out: mine } of t16) {
          const name = gemm16Name(d.key, sh.label, m, n, k);
          if (!want(name)) continue;
          // bf16 and f16 multiply the exact weights onnxruntime does: beyond summation order
          // (a thousandth of the largest output) the inputs were not the same (in the 15:51 record
          // of 2026-12-05 a view that missed an array's offset gave 131).
          const diff = maxAbsDiff(mine, ref);
          if (
            d.dtype !== Dtype16.bf16Dot &&
            diff > 2 ** -10 * ref.reduce((a, x) => Math.max(a, Math.abs(x)), 0)
          )
            throw new Error(
              `${name}: ours and onnxruntime differ by ${diff}, more than summation order allows`,
            );
          if (t.skipped || tF32.skipped || tOrt.skipped) {
            skip(`${name} t=${threads}: first run over ${opts.skipAboveMs / 1000} s`);
            continue;
          }
          progress({
            name,
            ours_ms: t.ms,
            ort_ms: tOrt.ms,
            ratio: tOrt.ms / t.ms,
            threads,
            gflops_ours: gflops(flops, t.ms),
            gflops_ort: gflops(flops, tOrt.ms),
            f32_ms: tF32.ms,
            speedup_vs_f32: tF32.ms / t.ms,
            ...ofRoofline(roof, { m, n, k }, tF32.ms),
            max_abs_diff: diff,
          });
        }
      }
    }
  }

  // ---- attention ----------------------------------------------------------------------------
  for (const c of attnCases) {
    const { n, heads: h, d } = c;
    const kvh = c.kvHeads ?? h;
    const shape = `N=${n} H=${h}${kvh < h ? ` KV=${kvh}` : ''} d=${d}`;
    const denseName = `attn dense ${shape}`;
    const sparseNames = c.keeps.map((k) => `attn keep=${Math.round(k * 100)}% ${shape}`);
    if (!want(denseName) && !sparseNames.some(want)) continue;
    const scale = 1 / Math.sqrt(d);
    const q = randomFloats(n * h * d, 3);
    const kc = randomFloats(n * kvh * d, 4);
    const vc = randomFloats(n * kvh * d, 5);
    const qpos = Int32Array.from({ length: n }, (_, i) => i);
    const o = new Float32Array(n * h * d);
    const lse = new Float32Array(n * h);
    const eagerFeeds = {
      Q: floatTensor(toHeadMajor(q, n, h, d), [h, n, d]),
      K: floatTensor(toHeadMajor(kc, n, kvh, d), [kvh, n, d]),
      V: floatTensor(toHeadMajor(vc, n, kvh, d), [kvh, n, d]),
    };
    const fusedFeeds = {
      Q: floatTensor(q, [1, n, h * d]),
      K: floatTensor(kc, [1, n, kvh * d]),
      V: floatTensor(vc, [1, n, kvh * d]),
    };
    const flops = (nk: number) => 4 * n * nk * d * h;
    // Engines whose first run went over the limit on this shape: not run at later thread counts.
    const over = new Map<string, string>();

    const timeCase = async (name: string, kpos: Int32Array) => {
      const nk = kpos.length;
      const gather = nk < n ? nk : 0;
      const extra: Record<string, OrtTensor> = gather ? { idx: int32Tensor(kpos, [nk]) } : {};
      const engines = [
        {
          key: 'ort',
          bytes: attentionModel(h, n, n, d, gather, kvh),
          feeds: { ...eagerFeeds, ...extra },
          headMajor: true,
        },
        {
          key: 'fused',
          bytes: fusedAttentionModel(h, n, n, d, gather, kvh),
          feeds: { ...fusedFeeds, ...extra },
          headMajor: false,
        },
      ];
      const ours = () => p.attention(n, nk, h, kvh, d, scale, q, kc, vc, qpos, kpos, null, o, lse);
      const out: Array<{
        threads: number;
        ours: number;
        ort: number | null;
        fused: number | null;
        diff: number;
      } | null> = [];
      for (const threads of opts.threads) {
        const skipNote = (engine: string, t: Timing) => {
          const msg = `${name} t=${threads}: ${engine} skipped, first run ${fmt(t.firstMs / 1000)} s > ${opts.skipAboveMs / 1000} s`;
          over.set(`${name}:${engine}`, msg);
          skip(msg);
        };
        const prior = (engine: string) => {
          const m = over.get(`${name}:${engine}`);
          if (m) skip(`${name} t=${threads}: ${engine} skipped (${m.split(': ')[0]} went over the limit)`);
          return m !== undefined;
        };
        if (prior('ours')) {
          out.push(null);
          continue;
        }
        p.setThreads(threads);
        const tOurs = await measure(ours, { skipAboveMs: opts.skipAboveMs });
        if (tOurs.skipped) {
          skipNote('ours', tOurs);
          out.push(null);
          continue;
        }
        ours();
        const mine = Float32Array.from(o);
        const mineHeadMajor = toHeadMajor(mine, n, h, d);
        const res = {
          threads,
          ours: tOurs.ms,
          ort: null as number | null,
          fused: null as number | null,
          diff: 0,
        };
        const timeEngine = async (e: (typeof engines)[number], again: boolean) => {
          const label =
            e.key === 'ort' ? 'onnxruntime MatMul-Softmax-MatMul' : 'onnxruntime MultiHeadAttention';
          if (prior(label)) return;
          const session = await createSession(e.bytes, threads);
          const t = await measure(() => session.run(e.feeds), { skipAboveMs: opts.skipAboveMs });
          if (t.skipped) skipNote(label, t);
          else if (again) res.fused = Math.min(res.fused ?? t.ms, t.ms);
          else {
            res[e.key as 'ort' | 'fused'] = t.ms;
            const ref = await runFloat(session, e.feeds, 'O');
            res.diff = Math.max(res.diff, maxAbsDiff(e.headMajor ? mineHeadMajor : mine, ref));
          }
          await session.release();
        };
        for (const e of engines) await timeEngine(e, false);
        // Ours and the fused op get a second block each, in alternation after the first round, and
        // keep the better of their two medians: the host's phases last seconds, and with one block
        // each the two could meet different phases (a row's ratio moved by up to 10% between runs).
        const fused = engines.find((e) => e.key === 'fused');
        if (fused && res.fused !== null) {
          res.ours = Math.min(res.ours, (await measure(ours)).ms);
          await timeEngine(fused, true);
        }
        out.push(res);
      }
      return out;
    };

    const emit = (
      name: string,
      nk: number,
      r: NonNullable<Awaited<ReturnType<typeof timeCase>>[number]>,
      dense?: number,
    ) => {
      const row: KernelRow = {
        name,
        ours_ms: r.ours,
        ort_ms: r.ort,
        ratio: r.ort === null ? null : r.ort / r.ours,
        threads: r.threads,
        gflops_ours: gflops(flops(nk), r.ours),
      };
      if (r.ort !== null) row.gflops_ort = gflops(flops(nk), r.ort);
      row.ort_fused_ms = r.fused;
      row.ratio_fused = r.fused === null ? null : r.fused / r.ours;
      if (r.fused !== null) row.gflops_ort_fused = gflops(flops(nk), r.fused);
      if (dense !== undefined) {
        row.dense_ms = dense;
        row.speedup_vs_dense = dense / r.ours;
      }
      row.max_abs_diff = r.diff;
      progress(row);
    };

    const dense = await timeCase(
      denseName,
      Int32Array.from({ length: n }, (_, i) => i),
    );
    if (want(denseName)) for (const r of dense) if (r) emit(denseName, n, r);
    for (const [ki, keep] of c.keeps.entries()) {
      const name = sparseNames[ki] as string;
      if (!want(name)) continue;
      const nk = Math.round(n * keep);
      const sparse = await timeCase(name, randomSubset(n, nk, 100 + ki));
      sparse.forEach((r, i) => {
        if (r) emit(name, nk, r, dense[i]?.ours);
      });
    }
  }
  return { rows, skipped };
}

export function printKernelTable(rows: readonly KernelRow[]): string {
  return table(
    [
      'case',
      'thr',
      'ours ms',
      'ort ms',
      'ratio',
      'fused ms',
      'ratio f',
      'GF/s ours',
      'GF/s ort',
      'GF/s f',
      'vs dense',
      'f32 ms',
      'vs f32',
      'f32 roof',
    ],
    rows.map((r) => [
      r.name,
      String(r.threads),
      fmt(r.ours_ms),
      fmt(r.ort_ms),
      fmt(r.ratio),
      fmt(r.ort_fused_ms),
      fmt(r.ratio_fused),
      fmt(r.gflops_ours),
      fmt(r.gflops_ort),
      fmt(r.gflops_ort_fused),
      r.speedup_vs_dense === undefined ? '' : `${fmt(r.speedup_vs_dense)}x`,
      r.f32_ms === undefined ? '' : fmt(r.f32_ms),
      r.speedup_vs_f32 === undefined ? '' : `${fmt(r.speedup_vs_f32)}x`,
      r.f32_of_roofline === undefined ? '' : fmt(r.f32_of_roofline),
    ]),
  );
}

function ccVersion(): string {
  try {
    return execFileSync('cc', ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? '';
  } catch {
    return 'unknown';
  }
}

/** The suite entry point used by bench/run.ts. */
export async function kernelsSuite(
  p: BenchPrimitives,
  opts: KernelOptions & { to: Destination },
): Promise<void> {
  const started = new Date();
  const loadBefore = os.loadavg();
  const others = otherProcessesMeter();
  console.error(
    `kernels: threads ${opts.threads.join(',')}${opts.filter ? `, filter "${opts.filter}"` : ''}`,
  );
  // The roofline of the run's start, at each thread count, for the record; each GEMM row is held to
  // one measured just before it.
  const roofs = await machineRoofs(opts.threads);
  const meter = await pureRooflineMeter();
  const roofAt: RoofMeter = (threads) => {
    const r = meter(threads);
    return { peak_gflops: r.peakFlops / 1e9, stream_gbps: r.bandwidth / 1e9 };
  };
  for (const r of roofs)
    console.error(
      `  roofline t=${r.threads}: GEMM peak ${fmt(r.peak_gflops)} GFLOP/s, stream ${fmt(r.stream_gbps)} GB/s (our GEMM streams weights at ${fmt(r.weight_gbps)}), ridge ${r.ridge_rows} rows`,
    );
  const { rows, skipped } = await runKernels(p, opts, roofAt);
  const machine = machineInfo({
    onnxruntime_node: ortVersion,
    cc: ccVersion(),
    cc_flags: [...DEFAULT_FLAGS, process.env.KVPLAN_CFLAGS ?? ''].join(' ').trim(),
    load_average_before: loadBefore.map((x) => Math.round(x * 100) / 100),
    gemm16_paths: Object.fromEntries(gemm16Dtypes.map((d) => [d.key, p.gemm16Path(d.dtype)])),
  });
  const seconds = (Date.now() - started.getTime()) / 1000;
  const otherCores = others();
  const result = {
    suite: 'kernels',
    date: started.toISOString(),
    seconds: Math.round(seconds * 10) / 10,
    other_processes_busy_cores: otherCores,
    machine,
    roofline: roofs,
    rows,
    skipped,
  };
  console.log(
    `machine: ${machine.cpu} (${machine.simd}), ${machine.cores} cores, node ${machine.node}, ` +
      `onnxruntime-node ${ortVersion}, ${machine.cc}`,
  );
  console.log(`gemm16 paths: ${JSON.stringify(machine.gemm16_paths)}`);
  console.log(printKernelTable(rows));
  for (const s of skipped) console.log(`skipped: ${s}`);
  console.log(
    'ratio = ort_ms / ours_ms (above 1: ours faster); ort = MatMul / MatMul-Softmax-MatMul graph, ' +
      'fused = onnxruntime com.microsoft.MultiHeadAttention; vs dense = our dense ms / this ms; ' +
      'gemm16: 16-bit weights (bf16-dot: activations rounded to bf16 too), vs f32 = our float32 GEMM ms / this ms, ' +
      'ort = float32 MatMul',
  );
  console.log(
    `total ${result.seconds} s; other processes kept ${fmt(otherCores)} cores busy on average ` +
      `(load average before ${loadBefore.map((x) => x.toFixed(2)).join(' ')})`,
  );
  saveResults(opts.to, result);
}
