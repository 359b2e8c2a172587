/**
 * `npm run bench -- peers`: kvplan against whole-model engines running the same random model, in
 * one process and one run. onnxruntime-node runs the ONNX graph kvplan exports (the plain graph,
 * and the same graph with onnxruntime's fused attention op); llama.cpp (node-llama-cpp) runs the
 * same weights written as an F32 GGUF of its `llada` architecture. Four parts:
 *   step        one full no-cache denoising step of the canvas in every engine, engines timed in
 *               blocks (one engine's spinning threads never overlap another's calls), twice over;
 *   breakdown   our step's kernels timed one by one on the step's shapes (GEMMs, attention,
 *               norms/RoPE/SwiGLU), the rest of the step being copies, residual adds and host work;
 *   generation  kvplan `fast_dllm_dual` and its no-cache twin (the same decode rule) against the
 *               peers' no-cache generation with that rule, driven by the loop below;
 *   batches     kvplan's tokens/s with 1, 4 and 16 sequences generated together (no peer batches
 *               a diffusion canvas).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Primitives } from '../src/backends/cpu/primitives.ts';
import { buildCpu, CpuRunner } from '../src/backends/cpu/runner.ts';
import { type CheckedPlan, checkSource } from '../src/dsl/check.ts';
import type { ModelConfig } from '../src/model/config.ts';
import { softmaxStats } from '../src/model/golden.ts';
import { exportOnnx } from '../src/model/onnx/export.ts';
import { createRng, randomWeights, type Weights } from '../src/model/weights.ts';
import { fmt, table } from '../src/report/table.ts';
import { generate } from '../src/runtime/generate.ts';
import type { LlamaCppPeer } from './llamacpp.ts';
import { createSession, type Session } from './onnx.ts';
import { benchModel } from './policies.ts';
import { type Destination, saveResults } from './save.ts';
import { machineInfo, measure, otherProcessesMeter, randomFloats, timedGeneration } from './timing.ts';

export interface PeersOptions {
  readonly config: ModelConfig;
  /** Rows of the canvas of the step part. */
  readonly canvas: number;
  readonly promptLen: number;
  readonly genLen: number;
  readonly threads: readonly number[];
  /** Batch sizes of the batch part (kvplan alone: tokens/s of sequences generated together). */
  readonly batches: readonly number[];
  /** Run llama.cpp too (node-llama-cpp is a dev dependency: absent from a production install). */
  readonly llama: boolean;
  readonly to: Destination;
}

/** The issue's whole-model shape: d_model 512, 8 layers (the policies model at half the width). */
export const peerModel: ModelConfig = {
  ...benchModel,
  name: 'peer-512x8',
  dModel: 512,
  heads: 8,
  kvHeads: 8,
  headDim: 64,
  dFF: 1408,
};

/** What one engine predicts at a masked position: its token and confidence (mask token excluded). */
interface Prediction {
  readonly token: number;
  readonly confidence: number;
}

/** One full no-cache forward of `tokens`, read at `positions`. */
type Predict = (tokens: Int32Array, positions: readonly number[]) => Promise<Prediction[]>;

const fastDllmDual = readFileSync(new URL('../examples/fast-dllm-dual.kvp', import.meta.url), 'utf8');

function plan(text: string, overrides: Record<string, string> = {}): CheckedPlan {
  const r = checkSource({ path: 'peers', text }, { overrides: new Map(Object.entries(overrides)) });
  const p = r.plans[0];
  if (!p) throw new Error(r.diagnostics.map((d) => d.message).join('; '));
  return p;
}

/** Fast-dLLM's decode rule with nothing cached: the twin every peer runs. */
const noCacheTwin = `plan fast_dllm_nocache(block: int = 32, tau: float = 0.9) {
  blocks block
  compute all
  attend all
  decode threshold(tau) by confidence in current_block
}`;

/** One step of the whole canvas: the no-cache baseline with one block of every generated row, decoded at once. */
const oneStep = (gen: number) =>
  plan(readFileSync(new URL('../examples/baseline.kvp', import.meta.url), 'utf8'), {
    block: String(gen),
    steps_per_block: '1',
  });

/** Predictions from logits rows [L, vocab] at `positions`, as kvplan's confidence score reads them. */
function fromLogits(config: ModelConfig, logits: Float32Array, positions: readonly number[]): Prediction[] {
  const V = config.vocab;
  return positions.map((i) => {
    const s = softmaxStats(logits.subarray(i * V, (i + 1) * V), config.maskTokenId);
    return { token: s.argmax, confidence: s.confidence };
  });
}

/**
 * The threshold rule of `fast_dllm_dual` over an engine that recomputes the whole canvas each step:
 * blocks of `block` rows after the prompt, each step commits the masked rows of the current block
 * whose confidence reaches `tau`, at least the most confident one (ties: the lower position), as
 * src/dsl/semantics/decodeRule.ts does.
 */
async function noCacheGenerate(
  predict: Predict,
  config: ModelConfig,
  prompt: Int32Array,
  genLen: number,
  block: number,
  tau: number,
): Promise<{ tokens: Int32Array; steps: number; ms: number }> {
  const tokens = new Int32Array(prompt.length + genLen).fill(config.maskTokenId);
  tokens.set(prompt);
  let steps = 0;
  let ms = 0;
  for (let b0 = prompt.length; b0 < tokens.length; b0 += block) {
    for (;;) {
      const masked: number[] = [];
      for (let i = b0; i < Math.min(b0 + block, tokens.length); i++)
        if (tokens[i] === config.maskTokenId) masked.push(i);
      if (masked.length === 0) break;
      const t0 = performance.now();
      const preds = await predict(tokens, masked);
      const order = masked
        .map((pos, k) => ({ pos, ...(preds[k] as Prediction) }))
        .sort((a, b) => b.confidence - a.confidence || a.pos - b.pos);
      const reach = Math.max(1, order.filter((p) => p.confidence >= tau).length);
      for (const p of order.slice(0, reach)) tokens[p.pos] = p.token;
      ms += performance.now() - t0;
      steps++;
    }
  }
  return { tokens, steps, ms };
}

/** kvplan on the CPU backend: one runner (weights packed once) per thread count. */
function kvplanEngine(
  config: ModelConfig,
  weights: Weights,
  p: CheckedPlan,
  canvas: number,
  threads: number,
) {
  const build = buildCpu(p, config, canvas);
  const runner = new CpuRunner(build, weights, canvas, threads);
  return (prompt: Int32Array, genLen: number) =>
    timedGeneration(p, build, runner, { config, weights }, prompt, genLen);
}

/** onnxruntime on the exported graph: logits of every row, read at the masked ones. */
function ortPredict(session: Session, config: ModelConfig): Predict {
  return async (tokens, positions) => {
    const ids = new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, tokens.length]);
    const out = await session.run({ input_ids: ids });
    return fromLogits(config, out.logits?.data as Float32Array, positions);
  };
}

/** llama.cpp's probabilities include the mask token; kvplan's confidence excludes it. */
function llamaPredict(peer: LlamaCppPeer, config: ModelConfig): Predict {
  const mask = config.maskTokenId;
  return async (tokens, positions) =>
    (await peer.probabilities(tokens, positions)).map((row) => {
      let best = mask === 0 ? 1 : 0;
      for (let v = 0; v < row.length; v++)
        if (v !== mask && (row[v] as number) > (row[best] as number)) best = v;
      return { token: best, confidence: (row[best] as number) / (1 - (row[mask] as number)) };
    });
}

/** The canvas `tokens` with `predict`'s tokens written at `positions`. */
async function predicted(
  predict: Predict,
  tokens: Int32Array,
  positions: readonly number[],
): Promise<Int32Array> {
  const preds = await predict(tokens, positions);
  const out = tokens.slice();
  positions.forEach((pos, k) => {
    out[pos] = (preds[k] as Prediction).token;
  });
  return out;
}

/** Rows of tokens equal between two canvases, from `from` on. */
function agreement(a: Int32Array, b: Int32Array, from: number): number {
  let same = 0;
  for (let i = from; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / Math.max(1, a.length - from);
}

/** The median of two measurements taken apart, each the median of its calls: the lower one. */
async function timedTwice(
  engines: ReadonlyMap<string, () => Promise<unknown>>,
): Promise<Map<string, number>> {
  const ms = new Map<string, number[]>();
  for (let round = 0; round < 2; round++)
    for (const [name, fn] of engines) {
      const t = await measure(fn, { minSeconds: 2, minSamples: 3, slowCallMs: 2000 });
      ms.set(name, [...(ms.get(name) ?? []), t.ms]);
    }
  return new Map([...ms].map(([name, xs]) => [name, Math.min(...xs)]));
}

/** Our step's kernels timed one by one on the shapes of a full step of `L` rows. */
async function breakdown(p: Primitives, c: ModelConfig, L: number, threads: number) {
  p.setThreads(threads);
  const { dModel: d, heads: H, kvHeads: KV, headDim: hd, dFF: F, vocab: V } = c;
  const x = randomFloats(L * Math.max(d, F, H * hd), 1);
  const out = new Float32Array(L * Math.max(d, F, V, H * hd));
  const rows = Int32Array.from({ length: L }, (_, i) => i);
  const gemm = async (n: number, k: number) => {
    const w = p.packWeight(n, k, randomFloats(n * k, 2));
    return (await measure(() => p.gemm(L, n, k, x, k, null, w, null, out, n, false))).ms;
  };
  const q = randomFloats(L * H * hd, 3);
  const kv = randomFloats(L * KV * hd, 4);
  const lse = new Float32Array(L * H);
  const attention = (
    await measure(() =>
      p.attention(L, L, H, KV, hd, 1 / Math.sqrt(hd), q, kv, kv, rows, rows, null, out, lse),
    )
  ).ms;
  const w = randomFloats(Math.max(d, F), 5);
  const norm = (await measure(() => p.rmsnorm(L, d, x, null, w, 1e-5, out))).ms;
  const rope = (await measure(() => p.rope(L, H, hd, out, rows, c.ropeTheta))).ms;
  const swiglu = (await measure(() => p.swiglu(L * F, x, x, out))).ms;
  // Per layer: q, k and v, o, gate and up, down; then the head's logits.
  const layerGemms =
    (await gemm(H * hd, d)) +
    2 * (await gemm(KV * hd, d)) +
    (await gemm(d, H * hd)) +
    2 * (await gemm(F, d)) +
    (await gemm(d, F));
  return {
    gemm_ms: c.layers * layerGemms + (await gemm(V, d)),
    attention_ms: c.layers * attention,
    pointwise_ms: c.layers * (2 * norm + 2 * rope + swiglu) + norm,
  };
}

/**
 * Tokens/s of `plans` generating `batch` sequences together in one canvas (the runtime's batching:
 * attention never crosses sequences), short generations of two blocks after a short prompt.
 */
async function batchRows(
  config: ModelConfig,
  weights: Weights,
  plans: readonly CheckedPlan[],
  batches: readonly number[],
  threads: number,
  randomPrompt: (n: number) => Int32Array,
) {
  const promptLen = 32;
  const genLength = 64;
  const rows: { plan: string; batch: number; tokens_per_s: number; per_sequence_tokens_per_s: number }[] = [];
  for (const p of plans)
    for (const batch of batches) {
      const build = buildCpu(p, config, batch * (promptLen + genLength));
      const prompts = Array.from({ length: batch }, () => randomPrompt(promptLen));
      const r = await generate({
        model: { config, weights },
        plan: p,
        lowered: build.lowered,
        prompts,
        genLength,
        runner: (L) => new CpuRunner(build, weights, L, threads),
        batchSize: batch,
      });
      rows.push({
        plan: p.plan.name,
        batch,
        tokens_per_s: r.tokensPerSecond,
        per_sequence_tokens_per_s: r.tokensPerSecond / batch,
      });
      console.error(`batch ${batch}, ${p.plan.name}: ${fmt(r.tokensPerSecond)} tokens/s`);
    }
  return rows;
}

export async function peersSuite(p: Primitives, o: PeersOptions): Promise<void> {
  const started = performance.now();
  const others = otherProcessesMeter();
  const { config } = o;
  const weights = randomWeights(config, 3);
  const rng = createRng(11);
  const randomPrompt = (n: number) =>
    Int32Array.from({ length: n }, () => Math.floor(rng.uniform() * (config.vocab - 1)));
  const dir = mkdtempSync(join(tmpdir(), 'kvplan-peers-'));
  const maxPositions = Math.max(o.canvas, o.promptLen + o.genLen);
  const eager = exportOnnx(config, weights, { maxPositions });
  const fused = exportOnnx(config, weights, { maxPositions, fusedAttention: true });
  const llama = o.llama ? await import('./llamacpp.ts') : undefined;
  const stepRows: Record<string, unknown>[] = [];
  const stepPrompt = randomPrompt(Math.min(64, o.canvas >> 1));
  const stepGen = o.canvas - stepPrompt.length;
  const stepTokens = new Int32Array(o.canvas).fill(config.maskTokenId);
  stepTokens.set(stepPrompt);
  const masked = Array.from({ length: stepGen }, (_, i) => stepPrompt.length + i);
  try {
    // Part 1: one full no-cache step, every engine, every thread count.
    for (const threads of o.threads) {
      const ours = kvplanEngine(config, weights, oneStep(stepGen), o.canvas, threads);
      const oursOut = await ours(stepPrompt, stepGen);
      const engines = new Map<string, () => Promise<unknown>>([['kvplan', () => ours(stepPrompt, stepGen)]]);
      const outputs = new Map<string, Int32Array>();
      const sessions = {
        ort: await createSession(eager, threads),
        ort_fused: await createSession(fused, threads),
      };
      const peer = llama
        ? await llama.openLlamaCpp(config, weights, { threads, canvas: o.canvas, dir })
        : undefined;
      const predictors: [string, Predict][] = [
        ...Object.entries(sessions).map(([n, session]): [string, Predict] => [
          n,
          ortPredict(session, config),
        ]),
        ...(peer ? [['llama.cpp', llamaPredict(peer, config)] as [string, Predict]] : []),
      ];
      for (const [name, predict] of predictors) {
        outputs.set(name, await predicted(predict, stepTokens, masked));
        engines.set(name, () => predict(stepTokens, masked));
      }
      const ms = await timedTwice(engines);
      await peer?.close();
      for (const session of Object.values(sessions)) await session.release();
      const oursMs = ms.get('kvplan') as number;
      const parts = await breakdown(p, config, o.canvas, threads);
      const row: Record<string, unknown> = {
        threads,
        kvplan_ms: oursMs,
        ...Object.fromEntries(
          [...ms]
            .filter(([n]) => n !== 'kvplan')
            .flatMap(([n, t]) => [
              [`${n}_ms`, t],
              [`${n}_ratio`, t / oursMs],
              [`${n}_agreement`, agreement(outputs.get(n) as Int32Array, oursOut.tokens, stepPrompt.length)],
            ]),
        ),
        ...parts,
        rest_ms: oursMs - parts.gemm_ms - parts.attention_ms - parts.pointwise_ms,
      };
      stepRows.push(row);
      console.error(`step, ${threads} thread(s): ${[...ms].map(([n, t]) => `${n} ${fmt(t)} ms`).join(', ')}`);
    }
    // Part 2: whole generations at the largest thread count.
    const threads = Math.max(...o.threads);
    const L = o.promptLen + o.genLen;
    const prompt = randomPrompt(o.promptLen);
    const dual = plan(fastDllmDual);
    const tau = 0.9;
    const block = 32;
    const gens: Record<string, { tokens: Int32Array; steps: number; ms: number }> = {};
    gens.kvplan_fast_dllm_dual = await kvplanEngine(config, weights, dual, L, threads)(prompt, o.genLen);
    gens.kvplan_nocache = await kvplanEngine(
      config,
      weights,
      plan(noCacheTwin),
      L,
      threads,
    )(prompt, o.genLen);
    const session = await createSession(fused, threads);
    gens.ort_fused_nocache = await noCacheGenerate(
      ortPredict(session, config),
      config,
      prompt,
      o.genLen,
      block,
      tau,
    );
    await session.release();
    const peer = llama ? await llama.openLlamaCpp(config, weights, { threads, canvas: L, dir }) : undefined;
    if (peer) {
      gens['llama.cpp_nocache'] = await noCacheGenerate(
        llamaPredict(peer, config),
        config,
        prompt,
        o.genLen,
        block,
        tau,
      );
      await peer.close();
    }
    const batchTable = await batchRows(
      config,
      weights,
      [plan(readFileSync(new URL('../examples/baseline.kvp', import.meta.url), 'utf8')), dual],
      o.batches,
      threads,
      randomPrompt,
    );
    const dualMs = gens.kvplan_fast_dllm_dual.ms;
    const genRows = Object.entries(gens).map(([engine, g]) => ({
      engine,
      steps: g.steps,
      ms: g.ms,
      tokens_per_s: (1000 * o.genLen) / g.ms,
      fast_dllm_dual_speedup: g.ms / dualMs,
      agreement_with_nocache: agreement(g.tokens, gens.kvplan_nocache?.tokens as Int32Array, o.promptLen),
    }));
    const names = [...new Set(stepRows.flatMap((r) => Object.keys(r)))];
    const peers = ['ort', 'ort_fused', 'llama.cpp'].filter((n) => names.includes(`${n}_ms`));
    console.log(`One full no-cache step of a ${o.canvas}-row canvas (${config.name}):`);
    console.log(
      table(
        [
          'threads',
          'kvplan ms',
          ...peers.flatMap((n) => [`${n} ms`, `${n}/kvplan`]),
          'GEMMs',
          'attention',
          'pointwise',
          'rest',
        ],
        stepRows.map((r) => [
          String(r.threads),
          fmt(r.kvplan_ms as number),
          ...peers.flatMap((n) => [fmt(r[`${n}_ms`] as number), fmt(r[`${n}_ratio`] as number)]),
          fmt(r.gemm_ms as number),
          fmt(r.attention_ms as number),
          fmt(r.pointwise_ms as number),
          fmt(r.rest_ms as number),
        ]),
      ),
    );
    console.log(
      `\nGeneration of ${o.genLen} tokens after a ${o.promptLen}-token prompt, ${threads} thread(s):`,
    );
    console.log(
      table(
        ['engine', 'steps', 'tokens/s', 'fast_dllm_dual speedup', 'agreement'],
        genRows.map((r) => [
          r.engine,
          String(r.steps),
          fmt(r.tokens_per_s),
          fmt(r.fast_dllm_dual_speedup),
          fmt(r.agreement_with_nocache),
        ]),
      ),
    );
    console.log(
      `\nBatches of sequences in one canvas (prompt 32, generation 64 each), ${threads} thread(s):`,
    );
    console.log(
      table(
        ['plan', 'batch', 'tokens/s', 'tokens/s per sequence'],
        batchTable.map((r) => [
          r.plan,
          String(r.batch),
          fmt(r.tokens_per_s),
          fmt(r.per_sequence_tokens_per_s),
        ]),
      ),
    );
    saveResults(o.to, {
      suite: 'peers',
      date: new Date().toISOString(),
      seconds: (performance.now() - started) / 1000,
      other_processes_busy_cores: others(),
      machine: machineInfo(),
      model: config,
      canvas: o.canvas,
      prompt_length: o.promptLen,
      gen_length: o.genLen,
      step: stepRows,
      generation: genRows,
      batches: batchTable,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
