// The checker proves what the runtime runs: on every sample scenario of generated plans, the
// runtime's inspector, replaying the checker's token trajectory with the same scores, builds
// exactly the rows, keys, writes and restore lists the checker's simulation decided.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { layersToSimulate } from '../../src/dsl/check.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import { constantOf } from '../../src/dsl/semantics/constant.ts';
import { members } from '../../src/dsl/semantics/evaluate.ts';
import { layerRules } from '../../src/dsl/semantics/layerRules.ts';
import {
  noApproximations,
  predictionRowOf,
  scenarios,
  simulatePlan,
  standInRandom,
  standInScores,
} from '../../src/dsl/semantics/simulate.ts';
import type { LayerDecision } from '../../src/dsl/semantics/stepper.ts';
import type { TypedPlan } from '../../src/dsl/typecheck.ts';
import { lists } from '../../src/ir/names.ts';
import { Inspector } from '../../src/runtime/inspector.ts';
import { fuzzRuns } from '../fuzz/runs.ts';
import { checkText, ciFeatures, generatedArb } from '../support/planGen.ts';

type Lists = Record<string, number[]>;

/** The index lists a decision implies, written out from its sets (independently of the inspector). */
function expected(d: LayerDecision): Lists {
  const l = d.layer;
  const out: Lists = { [lists.rows(l)]: members(d.rows) };
  if (d.keys) out[lists.keys(l)] = members(d.keys);
  d.headKeys?.forEach((keys, g) => {
    out[lists.headKeys(l, g)] = members(keys);
  });
  for (const [name, keys] of d.segments)
    if (!d.servedFrom.has(name)) out[lists.keys(l, name)] = members(keys);
  for (const w of d.writes) out[lists.write(l, w.id)] = members(w.rows);
  if (d.restore) out[lists.restore(l)] = members(d.restore);
  if (d.delta) out[lists.delta(l)] = members(d.delta);
  return out;
}

/** Every scenario of the checker on which the plan runs to the end, compared step by step. */
function agree(typed: TypedPlan): number {
  const blocks = typed.plan.body.find((s) => s.kind === 'blocks');
  const blockLen = blocks ? constantOf(typed, blocks.length) : undefined;
  const numLayers = layersToSimulate(typed);
  let compared = 0;
  // Slowest-commit scenarios change the decode rule's own commits, which the runtime never does.
  for (const sc of scenarios(typed, blockLen, numLayers).filter((s) => s.commits === 'scores')) {
    const decided: Lists[][] = [];
    const commits: { chosen: readonly number[]; remasked: readonly number[] }[] = [];
    simulatePlan(typed, sc, noApproximations(), {
      layer: (d) => {
        if (d.layer === 0) decided.push([]);
        decided.at(-1)?.push(expected(d));
      },
      commit: (chosen, remasked) => commits.push({ chosen, remasked }),
    });
    const canvas = new Canvas(sc.promptLen, sc.genLen, sc.blockLen, sc.aligned);
    const rules = layerRules(typed, numLayers);
    // Prediction statistics of rows never computed take the runtime's value; the replay tracks
    // which rows the last layer computed, as the runtime's logits do.
    const logitsStep = new Int32Array(canvas.length).fill(-1);
    const inspector = new Inspector(
      typed,
      rules,
      canvas,
      standInScores(sc, canvas, logitsStep, predictionRowOf(typed)),
      standInRandom(sc, canvas.length),
    );
    for (const [t, { chosen, remasked }] of commits.entries()) {
      const ran = rules.map((r) =>
        Object.fromEntries([...inspector.planLayer(r).lists].map(([n, list]) => [n, [...list]])),
      );
      expect(ran, `step ${t} of scenario ${JSON.stringify(sc)}`).toEqual(decided[t]);
      for (const i of ran.at(-1)?.[lists.rows(rules.length - 1)] ?? []) logitsStep[i] = t;
      // A revoking rule takes back what the checker's run took back.
      expect(inspector.revoke(chosen), `remasks at step ${t}`).toEqual(remasked);
      inspector.finishStep();
      canvas.commit([...chosen], [...remasked]);
      canvas.advance();
      compared++;
    }
  }
  return compared;
}

describe('the checker and the runtime share one step semantics', () => {
  test('on generated plans, the inspector builds the lists the checker simulated, step by step', () => {
    let plans = 0;
    for (const { seed, numRuns } of fuzzRuns(60))
      fc.assert(
        fc.property(generatedArb(ciFeatures), (g) => {
          const o = checkText(g.text);
          if (o.kind !== 'accepted') return;
          if (agree(o.plan.typed) > 0) plans++;
        }),
        { seed, numRuns },
      );
    expect(plans).toBeGreaterThanOrEqual(30);
  });
});
