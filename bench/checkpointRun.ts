/**
 * One run of the checkpoints benchmark, in a process of its own so that its peak RSS is its own:
 * opens a checkpoint directory, loads it into the CPU backend, generates, and prints one JSON line
 * (see CheckpointRun). Run by bench/checkpoints.ts; arguments: a JSON CheckpointRunArgs.
 */
import { readFileSync } from 'node:fs';
import { buildCpu, CpuRunner } from '../src/backends/cpu/runner.ts';
import { checkSource } from '../src/dsl/check.ts';
import { generate } from '../src/runtime/generate.ts';
import { openModel } from '../src/runtime/openModel.ts';
import { planOnModel } from '../src/runtime/prepare.ts';
import { blockLength } from '../src/runtime/simulate.ts';
import { otherProcessesMeter } from './timing.ts';

export interface CheckpointRunArgs {
  dir: string;
  plan: string;
  overrides: Record<string, string>;
  prompt: string;
  genLength: number;
  threads: number;
}

export interface CheckpointRun {
  /** Seconds to open the checkpoint (headers, tokenizer) and load it into the backend. */
  load_s: number;
  steps: number;
  tokens: number;
  tokens_per_s: number;
  steps_per_token: number;
  /** VmHWM at the end: the most resident memory the process ever held. */
  peak_rss_bytes: number;
  /** Bytes of weights in the backend's slots (16-bit GEMM weights at 2 bytes). */
  weight_bytes: number;
  /** Bytes of the plan's caches (the runner's persistent slots). */
  cache_bytes: number;
  /** Bytes of activations (the arena). */
  arena_bytes: number;
  /** Cores other processes kept busy on average during the run. */
  others: number | null;
}

function peakRss(): number {
  const kib = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  return Number(kib ?? Number.NaN) * 1024;
}

async function run(a: CheckpointRunArgs): Promise<CheckpointRun> {
  const others = otherProcessesMeter();
  const t0 = performance.now();
  const model = openModel(a.dir);
  const checked = checkSource(
    { path: a.plan, text: readFileSync(a.plan, 'utf8') },
    { overrides: new Map(Object.entries(a.overrides)) },
  );
  const plan = checked.plans[0];
  if (!plan) throw new Error(`${a.plan}: ${checked.diagnostics.map((d) => d.message).join('; ')}`);
  const fit = planOnModel(plan, model.config);
  if (!fit.ok) throw new Error(fit.error);
  const prompt = model.tokenizer.encode(a.prompt);
  const L = prompt.length + a.genLength;
  const build = buildCpu(
    plan,
    fit.config,
    prompt.length + Math.max(a.genLength, blockLength(plan, a.genLength)),
  );
  const runner = new CpuRunner(build, model.weights, L, a.threads);
  const load = (performance.now() - t0) / 1000;
  const result = await generate({
    model: { config: fit.config, weights: model.weights },
    plan,
    lowered: build.lowered,
    prompts: [prompt],
    genLength: a.genLength,
    runner: () => runner,
  });
  const seq = result.sequences[0];
  if (!seq) throw new Error('no sequence generated');
  const slotBytes = (kind: string) =>
    build.manifest.slots.filter((s) => s.kind === kind).reduce((n, s) => n + s.elements * 4, 0);
  return {
    load_s: load,
    steps: seq.steps,
    tokens: seq.generated.length,
    tokens_per_s: result.tokensPerSecond,
    steps_per_token: seq.steps / seq.generated.length,
    peak_rss_bytes: peakRss(),
    weight_bytes: runner.weightBytes,
    cache_bytes: slotBytes('persistent'),
    arena_bytes: slotBytes('arena'),
    others: others(),
  };
}

console.log(JSON.stringify(await run(JSON.parse(process.argv[2] ?? '{}') as CheckpointRunArgs)));
