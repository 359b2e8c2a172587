import { describe, expect, test } from 'vitest';
import { buildCpu, CpuRunner } from '../../src/backends/cpu/runner.ts';
import { buildWebGpu, WebGpuRunner } from '../../src/backends/webgpu/runner.ts';
import type { CheckedPlan } from '../../src/dsl/check.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import type { LoweredPlan } from '../../src/ir/lower.ts';
import type { HostTensor } from '../../src/ir/tensor.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights, type Weights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { eosStop, type GenerateResult, generate } from '../../src/runtime/generate.ts';
import { modelFor } from '../../src/runtime/modelFor.ts';
import type { StepRunner } from '../../src/runtime/runner.ts';
import type { StepInfo } from '../../src/runtime/simulate.ts';
import { gpuOrSkip } from '../backends/webgpu/support.ts';
import { exampleCases, examplePlan } from './support.ts';

// Acquired while collecting, so that a missing adapter skips visibly (with its reason).
const gpu = await gpuOrSkip('WebGPU batch tests');

/** Three prompts of different lengths: the batch's canvas is 11 + 13 + 16 rows. */
const prompts = [
  [5, 2, 7],
  [1, 4, 1, 5, 9],
  [2, 6, 5, 3, 5, 8, 9, 7],
].map((p) => Int32Array.from(p));
const genLength = 8;
const seed = 11;
const SHARPEN = 8;

interface Setup {
  readonly plan: CheckedPlan;
  readonly config: ModelConfig;
  readonly weights: Weights;
  readonly lowered: LoweredPlan;
  readonly runner?: (L: number) => StepRunner;
}

interface Run {
  readonly result: GenerateResult;
  /** Per sequence, what each of its steps computed. */
  readonly steps: StepInfo[][];
}

async function run(s: Setup, ps: readonly Int32Array[], first: number, eosTokenId?: number): Promise<Run> {
  const steps: StepInfo[][] = ps.map(() => []);
  const result = await generate({
    model: { config: s.config, weights: s.weights },
    plan: s.plan,
    lowered: s.lowered,
    prompts: ps,
    genLength,
    seed: seed + first,
    ...(s.runner ? { runner: s.runner } : {}),
    ...(eosTokenId === undefined ? {} : { eosTokenId }),
    // A step's logits are the runner's until the next step: kept as a copy.
    logits: true,
    onStep: (n, info) => {
      const logits = info.logits as HostTensor;
      steps[n]?.push({ ...info, logits: { shape: logits.shape, data: logits.data.slice() } });
    },
  });
  return { result, steps };
}

/**
 * Each prompt generated alone, with the seed its place in the batch gives it. One after another:
 * CPU runners of one library share its buffers.
 */
async function alone(s: Setup, eos?: number, ps = prompts): Promise<Run[]> {
  const out: Run[] = [];
  for (const [i, p] of ps.entries()) out.push(await run(s, [p], i, eos));
  return out;
}

/**
 * A batch must compute every sequence exactly as it computes alone, not merely closely: every
 * stage computes each row with the same operations in the same order whatever rows run beside it
 * (GEMM, norms, RoPE and the elementwise kernels are row by row; attention skips the keys of other
 * sequences, and the CPU kernel never tiles keys of two sequences together). So the derived bound
 * on |batch logit - alone logit| is 0, and the tokens and steps follow.
 */
function expectSameAsAlone(batch: Run, solo: readonly Run[]): void {
  for (const [i, one] of solo.entries()) {
    const b = batch.result.sequences[i];
    const a = one.result.sequences[0];
    expect(b?.tokens, `sequence ${i}`).toEqual(a?.tokens);
    expect(b?.steps).toBe(a?.steps);
    const bs = batch.steps[i] ?? [];
    const as = one.steps[0] ?? [];
    expect(bs.length).toBe(as.length);
    for (const [t, step] of bs.entries()) {
      const other = as[t] as StepInfo;
      expect(step.phase).toBe(other.phase);
      expect(step.out).toEqual(other.out);
      expect((step.logits as HostTensor).data).toEqual((other.logits as HostTensor).data);
    }
  }
}

/** Steps at which sequences of the batch were in different phases (so a layer ran as several calls). */
function mixedSteps(batch: Run): number {
  const phases = new Map<number, Set<string>>();
  for (const seq of batch.steps)
    for (const s of seq) phases.set(s.step, (phases.get(s.step) ?? new Set()).add(s.phase));
  return [...phases.values()].filter((p) => p.size > 1).length;
}

/**
 * A random model made confident (its final norm scaled up), so that threshold rules commit a
 * varying number of tokens per step and the sequences of a batch drift apart in their schedules.
 */
function setupFor(name: string, base: ModelConfig): Omit<Setup, 'lowered'> {
  const plan = examplePlan(name);
  const config = modelFor(plan, base);
  const weights = randomWeights(config, 5);
  const norm = weights.get('model.norm.weight');
  if (norm) weights.set('model.norm.weight', { ...norm, data: norm.data.map((x) => x * SHARPEN) });
  return { plan, config, weights };
}

const canvasRows = (ps: readonly Int32Array[]) => ps.reduce((a, p) => a + p.length + genLength, 0);

const cpuSetup = (name: string, base: ModelConfig, ps: readonly Int32Array[]): Setup => {
  const s = setupFor(name, base);
  const build = buildCpu(s.plan, s.config, canvasRows(ps));
  return { ...s, lowered: build.lowered, runner: (n: number) => new CpuRunner(build, s.weights, n) };
};

describe('a batch of sequences of different lengths equals each sequence generated alone', () => {
  const mixed = new Map<string, number>();

  test.each(exampleCases)('%s on %s, reference backend (float64)', async (name, _c, base) => {
    const s = setupFor(name, base);
    const setup = { ...s, lowered: compilePlan(s.plan, s.config, { target: 'reference' }).lowered };
    const batch = await run(setup, prompts, 0);
    expectSameAsAlone(batch, await alone(setup));
    mixed.set(name, mixedSteps(batch));
  });

  test.each(exampleCases)('%s on %s, CPU backend', async (name, _c, base) => {
    const setup = cpuSetup(name, base, prompts);
    expectSameAsAlone(await run(setup, prompts, 0), await alone(setup));
  });

  test.each(['baseline', 'fast-dllm-dual'])(
    '%s, CPU backend, sequences longer than an attention tile of keys',
    async (name) => {
      // Over 64 keys (the AVX-512 tile): batched, a sequence's keys start mid-tile.
      const long = [30, 45, 20].map((n, s) => Int32Array.from({ length: n }, (_, i) => (7 * i + s) % 40));
      const setup = cpuSetup(name, presets.tiny as ModelConfig, long);
      expectSameAsAlone(await run(setup, long, 0), await alone(setup, undefined, long));
    },
  );

  test.skipIf(!gpu).each(exampleCases)('%s on %s, WebGPU backend', async (name, _c, base) => {
    const s = setupFor(name, base);
    const build = buildWebGpu(s.plan, s.config, canvasRows(prompts));
    const runners: WebGpuRunner[] = [];
    const runner = (n: number) => {
      const r = new WebGpuRunner(build, s.weights, n, gpu as GPUDevice);
      runners.push(r);
      return r;
    };
    const setup = { ...s, lowered: build.lowered, runner };
    expectSameAsAlone(await run(setup, prompts, 0), await alone(setup));
    for (const r of runners) r.release();
  });

  test('plans whose phases depend on the data put sequences of one batch in different phases', () => {
    // Threshold decoding ends blocks at different steps, so block-start refreshes differ.
    expect(mixed.get('fast-dllm-dual')).toBeGreaterThan(0);
    expect([...mixed.values()].filter((n) => n > 0).length).toBeGreaterThan(3);
  });
});

describe('EOS', () => {
  test('the stop rule: the first EOS, once every generated position before it is decoded', () => {
    const c = new Canvas(2, 6, 6);
    const eos = 9;
    const tokens = Int32Array.from([1, 2, 0, 0, 9, 0, 9, 0]);
    c.commit([4, 6]);
    expect(eosStop(c, tokens, eos)).toBe(-1); // positions 2 and 3 are still masked
    c.commit([2]);
    expect(eosStop(c, tokens, eos)).toBe(-1);
    c.commit([3]);
    expect(eosStop(c, tokens, eos)).toBe(4);
    expect(eosStop(c, Int32Array.from([1, 2, 0, 0, 3, 0, 3, 0]), eos)).toBe(-1);
  });

  test('a sequence stops at EOS and fills the rest with EOS; its batch mates go on as alone', async () => {
    const s = setupFor('fast-dllm-dual', presets.tiny as ModelConfig);
    const setup = { ...s, lowered: compilePlan(s.plan, s.config, { target: 'reference' }).lowered };
    const free = await run(setup, prompts, 0);
    // An EOS token: one that sequence 0 decodes, but that some batch mate never decodes.
    const seqs = free.result.sequences;
    const eos = [...(seqs[0]?.generated ?? [])].find((t) =>
      seqs.slice(1).some((q) => !q.generated.includes(t)),
    );
    if (eos === undefined) throw new Error('no token tells sequence 0 from its batch mates');
    const batch = await run(setup, prompts, 0, eos);
    expectSameAsAlone(batch, await alone(setup, eos));
    const stopped = batch.result.sequences[0];
    const at = stopped?.eosAt;
    if (stopped === undefined || at === undefined) throw new Error('sequence 0 did not stop at EOS');
    const whole = seqs[0] as (typeof seqs)[number];
    expect(stopped.generated[at]).toBe(eos);
    expect(stopped.steps).toBeLessThan(whole.steps);
    // What it decoded before stopping is what it decodes without the rule (the same history, up
    // to then); every position it had not decoded is EOS, and everything up to the EOS is decoded.
    const P = prompts[0]?.length ?? 0;
    const decoded = new Set(batch.steps[0]?.flatMap((i) => i.committed.map((c) => c.position - P)));
    stopped.generated.forEach((t, j) => {
      expect(t).toBe(decoded.has(j) ? whole.generated[j] : eos);
      if (j <= at) expect(decoded.has(j)).toBe(true);
    });
    // A batch mate that never decodes the EOS token runs to the end, as it does without the rule.
    const mate = seqs.findIndex((q, i) => i > 0 && !q.generated.includes(eos));
    expect(batch.result.sequences[mate]?.eosAt).toBeUndefined();
    expect(batch.result.sequences[mate]?.tokens).toEqual(seqs[mate]?.tokens);
    expect(batch.result.sequences[mate]?.steps).toBe(seqs[mate]?.steps);
  });
});

/** A stage with its value ids numbered by first appearance: equal for the same computation. */
function sameIds(stage: unknown): string {
  const ids = new Map<number, number>();
  return JSON.stringify(stage, (k, v) => {
    if (k !== 'id' || typeof v !== 'number') return v;
    if (!ids.has(v)) ids.set(v, ids.size);
    return ids.get(v);
  });
}

describe('the stages every program shares', () => {
  // runStep runs the refresh program's embedding and head for every sequence of a batch, whatever
  // phase each is in: that is right only while the lowering makes them the same in every program.
  test.each(exampleCases)(
    '%s on %s: embed and head are the same stage in every program',
    (name, _c, base) => {
      const plan = examplePlan(name);
      const { lowered } = compilePlan(plan, modelFor(plan, base), { target: 'reference' });
      const { refresh, cached, reuse } = lowered.programs;
      for (const stage of ['embed', 'head'])
        for (const p of [cached, reuse]) {
          if (!p) continue;
          const mine = p.stages.find((s) => s.name === stage);
          expect(mine).toBeDefined();
          expect(sameIds(mine)).toEqual(sameIds(refresh.stages.find((s) => s.name === stage)));
        }
    },
  );
});
