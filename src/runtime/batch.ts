import type { LoweredPlan } from '../ir/lower.ts';
import { lists } from '../ir/names.ts';
import { float32Of, float32Tensor, type HostTensor } from '../ir/tensor.ts';
import { checkFinite, NonFiniteLogits } from './generationError.ts';
import type { Inspector, LayerPlan } from './inspector.ts';
import type { CanvasRows, HeadOutput, PredictionStats, Program, StepOutput, StepRunner } from './runner.ts';
import type { ModelScores } from './scores.ts';

/** One sequence of a batch: its own inspector and scores, and where its rows sit in the canvas. */
export interface BatchMember {
  readonly inspector: Inspector;
  readonly scores: ModelScores;
  /** The first row of the sequence in the batch's canvas, and how many rows it has. */
  readonly offset: number;
  readonly length: number;
}

/** Rows [offset, offset + length) of a row-major tensor (a view, not a copy). */
export function rowsOf(t: HostTensor, offset: number, length: number): HostTensor {
  const width = t.shape.slice(1).reduce((a, b) => a * b, 1);
  const shape = [length, ...t.shape.slice(1)];
  const range = [offset * width, (offset + length) * width] as const;
  // A float32 tensor stays one, so that slicing it does not widen it.
  const narrow = float32Of(t);
  return narrow
    ? float32Tensor(shape, narrow.subarray(...range))
    : { shape, data: t.data.subarray(...range) };
}

function concat(parts: readonly Int32Array[]): Int32Array {
  if (parts.length === 1) return parts[0] as Int32Array;
  const out = new Int32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The index lists of a group of sequences for one layer: each sequence's lists moved to its rows
 * of the canvas and joined in batch order, so that the keys of a sequence stay contiguous (the CPU
 * attention tiles them as it would alone). RoPE rotates each row by its position in its own
 * sequence: the computed rows before the move.
 */
function packLists(
  members: readonly BatchMember[],
  plans: readonly LayerPlan[],
  layer: number,
): Map<string, Int32Array> {
  const parts = new Map<string, Int32Array[]>();
  const add = (name: string, list: Int32Array) => {
    const have = parts.get(name);
    if (have) have.push(list);
    else parts.set(name, [list]);
  };
  plans.forEach((p, i) => {
    const offset = (members[i] as BatchMember).offset;
    // A lone sequence sits at offset 0: its lists are the canvas's as they are.
    for (const [name, list] of p.lists) add(name, offset === 0 ? list : list.map((r) => r + offset));
    add(lists.positions(layer), p.lists.get(lists.rows(layer)) ?? new Int32Array(0));
  });
  return new Map([...parts].map(([name, lists]) => [name, concat(lists)] as const));
}

const programs: readonly Program[] = ['refresh', 'cached', 'reuse'];

/**
 * Checks that a step's logits are finite, and returns their softmax statistics when the runner
 * computed them next to the logits (one pass there, instead of two in JavaScript per row read).
 */
function headStats({ logits, stats }: HeadOutput, rows: Int32Array, V: number): PredictionStats | undefined {
  const data = logits && (float32Of(logits) ?? logits.data);
  if (!stats) {
    if (!data) throw new Error('the runner returned neither logits nor their statistics');
    checkFinite(data, rows, V);
    return undefined;
  }
  const bad = stats.argmax.indexOf(-1);
  if (bad < 0) return stats;
  const row = rows[bad] as number;
  // Left on the device: the statistics alone say which row, not which value.
  if (!data)
    throw new NonFiniteLogits(
      `the logits of canvas position ${row} are not finite, or none is left but the mask token's: the model's weights or activations overflow on this backend`,
    );
  checkFinite(data.subarray(bad * V, (bad + 1) * V), [row], V);
  // Finite, yet no logit but the excluded one: softmaxStats says so when the row is read.
  return undefined;
}

/**
 * One denoising step of a batch of sequences that share a canvas, each deciding its own lists
 * (one layer at a time, just before the layer runs). Every stage runs once over the rows of all
 * sequences, except where sequences are in different phases: a refresh step of one sequence, a
 * cached or reused layer of another. Then the layer runs once per program, each call over the rows
 * of the sequences that chose it (the calls touch disjoint rows). Returns each sequence's
 * predictions, in its own canvas positions.
 */
export async function runStep(
  runner: StepRunner,
  lowered: LoweredPlan,
  canvas: CanvasRows,
  members: readonly BatchMember[],
  /** Whether the caller reads the step's logits (StepOutput.logits); the scores' store may too. */
  logits = true,
): Promise<StepOutput[]> {
  // The embedding and head stages are the same in every program (the lowering makes them so, and
  // test/runtime/batch.test.ts pins it), so they run the refresh program's, the one every plan
  // has. Each layer's program follows the inspector's decision for that layer, which may see scores
  // measured inside this step: a sequence runs the refresh program on a layer only while every
  // layer so far was full.
  const main: Program = 'refresh';
  const full = members.map(() => true);
  const ran = members.map(() => new Map<number, Program>());
  // The hidden state entering a layer is copied out only where some sequence's scores read it.
  const reads = (at: number) => {
    const rules = lowered.layers[at];
    return rules !== undefined && members.some((m) => m.scores.readsHiddenAt(rules.layer));
  };
  let h = await runner.embed(main, canvas, reads(0));
  for (const m of members) m.scores.hiddenIn.clear();
  for (const [l, rules] of lowered.layers.entries()) {
    for (const m of members)
      if (h && m.scores.readsHiddenAt(rules.layer))
        m.scores.hiddenIn.set(rules.layer, rowsOf(h, m.offset, m.length));
    const plans = members.map((m) => m.inspector.planLayer(rules));
    plans.forEach((p, i) => {
      full[i] &&= p.full;
    });
    const programOf = (i: number): Program =>
      full[i] ? 'refresh' : plans[i]?.variant === 'reuse' && lowered.programs.reuse ? 'reuse' : 'cached';
    members.forEach((_, i) => {
      ran[i]?.set(rules.layer, programOf(i));
    });
    const groups = programs
      .map((p) => [p, members.flatMap((_, i) => (programOf(i) === p ? [i] : []))] as const)
      .filter(([, g]) => g.length > 0);
    for (const [k, [program, g]] of groups.entries()) {
      const lists = packLists(
        g.map((i) => members[i] as BatchMember),
        g.map((i) => plans[i] as LayerPlan),
        rules.layer,
      );
      // The hidden state entering the next layer is read once every group has run.
      const after = await runner.layer(program, rules.layer, lists, k === groups.length - 1 && reads(l + 1));
      if (k === groups.length - 1) h = after;
    }
  }
  const outs = members.map((m) => m.inspector.outputRows());
  const rowsOut = concat(outs.map((o, i) => o.map((r) => r + (members[i] as BatchMember).offset)));
  const head = await runner.head(main, rowsOut, logits || members.some((m) => m.scores.keepLogits));
  const stats = headStats(head, rowsOut, lowered.config.vocab);
  let at = 0;
  return outs.map((out, i) => {
    const range = [at, at + out.length] as const;
    at += out.length;
    return {
      phase: full[i] ? 'refresh' : 'cached',
      programs: ran[i] as Map<number, Program>,
      out,
      ...(head.logits ? { logits: rowsOf(head.logits, range[0], out.length) } : {}),
      ...(stats
        ? {
            stats: {
              stats: stats.stats.subarray(3 * range[0], 3 * range[1]),
              argmax: stats.argmax.subarray(...range),
            },
          }
        : {}),
    };
  });
}
