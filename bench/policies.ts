/**
 * `npm run bench -- policies`: every example plan on one random LLaMA-shaped model, the same
 * prompts, on the CPU backend, in one process. Tokens/s counts generated tokens only; the ideal
 * speedup is the ratio of FLOPs the IR predicts for the whole generation (each step's kernels
 * costed with that step's index-list sizes); agreement is the fraction of generated tokens equal
 * to the no-cache baseline's.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { buildCpu, CpuRunner } from '../src/backends/cpu/runner.ts';
import { fmt, table } from '../src/cli/table.ts';
import { type CheckedPlan, checkSource } from '../src/dsl/check.ts';
import type { Dim } from '../src/ir/types.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { presets } from '../src/model/presets.ts';
import { createRng, randomWeights } from '../src/model/weights.ts';
import { compilePlan } from '../src/passes/compile.ts';
import { evalCost, type KernelProgram } from '../src/passes/kernelIR.ts';
import { modelFor } from '../src/runtime/modelFor.ts';
import { simulateGeneration } from '../src/runtime/simulate.ts';
import { machineInfo } from './timing.ts';

export interface PoliciesOptions {
  readonly config: ModelConfig;
  readonly promptLen: number;
  readonly genLen: number;
  readonly block: number;
  readonly prompts: number;
  readonly out: string | null;
}

/** A LLaMA-shaped model large enough for caching to matter on this machine, small enough to finish. */
export const benchModel: ModelConfig = {
  ...(presets.small as ModelConfig),
  name: 'bench-512x4',
  layers: 4,
  dModel: 512,
  heads: 8,
  kvHeads: 8,
  headDim: 64,
  dFF: 1408,
  vocab: 256,
  maskTokenId: 255,
  qkvBias: false,
};

function examplePlans(block: number): CheckedPlan[] {
  const files = readdirSync('examples')
    .filter((f) => f.endsWith('.kvp'))
    .sort();
  return files.map((f) => {
    const path = `examples/${f}`;
    const text = readFileSync(path, 'utf8');
    const overrides = /\bblock\s*(:\s*int\s*)?=/.test(text) ? new Map([['block', String(block)]]) : undefined;
    const r = checkSource({ path, text }, overrides ? { overrides } : {});
    const plan = r.plans[0];
    if (!plan) throw new Error(`${path} does not check`);
    return plan;
  });
}

export async function policiesSuite(o: PoliciesOptions): Promise<void> {
  const started = performance.now();
  const rows: Record<string, unknown>[] = [];
  const plans = examplePlans(o.block);
  const rng = createRng(7);
  const prompts = Array.from({ length: o.prompts }, () =>
    Int32Array.from({ length: o.promptLen }, () => Math.floor(rng.uniform() * (o.config.vocab - 1))),
  );
  const L = o.promptLen + o.genLen;
  let baseline: { tokens: Int32Array[]; tps: number; flops: number } | undefined;
  for (const plan of plans.sort((a, b) =>
    a.plan.name === 'baseline' ? -1 : b.plan.name === 'baseline' ? 1 : 0,
  )) {
    const config = modelFor(plan, o.config);
    const weights = randomWeights(config, 3);
    const build = buildCpu(plan, config, L);
    const { state } = compilePlan(plan, config, { target: 'cpu', canvas: L });
    const kernels = state.kernels as ReadonlyMap<string, KernelProgram>;
    const peak = Math.max(...[...(state.memory?.values() ?? [])].map((m) => m.peakBytes));
    let ms = 0;
    let flops = 0;
    let generated = 0;
    const outputs: Int32Array[] = [];
    for (const prompt of prompts) {
      const r = await simulateGeneration(plan, build.lowered, {
        config,
        weights,
        prompt,
        genLen: o.genLen,
        seed: 1,
        compare: false,
        runner: (n) => new CpuRunner(build, weights, n),
        onStep: (info) => {
          ms += info.ms;
          const kp = kernels.get(info.phase === 'refresh' ? 'refresh' : 'cached') as KernelProgram;
          const size = (d: Dim) =>
            typeof d === 'number' ? d : d === 'L' ? L : (info.sizes.get(d.slice(1)) ?? L);
          flops += kp.kernels.reduce((a, k) => a + evalCost(k.flops, size), 0);
        },
      });
      generated += o.genLen;
      outputs.push(r.tokens.slice(o.promptLen));
    }
    const tps = (1000 * generated) / ms;
    if (plan.plan.name === 'baseline') baseline = { tokens: outputs, tps, flops };
    const base = baseline;
    const same = base
      ? outputs.reduce((a, t, i) => a + t.filter((x, j) => x === base.tokens[i]?.[j]).length, 0)
      : generated;
    // Logit deviation from the golden, measured on a small model where the float64 golden is cheap.
    const small = modelFor(plan, presets.small as ModelConfig);
    const dev = await simulateGeneration(plan, compilePlan(plan, small, { target: 'reference' }).lowered, {
      config: small,
      weights: randomWeights(small, 3),
      prompt: Int32Array.from({ length: 8 }, (_, i) => (3 * i + 1) % (small.vocab - 1)),
      genLen: 2 * Math.min(o.block, 16),
      seed: 1,
    });
    const row = {
      plan: plan.plan.name,
      tokens_per_s: tps,
      speedup: base ? tps / base.tps : 1,
      ideal_speedup: base ? base.flops / flops : 1,
      agreement: same / generated,
      max_logit_dev: Math.max(...dev.steps.map((s) => s.deviation)),
      peak_bytes: peak,
      steps_ms: ms,
    };
    rows.push(row);
    console.error(
      `${row.plan}: ${fmt(tps)} tokens/s, speedup ${fmt(row.speedup)} (ideal ${fmt(row.ideal_speedup)})`,
    );
  }
  const headers = [
    'plan',
    'tokens/s',
    'speedup',
    'ideal',
    'speedup/ideal',
    'agreement',
    'max logit dev',
    'peak MB',
  ];
  const cells = rows.map((r) => [
    String(r.plan),
    fmt(r.tokens_per_s as number),
    fmt(r.speedup as number),
    fmt(r.ideal_speedup as number),
    fmt((r.speedup as number) / (r.ideal_speedup as number)),
    fmt(r.agreement as number),
    fmt(r.max_logit_dev as number),
    fmt((r.peak_bytes as number) / 1e6),
  ]);
  console.log(table(headers, cells));
  const result = {
    suite: 'policies',
    date: new Date().toISOString(),
    seconds: (performance.now() - started) / 1000,
    machine: machineInfo(),
    model: o.config,
    prompt_length: o.promptLen,
    gen_length: o.genLen,
    block: o.block,
    prompts: o.prompts,
    backend: 'cpu',
    rows,
  };
  if (o.out) {
    mkdirSync(dirname(o.out), { recursive: true });
    writeFileSync(o.out, `${JSON.stringify(result, null, 2)}\n`);
    console.error(`wrote ${o.out}`);
  }
}
