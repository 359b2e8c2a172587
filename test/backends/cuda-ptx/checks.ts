/**
 * The PTX backend's checks against float64 references, on any CudaDevice: the JS emulator here,
 * the koffi driver on an NVIDIA GPU. runner.test.ts asserts them; bench/gpu/check.ts runs them on
 * a GPU machine without vitest and reports the numbers; bench/gpu/prepare.ts records them for the
 * Python harness.
 *
 * Budgets are derived as everywhere in kvplan (DESIGN.md section 4): a primitive's error against an
 * independent float64 reference must stay within 4x the error of an eager float32 evaluation of the
 * same computation (the emulator with every operation rounded) plus 4 units of 2^-24 of the
 * reference's scale; a generation's every exact or refresh step within float32Budget.
 */
import {
  EW_THREADS,
  GEMM_PATHS,
  type GemmPath,
  type GemmSplit,
  type GemmSplitPolicy,
  generateKernel,
  type KernelSpec,
  MMA_DTYPES,
  pathDtype,
} from '../../../src/backends/cuda-ptx/kernels/index.ts';
import { type CudaDevice, type KernelArg, packParams } from '../../../src/backends/cuda-ptx/launch.ts';
import { buildPtx, PtxRunner } from '../../../src/backends/cuda-ptx/runner.ts';
import { attentionPartial, mergePartials } from '../../../src/ir/attention.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { softmaxStats } from '../../../src/model/golden.ts';
import { halfToFloat32 } from '../../../src/model/half.ts';
import { createRng, type Rng, randomWeights } from '../../../src/model/weights.ts';
import { compilePlan } from '../../../src/passes/compile.ts';
import { type LockstepGap, LockstepRunner } from '../../../src/runtime/lockstep.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { ReferenceRunner } from '../../../src/runtime/referenceRunner.ts';
import type { StepRunner } from '../../../src/runtime/runner.ts';
import { type GenerationResult, simulateGeneration } from '../../../src/runtime/simulate.ts';
import { float32Budget } from '../../../src/runtime/verify.ts';
import { examplePlan } from '../../runtime/support.ts';
import { derivedBound, maxError } from '../../support/bounds.ts';
import { EmulatedDevice, halfBits, roundTo } from './emulator.ts';

export interface Comparison {
  readonly label: string;
  /** max |got - reference| over the finite reference entries; NaN when got has a NaN. */
  readonly error: number;
  readonly bound: number;
  /** Non-finite reference entries (-inf LSE of empty rows) that got does not reproduce exactly. */
  readonly mismatched: number;
  readonly ok: boolean;
}

export function compare(
  label: string,
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
  eager: ArrayLike<number>,
): Comparison {
  let mismatched = 0;
  for (let i = 0; i < ref.length; i++)
    if (!Number.isFinite(ref[i] as number) && got[i] !== ref[i]) mismatched++;
  const bound = derivedBound(ref, eager);
  const error = maxError(got, ref);
  return { label, error, bound, mismatched, ok: error <= bound && mismatched === 0 };
}

const floats = (r: Rng, n: number) => Float32Array.from({ length: n }, () => r.uniform() * 2 - 1);

/** One kernel launch on device buffers; returns the outputs read back. */
type Launcher = (device: CudaDevice) => Float32Array[];

const ptrArgs = (ps: readonly (bigint | undefined)[]): KernelArg[] =>
  ps.map((value) => ({ type: 'u64', value: value as bigint }));
const u32Args = (xs: readonly number[]): KernelArg[] => xs.map((value) => ({ type: 'u32', value }));

/** A further launch of a primitive case, on the same buffers (a split GEMM's reduction). */
interface Then {
  readonly spec: KernelSpec;
  readonly grid: readonly [number, number, number];
  readonly args: (ins: bigint[], outs: bigint[]) => KernelArg[];
}

/**
 * Inputs uploaded (null: a null pointer), outputs poisoned, one launch with `args(inputs, outputs)`
 * (and any `then` after it); an output of n floats is read back whole, one given as parts ([3n, n])
 * a part at a time, each part an output compared on its own; `scratch` floats follow the outputs
 * in `outs`, poisoned and not read back.
 */
function launcher(
  spec: KernelSpec,
  grid: readonly [number, number, number],
  inputs: readonly (Float32Array | Int32Array | Uint16Array | null)[],
  outputs: readonly (number | readonly number[])[],
  args: (ins: bigint[], outs: bigint[]) => KernelArg[],
  then: readonly Then[] = [],
  scratch = 0,
): Launcher {
  return (device) => {
    const arch = device.computeCapability[0] >= 9 ? 'sm_90' : 'sm_80';
    const launches = [{ spec, grid, args }, ...then].map((l) => {
      const k = generateKernel(l.spec, arch);
      return { ...l, k, fn: device.loadKernel(k.ptx, k.name, k.sharedBytes) };
    });
    const ins = inputs.map((x) => {
      if (!x) return 0n;
      const p = device.alloc(x.byteLength);
      device.upload(p, x);
      return p;
    });
    const parts = outputs.map((o) => (typeof o === 'number' ? [o] : o));
    const outs = [...parts, ...(scratch ? [[scratch]] : [])].map((ns) => {
      const bytes = ns.reduce((a, b) => a + b, 0) * 4;
      const p = device.alloc(bytes);
      device.fill(p, 0x7f, bytes);
      return p;
    });
    for (const l of launches)
      device.launch(l.fn, l.grid, [l.k.block, 1, 1], l.k.sharedBytes, packParams(l.args(ins, outs)));
    device.synchronize();
    const got = parts.flatMap((ns, i) => {
      let at = 0;
      return ns.map((n) => {
        const o = new Float32Array(n);
        device.download(o, (outs[i] as bigint) + BigInt(at * 4));
        at += n;
        return o;
      });
    });
    for (const p of [...ins, ...outs]) if (p !== 0n) device.free(p);
    return got;
  };
}

/**
 * Where a k-major slot ([k][n]) is compared with the model's [n][k] weight: (o, i) pairs at the
 * corners and inside.
 */
export const transposeSamples = (n: number, k: number): readonly (readonly [number, number])[] => [
  [0, 0],
  [n - 1, 0],
  [0, k - 1],
  [n - 1, k - 1],
  [n >> 1, k >> 2],
];

export interface PrimitiveCase {
  readonly name: string;
  readonly run: Launcher;
  /** Independent float64 references of the outputs, in order. */
  readonly reference: readonly Float64Array[];
}

/** A GEMM kernel: a path over float32 weights, or the GEMM of a weight stored in 16 bits. */
export type GemmSpec = Extract<KernelSpec, { op: 'gemm' | 'gemm16' }>;

/**
 * C = A[rows] · W + bias through a GEMM kernel, W k-major [K][N] (float32, or `dtype` bits for
 * gemm16); the reference rounds the inputs as the kernel does (A and a float32 W to the tensor-core
 * dtype; 16-bit W is exact).
 */
export function gemmCase(
  spec: GemmSpec,
  m: number,
  n: number,
  k: number,
  seed: number,
  split?: GemmSplit,
): PrimitiveCase {
  const r = createRng(seed);
  const src = m + 11;
  const a = floats(r, src * k);
  const w32 = floats(r, k * n);
  const bias = floats(r, n);
  const rows = Int32Array.from({ length: m }, () => Math.floor(r.uniform() * src));
  const round = roundTo(spec.op === 'gemm16' ? spec.dtype : pathDtype(spec.path));
  const w = spec.op === 'gemm16' ? Uint16Array.from(w32, (x) => halfBits(spec.dtype, x)) : w32;
  const ar = Float64Array.from(a, round);
  const wr =
    spec.op === 'gemm16' ? halfToFloat32(w as Uint16Array, spec.dtype) : Float64Array.from(w32, round);
  const ref = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = bias[j] as number;
      for (let t = 0; t < k; t++)
        s += (ar[(rows[i] as number) * k + t] as number) * (wr[t * n + j] as number);
      ref[i * n + j] = s;
    }
  const grid = [Math.ceil(n / 64), Math.ceil(m / 64), split?.splits ?? 1] as const;
  // Split: the partials go to scratch (zstride floats apart, more than m * n as the renderer's are),
  // and the reduction writes C and adds the bias.
  const zstride = split ? (m + 3) * n : 0;
  const run = split
    ? launcher(
        spec,
        grid,
        [a, rows, w, bias],
        [m * n],
        ([pa, pr, pw], [, ws]) => [
          ...ptrArgs([ws, pa, pr, pw, 0n]),
          ...u32Args([m, n, k, k, n, split.kchunk, zstride]),
        ],
        [
          {
            spec: { op: 'splitk_reduce' },
            grid: [Math.ceil((m * n) / EW_THREADS), 1, 1],
            args: ([, , , pb], [pc, ws]) => [
              ...ptrArgs([pc, ws, pb]),
              ...u32Args([m * n, n, split.splits, zstride]),
            ],
          },
        ],
        split.splits * zstride,
      )
    : launcher(spec, grid, [a, rows, w, bias], [m * n], ([pa, pr, pw, pb], [pc]) => [
        ...ptrArgs([pc, pa, pr, pw, pb]),
        ...u32Args([m, n, k, k, n, k, 0]),
      ]);
  const what = spec.op === 'gemm16' ? `gemm16 ${spec.dtype}` : `gemm ${spec.path}`;
  const how = split ? `, K in ${split.splits} splits of ${split.kchunk}` : '';
  return { name: `${what} ${m}x${n}x${k}${how}`, run, reference: [ref] };
}

/** Every GEMM kernel: each path over float32 weights, and the 16-bit-weight GEMM of each dtype. */
export const GEMM_SPECS: readonly GemmSpec[] = [
  ...GEMM_PATHS.map((path): GemmSpec => ({ op: 'gemm', path })),
  ...MMA_DTYPES.map((dtype): GemmSpec => ({ op: 'gemm16', dtype })),
];

/**
 * Attention over an index list of canvas keys, block-causal, with a query that sees no key (its
 * block is before every key's) and GQA; the merge variant merges with a random partial.
 */
export function attentionCase(
  hd: number,
  heads: number,
  kvh: number,
  merge: boolean,
  seed: number,
  sequences = false,
): PrimitiveCase {
  const r = createRng(seed);
  const L = 160;
  const nq = 37;
  const qpos = Int32Array.from({ length: nq }, (_, i) => (i * 4) % L);
  const kpos = Int32Array.from({ length: 131 }, (_, j) => ((j * 7 + 3) % (L - 1)) + 1);
  const blocks = Int32Array.from({ length: L }, (_, p) => (p === 0 ? -5 : Math.floor(p / 16) - 1));
  // Two sequences share the canvas: a query sees only keys of its own.
  const seqs = sequences ? Int32Array.from({ length: L }, (_, p) => (p < 70 ? 0 : 1)) : undefined;
  const q = floats(r, nq * heads * hd);
  const kc = floats(r, L * kvh * hd);
  const vc = floats(r, L * kvh * hd);
  const scale = 1 / Math.sqrt(hd);
  const gather = (c: Float32Array) => {
    const out = new Float64Array(kpos.length * kvh * hd);
    kpos.forEach((p, j) => {
      out.set(c.subarray(p * kvh * hd, (p + 1) * kvh * hd), j * kvh * hd);
    });
    return out;
  };
  const opts = { scale, mask: 'block_causal' as const, blocks, seqs, heads, kvHeads: kvh, headDim: hd };
  let ref = attentionPartial(Float64Array.from(q), gather(kc), gather(vc), qpos, kpos, opts);
  const prevO = floats(r, nq * heads * hd);
  const prevL = Float32Array.from({ length: nq * heads }, (_, i) =>
    i % 5 === 0 ? -Infinity : r.uniform() * 4 - 2,
  );
  if (merge) ref = mergePartials(ref.o, ref.lse, Float64Array.from(prevO), Float64Array.from(prevL), hd);
  const group = heads / kvh;
  const run = launcher(
    { op: 'attention', headDim: hd, merge, sequences },
    [Math.ceil((nq * group) / 32), kvh, 1],
    [q, kc, vc, qpos, kpos, blocks, merge ? prevO : null, merge ? prevL : null, seqs ?? null],
    [nq * heads * hd, nq * heads],
    ([pq, pk, pv, pqp, pkp, pb, pop, plp, ps], [po, pl]) => [
      ...ptrArgs([po, pl, pq, pk, pv, pqp, pkp, pb]),
      ...u32Args([nq, kpos.length, heads, group, kvh * hd, hd, kvh * hd, hd]),
      { type: 'f32', value: scale },
      ...(merge ? ptrArgs([pop, plp]) : []),
      ...(sequences ? ptrArgs([ps]) : []),
    ],
  );
  return {
    name: `attention hd${hd} ${heads}/${kvh} heads${merge ? ' + merge' : ''}${sequences ? ', 2 sequences' : ''}`,
    run,
    reference: [ref.o, ref.lse],
  };
}

/**
 * kvp_softmax_stats over rows of logits of a vocabulary of v (the excluded token `exclude`): a
 * tie for the largest, the excluded logit the largest of its row, a NaN. Its one buffer is read
 * as the kernel lays it out (src/backends/deviceStats.ts), the statistics and the argmax as two
 * outputs, each compared at its own scale.
 */
function statsCase(v: number, exclude: number, seed: number): PrimitiveCase {
  const r = createRng(seed);
  const rows = 5;
  const logits = Float32Array.from({ length: rows * v }, () => (r.uniform() * 2 - 1) * 6);
  logits[v + 5] = 9;
  logits[2 * v - 2] = 9;
  logits[2 * v + exclude] = 20;
  logits[3 * v + 7] = Number.NaN;
  const stats = new Float64Array(3 * rows);
  const argmax = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const row = Float64Array.from(logits.subarray(i * v, (i + 1) * v));
    if (!row.every(Number.isFinite)) {
      argmax[i] = -1;
      continue;
    }
    const s = softmaxStats(row, exclude);
    stats.set([s.confidence, s.margin, s.entropy], 3 * i);
    argmax[i] = s.argmax;
  }
  const run = launcher({ op: 'softmax_stats' }, [rows, 1, 1], [logits], [[3 * rows, rows]], ([pl], [ps]) => [
    ...ptrArgs([pl, ps]),
    ...u32Args([rows, v, exclude]),
  ]);
  return { name: `softmax_stats v=${v}`, run, reference: [stats, argmax] };
}

export const primitiveCases = (): PrimitiveCase[] => [
  ...GEMM_SPECS.map((spec) => gemmCase(spec, 70, 96, 72, 1)),
  gemmCase({ op: 'gemm', path: 'fma' }, 130, 200, 264, 2),
  gemmCase({ op: 'gemm', path: 'mma-f16' }, 130, 200, 264, 3),
  gemmCase({ op: 'gemm16', dtype: 'bf16' }, 130, 200, 264, 8),
  // K split in three (the last split short), one row tile as in a cached step, and two row tiles.
  gemmCase({ op: 'gemm16', dtype: 'bf16' }, 33, 200, 264, 9, { splits: 3, kchunk: 96 }),
  gemmCase({ op: 'gemm', path: 'fma' }, 70, 96, 264, 10, { splits: 3, kchunk: 96 }),
  gemmCase({ op: 'gemm', path: 'mma-f16' }, 70, 96, 264, 11, { splits: 3, kchunk: 96 }),
  ...[false, true].flatMap((merge) => [
    attentionCase(16, 4, 2, merge, 4),
    attentionCase(128, 4, 1, merge, 5),
  ]),
  attentionCase(16, 4, 2, false, 6, true),
  attentionCase(128, 4, 1, true, 7, true),
  statsCase(300, 17, 9),
  statsCase(5000, 4000, 10),
];

/** Runs a primitive on a device and compares every output with its reference under the derived bound. */
export function checkPrimitive(c: PrimitiveCase, device: CudaDevice): Comparison[] {
  const got = c.run(device);
  const eager = c.run(new EmulatedDevice({ eager: true }));
  return c.reference.map((ref, i) =>
    compare(`${c.name} [${i}]`, got[i] as Float32Array, ref, eager[i] as Float32Array),
  );
}

export interface PlanCheck {
  readonly plan: string;
  readonly config: string;
  /** Exact plans are checked at every step, approximate ones at their refresh steps. */
  readonly exact: boolean;
  readonly checkedSteps: number;
  readonly maxDeviation: number;
  readonly eagerError: number;
  /** Largest deviation / budget over the checked steps: at most 1 passes. */
  readonly worst: number;
  /**
   * Largest deviation / budget at every step against the float64 reference running the same plan on
   * the same lists (LockstepRunner), cached steps included: at most 1 passes.
   */
  readonly lockstepWorst: number;
  /** Exact plans only: the generation commits the same tokens as the eager float32 reference. */
  readonly sameTokens?: boolean;
  readonly result: GenerationResult;
}

export interface PlanCheckOptions {
  /** Wraps every runner, e.g. to mark step boundaries in a recording. */
  readonly wrap?: (r: StepRunner) => StepRunner;
  readonly gemm?: GemmPath;
  readonly split?: GemmSplitPolicy;
}

/**
 * A plan's generation through the PTX runner against the float64 golden, every exact or refresh
 * step within the float32 budget derived from the eager float32 reference.
 */
export async function checkPlan(
  name: string,
  base: ModelConfig,
  device: CudaDevice,
  opts: PlanCheckOptions = {},
): Promise<PlanCheck> {
  const plan = examplePlan(name);
  const config = modelFor(plan, base);
  const weights = randomWeights(config, 21);
  const prompt = Int32Array.from([3, 1, 4, 1, 5]);
  const L = prompt.length + 8;
  const arch = device.computeCapability[0] >= 9 ? 'sm_90' : 'sm_80';
  const build = buildPtx(plan, config, L, {
    arch,
    ...(opts.gemm ? { gemm: opts.gemm } : {}),
    ...(opts.split ? { split: opts.split } : {}),
  });
  const gen = { config, weights, prompt, genLen: 8, seed: 21 };
  const runners: PtxRunner[] = [];
  const lowered = compilePlan(plan, config, { target: 'reference' }).lowered;
  const pairs: LockstepRunner[] = [];
  const paired = (r: StepRunner, n: number) => {
    const pair = new LockstepRunner(r, new ReferenceRunner(lowered, weights, n));
    pairs.push(pair);
    return pair;
  };
  const result = await simulateGeneration(plan, build.lowered, {
    ...gen,
    runner: (n) => {
      const r = new PtxRunner(build, weights, n, device);
      runners.push(r);
      return paired(opts.wrap ? opts.wrap(r) : r, n);
    },
  });
  for (const r of runners) r.release();
  const eager = await simulateGeneration(plan, lowered, {
    ...gen,
    runner: (n) => paired(new ReferenceRunner(lowered, weights, n, true), n),
  });
  const [ptxGaps, eagerGaps] = pairs.map((p) => p.gaps) as [LockstepGap[], LockstepGap[]];
  const eagerGap = Math.max(...eagerGaps.map((g) => g.deviation));
  const checked = (g: GenerationResult) =>
    g.steps.filter((s) => plan.classification.exact || s.phase === 'refresh');
  const eagerError = Math.max(...checked(eager).map((s) => s.deviation));
  const steps = checked(result);
  return {
    plan: name,
    config: config.name,
    exact: plan.classification.exact,
    checkedSteps: steps.length,
    maxDeviation: Math.max(...steps.map((s) => s.deviation)),
    eagerError,
    worst: Math.max(...steps.map((s) => s.deviation / float32Budget(eagerError, s.scale))),
    lockstepWorst: Math.max(...ptxGaps.map((g) => g.deviation / float32Budget(eagerGap, g.scale))),
    ...(plan.classification.exact ? { sameTokens: sameTokens(result.tokens, eager.tokens) } : {}),
    result,
  };
}

const sameTokens = (a: Int32Array, b: Int32Array) => a.length === b.length && a.every((x, i) => x === b[i]);
