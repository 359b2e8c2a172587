/**
 * llama.cpp (the prebuilt CPU binaries of node-llama-cpp 3.21.1) running a kvplan model from the
 * same weights, written as a float32 `llada` GGUF: a whole-model peer of kvplan's no-cache forward.
 * llama.cpp runs llada non-causally and without a KV cache by itself (the architecture says so;
 * node-llama-cpp has no switch for it), so a canvas decoded as one batch is one full forward.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { getLlama, LlamaLogLevel } from 'node-llama-cpp';
import type { ModelConfig } from '../src/model/config.ts';
import type { Weights } from '../src/model/weights.ts';
import { writeLladaGguf } from './gguf.ts';

export interface LlamaCppPeer {
  /** Probability rows (length vocab) at `positions`, from ONE full non-causal forward of `tokens`. */
  probabilities(tokens: Int32Array, positions: readonly number[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}

/**
 * The native objects under node-llama-cpp's public ones (`context._ctx`, `model._model`,
 * `llama._bindings`; internal, so not in its typings), as node-llama-cpp 3.21.1 declares them in
 * dist/bindings/AddonTypes.d.ts. The public route to the same numbers,
 * `LlamaContextSequence.controlledEvaluate` with `generateNext.probabilities`, turns every row
 * into a Map of V entries: measured at V 4096 and 128 rows on one thread, 270 ms against 125 ms
 * this way, for a 21 ms forward. The version is pinned exactly, and the test runs this code.
 */
interface AddonContext {
  initBatch(size: number): void;
  /** Queues tokens at positions firstPosition...; `logitIndexes` (ascending) are the rows to output. */
  addToBatch(
    sequenceId: number,
    firstPosition: number,
    tokens: Uint32Array,
    logitIndexes: Uint32Array,
  ): Uint32Array;
  decodeBatch(): Promise<void>;
  sampleToken(
    batchLogitIndex: number,
    sampler: AddonSampler,
    probabilities: true,
  ): Promise<[token: number, probabilities: number[] | undefined, confidence: number | undefined]>;
}
interface AddonSampler {
  applyConfig(config: { temperature: number }): void;
  dispose(): void;
}
interface Internals {
  context: { _ctx: AddonContext };
  model: { _model: unknown };
  llama: { _bindings: { AddonSampler: new (model: unknown) => AddonSampler } };
}

/**
 * Writes `config`'s model as GGUF into a directory of its own under `dir` (llama.cpp maps the file:
 * another peer must not overwrite it), removed by `close`, and opens it in llama.cpp on the CPU
 * with `threads` threads, for canvases of up to `canvas` tokens.
 *
 * A call of `probabilities` is llama.cpp's forward of the canvas (every layer at every row, but
 * the last layer's feed-forward, the output norm and the head only at the rows asked for), then,
 * per row asked for, one asynchronous addon call (a hop to a libuv worker thread and back) in
 * which llama.cpp's sampler copies the row's V logits, sorts them (V log V) and takes a float32
 * softmax, and the addon builds a JS array of 2V numbers, scattered here into a Float32Array.
 * Raw logits are not reachable from node-llama-cpp, so this read-out is the floor; it grows with
 * the vocabulary and the rows asked for (at V 256, roughly 0.1 ms a row on this machine), so a
 * timing should ask for the masked rows and no others.
 */
export async function openLlamaCpp(
  config: ModelConfig,
  weights: Weights,
  o: { threads: number; canvas: number; dir: string },
): Promise<LlamaCppPeer> {
  const own = mkdtempSync(join(o.dir, 'llamacpp-'));
  const path = join(own, `${config.name}.gguf`);
  writeLladaGguf(path, config, weights, { contextLength: o.canvas });
  // build 'never': the prebuilt binaries or an error, never a download or a source build.
  const llama = await getLlama({
    gpu: false,
    build: 'never',
    maxThreads: o.threads,
    logLevel: LlamaLogLevel.error,
  });
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  // llama.cpp needs a non-causal batch in one micro-batch; node-llama-cpp makes the micro-batch
  // the batch size, and pads the context size up (to a multiple of 256).
  const context = await model.createContext({
    contextSize: o.canvas,
    batchSize: o.canvas,
    threads: o.threads,
    sequences: 1,
    flashAttention: false,
  });
  if (context.batchSize < o.canvas)
    throw new Error(
      `llama.cpp gave batches of ${context.batchSize} tokens; a canvas of ${o.canvas} needs one`,
    );
  const internals = { context, model, llama } as unknown as Internals;
  const native = internals.context._ctx;
  const sampler = new internals.llama._bindings.AddonSampler(internals.model._model);
  // Temperature 0 is the greedy chain, which drops no candidate: the probabilities are the
  // softmax of the raw logits over the whole vocabulary.
  sampler.applyConfig({ temperature: 0 });
  const V = config.vocab;

  return {
    async probabilities(tokens, positions) {
      if (tokens.length === 0 || tokens.length > o.canvas)
        throw new RangeError(`a canvas of ${tokens.length} tokens; this peer runs 1 to ${o.canvas}`);
      for (const p of positions)
        if (!Number.isInteger(p) || p < 0 || p >= tokens.length)
          throw new RangeError(`position ${p} is outside the canvas [0, ${tokens.length})`);
      const rows = Uint32Array.from(new Set(positions)).sort();
      // A fresh batch at positions 0..L-1: llada keeps no cache, so nothing of the previous
      // canvas is seen, and node-llama-cpp's sequence bookkeeping is never involved.
      native.initBatch(tokens.length);
      const logitIndex = native.addToBatch(0, 0, Uint32Array.from(tokens), rows);
      await native.decodeBatch();
      const byPosition = new Map<number, Float32Array>();
      for (let k = 0; k < rows.length; k++) {
        // One row at a time: concurrent reads would take more threads than `threads`.
        const [, pairs] = await native.sampleToken(logitIndex[k] as number, sampler, true);
        if (pairs === undefined)
          throw new Error(`llama.cpp returned no probabilities at position ${rows[k]}`);
        const row = new Float32Array(V);
        for (let i = 0; i < pairs.length; i += 2) row[pairs[i] as number] = pairs[i + 1] as number;
        byPosition.set(rows[k] as number, row);
      }
      return positions.map((p) => byPosition.get(p) as Float32Array);
    },
    async close() {
      sampler.dispose();
      await context.dispose();
      await model.dispose();
      await llama.dispose();
      rmSync(own, { recursive: true, force: true });
    },
  };
}
