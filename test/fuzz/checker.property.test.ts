import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { decodeRules } from '../../src/dsl/builtins.ts';
import { planUses } from '../../src/dsl/semantics/uses.ts';
import {
  allFeatures,
  checkText,
  ciFeatures,
  familySpecArb,
  generatedArb,
  nearMisses,
  phaseFilterPlaces,
  planText,
  type SetPlace,
  setPlaces,
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

  test('writes phases (sets filtered by a step condition) wherever a set appears, in a minority of plans', () => {
    // Read from the checked plan's syntax tree: a filter whose predicate is a bool, not a pred.
    let accepted = 0;
    let phased = 0;
    const places = new Set<SetPlace>();
    for (const { seed, numRuns } of fuzzRuns(400))
      fc.assert(
        fc.property(generatedArb(ciFeatures), ({ text }) => {
          const o = checkText(text);
          if (o.kind !== 'accepted') return;
          accepted++;
          const found = phaseFilterPlaces(o.plan.typed);
          if (found.size > 0) phased++;
          for (const p of found) places.add(p);
        }),
        { seed, numRuns },
      );
    expect([...places].sort()).toEqual([...setPlaces].sort());
    expect(phased / accepted).toBeGreaterThanOrEqual(0.08);
    expect(phased / accepted).toBeLessThanOrEqual(0.3);
  });

  test('writes every decode rule, every drift score, the adaptive layer boundary, uncached, per-KV-head selections and pinned measurements in accepted plans', () => {
    const rules = new Set<string>();
    const drifts = new Set<string>();
    const driftScores = ['value_drift', 'key_drift', 'hidden_drift'];
    let adaptive = 0;
    let sliding = 0;
    let perHead = 0;
    let pinned = 0;
    for (const { seed, numRuns } of fuzzRuns(400))
      fc.assert(
        fc.property(generatedArb(ciFeatures), ({ text }) => {
          const o = checkText(text);
          if (o.kind !== 'accepted') return;
          rules.add(o.plan.typed.decode.rule.callee.name);
          if (planUses(o.plan.plan, new Set(['after_drift']))) adaptive++;
          if (planUses(o.plan.plan, new Set(['uncached']))) sliding++;
          if (o.plan.plan.body.some((s) => s.kind === 'select' && s.per)) perHead++;
          if (planUses(o.plan.plan, new Set(['measured_at']))) pinned++;
          for (const d of driftScores) if (planUses(o.plan.plan, new Set([d]))) drifts.add(d);
        }),
        { seed, numRuns },
      );
    expect([...rules].sort()).toEqual(Object.keys(decodeRules).sort());
    expect(adaptive).toBeGreaterThan(0);
    expect(sliding).toBeGreaterThan(0);
    expect(perHead).toBeGreaterThan(0);
    expect(pinned).toBeGreaterThan(0);
    expect([...drifts].sort()).toEqual([...driftScores].sort());
  });
});
