import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  checkText,
  ciFeatures,
  describeVerdict,
  generatedArb,
  phaseFilterPlaces,
  type Spec,
  verdictHolds,
  verifyGenerated,
} from '../support/planGen.ts';
import { fuzzRuns } from './runs.ts';

const caseArb = fc.record({ g: generatedArb(ciFeatures), seed: fc.integer({ min: 1, max: 1_000_000 }) });

describe('accepted plans verify against full attention on the reference backend', () => {
  test('exact plans at every step; approximate ones under their premise and at refresh steps', async () => {
    let accepted = 0;
    let approximate = 0;
    let phased = 0;
    const families = new Set<Spec['family']>();
    for (const { seed, numRuns } of fuzzRuns(160))
      await fc.assert(
        fc.asyncProperty(caseArb, async ({ g, seed: caseSeed }) => {
          const o = checkText(g.text);
          if (o.kind === 'crashed') throw new Error(`checker crashed: ${String(o.error)}`);
          if (o.kind !== 'accepted') return;
          const v = await verifyGenerated(g.spec, o.plan, caseSeed);
          // An accepted plan that fails is a checker or lowering bug.
          expect(verdictHolds(v, o.warnings), `${describeVerdict(v)}\n${g.text}`).toBe(true);
          accepted++;
          if (!v.exact) approximate++;
          if (phaseFilterPlaces(o.plan.typed).size > 0) phased++;
          families.add(g.spec.family);
        }),
        { seed, numRuns },
      );
    // The property is only as strong as what reaches it: most plans are accepted, of every family.
    expect(accepted).toBeGreaterThanOrEqual(80);
    expect(approximate).toBeGreaterThanOrEqual(30);
    expect(families.size).toBeGreaterThanOrEqual(8);
    // Phases (sets filtered by a step condition) reach the comparison with full attention.
    expect(phased).toBeGreaterThanOrEqual(8);
  });
});
