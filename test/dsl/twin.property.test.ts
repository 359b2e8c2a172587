import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { printPlan } from '../../src/dsl/printer.ts';
import { decodeMatchedTwin, structureOf } from '../../src/dsl/twin.ts';
import { fuzzRuns } from '../fuzz/runs.ts';
import {
  checkText,
  ciFeatures,
  describeVerdict,
  generatedArb,
  verdictHolds,
  verifyGenerated,
} from '../support/planGen.ts';

const caseArb = fc.record({ g: generatedArb(ciFeatures), seed: fc.integer({ min: 1, max: 1_000_000 }) });

const decodeLine = (text: string) =>
  text
    .split('\n')
    .find((l) => l.trim().startsWith('decode '))
    ?.trim();

describe('the twin of plans nobody wrote', () => {
  test('every accepted plan has a twin that checks, caches nothing, decodes alike and is exact', async () => {
    let twins = 0;
    for (const { seed, numRuns } of fuzzRuns(60))
      await fc.assert(
        fc.asyncProperty(caseArb, async ({ g, seed: caseSeed }) => {
          const o = checkText(g.text);
          if (o.kind !== 'accepted') return;
          const t = decodeMatchedTwin(o.plan);
          expect(t.ok, `${g.text}\n---\n${t.text}`).toBe(true);
          if (!t.ok) return;
          const twin = t.checked;
          expect(twin.classification.exact).toBe(true);
          expect(twin.plan.body.some((s) => ['cache', 'refresh', 'select'].includes(s.kind))).toBe(false);
          expect(decodeLine(printPlan(twin.plan))).toBe(decodeLine(printPlan(o.plan.plan)));
          expect(structureOf(twin.typed).mask?.name).toBe(structureOf(o.plan.typed).mask?.name);
          expect(twin.typed.decode.arShift).toBe(o.plan.typed.decode.arShift);
          for (const [k, v] of twin.params) expect(o.plan.params.get(k)).toBe(v);
          // Exact: equal to the golden full forward at every step of a generation.
          const v = await verifyGenerated(g.spec, twin, caseSeed);
          expect(v.exact).toBe(true);
          expect(verdictHolds(v, o.warnings), `${describeVerdict(v)}\n${t.text}`).toBe(true);
          twins++;
        }),
        { seed, numRuns },
      );
    // Most generated plans are accepted, so the property reached many twins.
    expect(twins).toBeGreaterThanOrEqual(30);
  });
});
