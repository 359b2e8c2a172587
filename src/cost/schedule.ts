/**
 * What every step of a whole generation runs, from the plan's step semantics alone: the runtime's
 * inspector (the decisions the checker proves) driven by the checker's stand-in scores, as
 * `kvplan check` simulates a generation, with no model. A step is its program per layer, the
 * lengths of the index lists it is fed and the score probes it asks for: everything its cost
 * depends on. Steps alike are counted once.
 */
import type { CheckedPlan } from '../dsl/check.ts';
import { simulationWork } from '../dsl/semantics/budget.ts';
import { Canvas } from '../dsl/semantics/canvas.ts';
import { type Mask, members } from '../dsl/semantics/evaluate.ts';
import {
  predictionRowOf,
  type Scenario,
  scenarioCommits,
  standInRandom,
  standInScores,
  stepLimit,
} from '../dsl/semantics/simulate.ts';
import type { StepScores } from '../dsl/semantics/stepper.ts';
import { similarityLayers } from '../dsl/semantics/uses.ts';
import type { LoweredPlan } from '../ir/lower.ts';
import { Inspector } from '../runtime/inspector.ts';
import type { Program } from '../runtime/runner.ts';
import { blockLength } from '../runtime/simulate.ts';
import type { ProbeCall } from './probes.ts';

export interface StepShape {
  /** `refresh` when every layer is full, `reuse` when some layer serves a stored partial, else `cached`. */
  readonly phase: Program;
  /** The program each layer runs, by layer, as the runtime picks it (src/runtime/batch.ts). */
  readonly programs: readonly Program[];
  /** The length of every index list of the step, by name (`rows.0`, `keys.1`, `out`, …). */
  readonly sizes: ReadonlyMap<string, number>;
  readonly probes: readonly ProbeCall[];
}

export interface Schedule {
  readonly promptLength: number;
  /** Generated positions: the generation asked for, and at least one block (as `generate` runs it). */
  readonly genLength: number;
  readonly steps: number;
  readonly shapes: readonly { readonly shape: StepShape; readonly count: number }[];
}

/** Scores measured from attention, which the runtime measures once a step per query set (ModelScores). */
const attentionScores = new Set(['attention_mass', 'query_key', 'rollout']);

/** The sample generation of a schedule: as `kvplan generate` runs it, at least one block long. */
function scheduleScenario(
  plan: CheckedPlan,
  lowered: LoweredPlan,
  promptLen: number,
  genLength: number,
): Scenario {
  const genLen = Math.max(genLength, blockLength(plan, genLength));
  return {
    promptLen,
    genLen,
    blockLen: blockLength(plan, genLen),
    numLayers: lowered.layers.length,
    seed: 1,
    data: 'never',
    commits: 'one',
    aligned: lowered.config.alignedBlocks === true,
  };
}

/** What simulating the schedule costs, in the checker's row-steps (src/dsl/semantics/budget.ts). */
export const scheduleWork = (plan: CheckedPlan, lowered: LoweredPlan, promptLen: number, genLength: number) =>
  simulationWork(plan.typed, [scheduleScenario(plan, lowered, promptLen, genLength)]);

/**
 * The steps of one sequence's generation. Decode rules whose commit count comes from scores
 * (threshold, factor) commit one position a step, their slowest: what random weights do, and a
 * count the decode-matched twin shares, so that the plan-to-twin ratio is the cache's alone.
 * Data-dependent refreshes (drift, similarity) never fire: the stand-in scores say nothing about
 * a model's drift, so the cached schedule is the plan's best case.
 */
export function stepSchedule(
  plan: CheckedPlan,
  lowered: LoweredPlan,
  promptLength: number,
  genLength: number,
): Schedule {
  const sc = scheduleScenario(plan, lowered, promptLength, genLength);
  const canvas = new Canvas(sc.promptLen, sc.genLen, sc.blockLen, sc.aligned);
  const L = canvas.length;
  const logitsStep = new Int32Array(L).fill(-1);
  const standIn = standInScores(sc, canvas, logitsStep, predictionRowOf(plan.typed));
  const rememberedLayers = similarityLayers(
    plan.typed,
    lowered.layers.map((r) => r.layer),
  );
  let probes: ProbeCall[] = [];
  let measured = new Set<string>();
  // Similarity compares with attention rows remembered at a refresh: none before the first.
  let remembered = false;
  // As ModelScores does: a layer's attention row is measured once a step, however many layers read
  // it, and the refresh that remembers it reuses it.
  let rowsMeasured = new Set<number>();
  const attentionRow = (layer: number) => {
    if (rowsMeasured.has(layer)) return;
    rowsMeasured.add(layer);
    probes.push({ output: 'row', layer, queries: L });
  };
  const scores: StepScores = {
    score(name, queries: Mask | undefined, layer) {
      if (attentionScores.has(name)) {
        const asked = queries ? Buffer.from(queries.buffer, queries.byteOffset, queries.length) : undefined;
        const key = `${name}:${asked?.toString('latin1') ?? 'all'}`;
        if (!measured.has(key)) {
          measured.add(key);
          const rows = name === 'rollout' || !queries ? L : members(queries).length;
          probes.push({ output: name === 'query_key' ? 'query_key' : 'mass', layer, queries: rows });
        }
      } else if (name === 'value_drift' || name === 'key_drift')
        probes.push({ output: name === 'key_drift' ? 'k' : 'v', layer, queries: 0 });
      // hidden_drift projects nothing: it compares the hidden state the step already reads back with
      // a host copy of the hidden cache, which is not costed.
      return standIn.score(name, queries, layer);
    },
    attnSimilarity(layer) {
      if (remembered) attentionRow(layer);
      return standIn.attnSimilarity(layer);
    },
  };
  const inspector = new Inspector(
    plan.typed,
    lowered.layers,
    canvas,
    scores,
    standInRandom(sc, L),
    lowered.config.kvHeads,
  );
  const commits = scenarioCommits(plan.typed, sc).commits ?? ((chosen: number[]) => chosen);
  const shapes = new Map<string, { shape: StepShape; count: number }>();
  while (!canvas.done) {
    if (canvas.step > stepLimit(sc))
      throw new Error(
        `plan ${plan.plan.name} does not finish a generation of ${sc.genLen} in ${canvas.step} steps`,
      );
    let full = true;
    const programs: Program[] = [];
    for (const r of lowered.layers) {
      const p = inspector.planLayer(r);
      full &&= p.full;
      programs.push(full ? 'refresh' : p.variant === 'reuse' && lowered.programs.reuse ? 'reuse' : 'cached');
    }
    const out = inspector.outputRows();
    for (const r of out) logitsStep[r] = canvas.step;
    if (full && rememberedLayers.length > 0) {
      for (const l of rememberedLayers) attentionRow(l);
      remembered = true;
    }
    const chosen = commits(inspector.decide((by) => inspector.decodeScore(by)));
    const sizes = new Map([...inspector.listSizes(), ['out', out.length]]);
    const phase: Program = full ? 'refresh' : programs.includes('reuse') ? 'reuse' : 'cached';
    const key = JSON.stringify([programs, [...sizes], probes]);
    const seen = shapes.get(key);
    if (seen) seen.count++;
    else shapes.set(key, { shape: { phase, programs, sizes, probes }, count: 1 });
    probes = [];
    measured = new Set();
    rowsMeasured = new Set();
    const remasked = inspector.revoke(chosen);
    inspector.finishStep();
    canvas.commit(chosen, remasked);
    canvas.advance();
  }
  return { promptLength, genLength: sc.genLen, steps: canvas.step, shapes: [...shapes.values()] };
}
