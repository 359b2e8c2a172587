/**
 * The predictions a decode rule reads (src/dsl/semantics/simulate.ts, checkPredictions). When the
 * order comes from the model's predictions, a run may commit any candidate, so every candidate's
 * prediction row must have been computed since its token last changed, not only the ones the
 * simulation's stand-in scores happened to pick. The first plan below was accepted when only the
 * picked ones were checked, and on a model it read, under ar_shift, the prediction of a row decoded
 * since its last computation (found by test/fuzz/verify.property.test.ts, seed 1617941766: its
 * premise check failed by 3.7).
 */
import { describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';
import { decodeOrderFromModel } from '../../src/dsl/semantics/simulate.ts';

const plan = (compute: string, decode: string) =>
  checkSource({
    path: 'p.kvp',
    text: `plan p() {
  refresh prompt when every(2)
  refresh generated when every(2)
  compute ${compute}
  cache kv, attn, ffn of all
  attend leftmost(all, 1)
  decode ${decode}
}
`,
  });

const messages = (r: ReturnType<typeof plan>) =>
  r.diagnostics.map((d) => `${d.span.start.line}: ${d.message.replace(/\d+/g, 'N')}`);

describe('the predictions a decode rule may read', () => {
  const stale = 'leftmost((all)[entropy < 0.5], 1)';

  test('an order by model scores may commit any candidate: each needs a prediction computed since its token changed', () => {
    for (const by of ['margin', 'confidence', 'entropy', 'certainty(2.0)']) {
      const r = plan(stale, `per_step(1) by ${by} ar_shift`);
      expect(r.plans, by).toEqual([]);
      expect(messages(r), by).toEqual([
        '7: the decode rule may commit position N (masked rows) at step N (block N, block step N), but row N (ar_shift) was never computed since its token last changed',
      ]);
      expect(r.diagnostics[0]?.notes, by).toEqual([
        "note: its order comes from the model's predictions, so a run may commit any of its candidates",
      ]);
    }
    // The default order is by confidence.
    expect(messages(plan(stale, 'per_step(1) ar_shift'))).toHaveLength(1);
  });

  test('recomputing the rows decoded last step keeps every candidate prediction valid', () => {
    const r = plan(`${stale} | newly_decoded`, 'per_step(1) by margin ar_shift');
    expect(r.diagnostics).toEqual([]);
    expect(r.plans[0]?.classification.exact).toBe(false);
  });

  test('without ar_shift a masked candidate predicts itself, and its token has not changed', () => {
    expect(plan(stale, 'per_step(1) by margin').diagnostics).toEqual([]);
  });

  test('an order the simulation knows (by age) is checked on the positions it commits', () => {
    // The committed position's own prediction row is the one the error names, with no note.
    const r = plan(stale, 'per_step(1) by age ar_shift');
    expect(messages(r)).toEqual([
      '7: the decode rule reads the prediction of position N (masked rows) at step N (block N, block step N), but row N (ar_shift) was never computed since its token last changed',
    ]);
    expect(r.diagnostics[0]?.notes ?? []).toEqual([]);
  });

  test('which orders come from the model: every score but age, position and random, in any expression', () => {
    const fromModel = (by: string) => {
      const p = plan('current_block', `per_step(1)${by}`).plans[0];
      if (!p) throw new Error(`not accepted: ${by}`);
      return decodeOrderFromModel(p.typed);
    };
    expect(
      [
        '',
        ' by margin',
        ' by entropy',
        ' by confidence - 0.01 * position',
        ' by maxpool(confidence, 3)',
        ' by maxpool(age, 3)',
      ].map(fromModel),
    ).toEqual([true, true, true, true, true, false]);
    expect([' by age', ' by position', ' by random', ' by -position'].map(fromModel)).toEqual([
      false,
      false,
      false,
      false,
    ]);
  });
});
