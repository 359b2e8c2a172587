import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  allFeatures,
  checkText,
  ciFeatures,
  familySpecArb,
  generatedArb,
  nearMisses,
  planText,
} from '../support/planGen.ts';
import { fuzzRuns } from './runs.ts';

describe('the checker on plans nobody wrote', () => {
  test('never throws, on any generated plan, known findings included', () => {
    for (const { seed, numRuns } of fuzzRuns(120))
      fc.assert(
        fc.property(generatedArb(allFeatures), ({ text }) => {
          const o = checkText(text);
          if (o.kind === 'crashed') throw new Error(`internal error: ${String(o.error)}\n${text}`);
        }),
        { seed, numRuns },
      );
  });

  test('accepts the well-formed patterns of section 6', () => {
    for (const { seed, numRuns } of fuzzRuns(60))
      fc.assert(
        fc.property(familySpecArb(ciFeatures), (spec) => {
          const o = checkText(planText(spec));
          expect(o.kind === 'rejected' ? o.errors.map((e) => e.message) : o.kind).toBe('accepted');
        }),
        { seed, numRuns },
      );
  });

  test('rejects every near miss with an error, not a crash', () => {
    const seen = new Set<string>();
    for (const { seed, numRuns } of fuzzRuns(80))
      fc.assert(
        fc.property(familySpecArb(ciFeatures), (spec) => {
          if (checkText(planText(spec)).kind !== 'accepted') return;
          for (const m of nearMisses(spec)) {
            seen.add(m.mutation);
            const o = checkText(planText(m.spec));
            expect(o.kind, `${m.mutation} (${m.rule})\n${planText(m.spec)}`).toBe('rejected');
            if (o.kind === 'rejected') expect(o.errors.length).toBeGreaterThan(0);
          }
        }),
        { seed, numRuns },
      );
    // The mutations are only as good as their reach: most kinds must have been tried.
    expect(seen.size).toBeGreaterThanOrEqual(6);
  });
});
