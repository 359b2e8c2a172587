import type { CheckedPlan } from '../dsl/check.ts';
import type { Canvas } from '../dsl/semantics/canvas.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import type { ModelConfig } from '../model/config.ts';
import type { Weights } from '../model/weights.ts';
import { type BatchMember, rowsOf, runStep } from './batch.ts';
import { ReferenceRunner } from './referenceRunner.ts';
import type { StepOutput, StepRunner } from './runner.ts';
import { SequenceRun, type StepInfo } from './simulate.ts';

export interface GenerateOptions {
  readonly model: { readonly config: ModelConfig; readonly weights: Weights };
  readonly plan: CheckedPlan;
  /** The plan lowered and compiled for this model (by the backend that runs it). */
  readonly lowered: LoweredPlan;
  readonly prompts: readonly Int32Array[];
  readonly genLength: number;
  /**
   * The backend's runner for a canvas of L rows (default: the float64 reference). A batch's
   * canvas holds its sequences one after another: the sum of prompt length + genLength.
   */
  readonly runner?: (L: number) => StepRunner;
  readonly seed?: number;
  readonly onStep?: (sequence: number, info: StepInfo) => void;
  /**
   * Whether onStep reads each step's logits (StepInfo.logits). Without it, a runner that computes
   * the statistics the decode rule reads on its device leaves the logits there: a real
   * vocabulary's are megabytes a step to copy back.
   */
  readonly logits?: boolean;
  /** Stop each sequence at its first EOS once everything before it is decoded (see eosStop). */
  readonly eosTokenId?: number;
  /** Sequences generated together in one canvas (default: every prompt at once). */
  readonly batchSize?: number;
}

export interface Generated {
  readonly tokens: Int32Array;
  /** The generated positions only. */
  readonly generated: Int32Array;
  /** Steps the sequence took part in. */
  readonly steps: number;
  /** Wall time of those steps (shared with its batch mates). */
  readonly ms: number;
  /** Where in `generated` the EOS the sequence stopped at is; absent when it filled its canvas. */
  readonly eosAt?: number;
}

export interface GenerateResult {
  readonly sequences: readonly Generated[];
  /**
   * Generated tokens over the wall time of the steps. Prompt tokens are not counted, nor are the
   * EOS fill of a sequence that stopped early: it counts its positions up to its first EOS.
   */
  readonly tokensPerSecond: number;
}

/**
 * Where a sequence stops: its first generated position that holds EOS, provided every generated
 * position before it is decoded (a masked position before it could still be decoded to something
 * else, so the text up to the EOS is not final yet); -1 when it does not stop yet.
 */
export function eosStop(canvas: Canvas, tokens: Int32Array, eos: number): number {
  for (let i = canvas.promptLen; i < canvas.length; i++) {
    if (canvas.isMasked(i)) return -1;
    if (tokens[i] === eos) return i;
  }
  return -1;
}

interface Running {
  readonly index: number;
  readonly run: SequenceRun;
  readonly member: BatchMember;
  steps: number;
  ms: number;
  eosAt?: number;
}

/** Generates the prompts of one batch in lockstep, in one canvas; `first` numbers its sequences. */
async function generateBatch(o: GenerateOptions, first: number, prompts: readonly Int32Array[]) {
  const { config, weights } = o.model;
  const lengths = prompts.map((p) => p.length + o.genLength);
  const L = lengths.reduce((a, b) => a + b, 0);
  const runner: StepRunner = o.runner ? o.runner(L) : new ReferenceRunner(o.lowered, weights, L);
  let offset = 0;
  const all = prompts.map((prompt, i): Running => {
    const at = offset;
    const length = lengths[i] as number;
    offset += length;
    const run = new SequenceRun(
      o.plan,
      o.lowered,
      config,
      weights,
      prompt,
      o.genLength,
      (o.seed ?? 1) + first + i,
      (part, l) => {
        const v = runner.cachePart(part, l);
        return v && rowsOf(v, at, length);
      },
      runner.probe,
      false,
    );
    return {
      index: first + i,
      run,
      member: { inspector: run.inspector, scores: run.scores, offset: at, length },
      steps: 0,
      ms: 0,
    };
  });
  const canvas = {
    tokens: new Int32Array(L),
    blocks: new Int32Array(L),
    seqs: new Int32Array(L),
  };
  for (const [i, s] of all.entries()) {
    canvas.blocks.set(s.run.blocks, s.member.offset);
    canvas.seqs.fill(i, s.member.offset, s.member.offset + s.member.length);
  }
  let active = all.filter((s) => !s.run.canvas.done);
  let elapsed = 0;
  try {
    while (active.length > 0) {
      for (const s of active) s.run.checkProgress(o.plan.plan.name);
      const t0 = performance.now();
      for (const s of active) canvas.tokens.set(s.run.tokens, s.member.offset);
      const outs = await runStep(
        runner,
        o.lowered,
        canvas,
        active.map((s) => s.member),
        o.logits === true,
      );
      const chosen = active.map((s, k) => s.run.observe(outs[k] as StepOutput));
      const ms = performance.now() - t0;
      for (const [k, s] of active.entries()) {
        const info = s.run.commit(chosen[k] as number[], outs[k] as StepOutput, ms);
        s.steps++;
        s.ms += ms;
        o.onStep?.(s.index, info);
        if (o.eosTokenId === undefined) continue;
        const stop = eosStop(s.run.canvas, s.run.tokens, o.eosTokenId);
        if (stop < 0) continue;
        s.eosAt = stop - s.run.canvas.promptLen;
        for (let i = stop + 1; i < s.run.canvas.length; i++)
          if (s.run.canvas.isMasked(i)) s.run.tokens[i] = o.eosTokenId;
      }
      active = active.filter((s) => s.eosAt === undefined && !s.run.canvas.done);
      elapsed += ms;
    }
  } finally {
    runner.release?.();
  }
  const sequences = all.map((s): Generated => {
    const { tokens, canvas: c } = s.run;
    return {
      tokens,
      generated: tokens.slice(c.promptLen),
      steps: s.steps,
      ms: s.ms,
      ...(s.eosAt === undefined ? {} : { eosAt: s.eosAt }),
    };
  });
  return { sequences, ms: elapsed };
}

/** The generated tokens a sequence is credited with: up to its first EOS, or its whole canvas. */
export const countedTokens = (s: Generated): number =>
  s.eosAt === undefined ? s.generated.length : s.eosAt + 1;

/**
 * Generates a completion for each prompt with a compiled plan. The prompts run in batches of
 * `batchSize` sequences that share one canvas and advance in lockstep, each step running every
 * stage once over the rows of all of them (src/runtime/batch.ts); a sequence leaves its batch
 * when its canvas is complete or it stops at EOS.
 */
export async function generate(o: GenerateOptions): Promise<GenerateResult> {
  const size = Math.max(1, o.batchSize ?? o.prompts.length);
  const sequences: Generated[] = [];
  let ms = 0;
  for (let first = 0; first < o.prompts.length; first += size) {
    const batch = await generateBatch(o, first, o.prompts.slice(first, first + size));
    ms += batch.ms;
    sequences.push(...batch.sequences);
  }
  const count = sequences.reduce((a, s) => a + countedTokens(s), 0);
  return { sequences, tokensPerSecond: ms > 0 ? (1000 * count) / ms : 0 };
}
