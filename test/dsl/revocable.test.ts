/**
 * Revocable decoding (`wino(tau, tau_revoke)`): a committed token whose score at its commit fell
 * short of tau_revoke is turned back into a mask, and the cache-validity model treats the remask
 * as a token change, so the checker rejects reads of what was cached before it.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import type { DecodeStmt } from '../../src/dsl/ast.ts';
import { checkSource } from '../../src/dsl/check.ts';
import { Canvas } from '../../src/dsl/semantics/canvas.ts';
import { decideRevocations } from '../../src/dsl/semantics/decodeRule.ts';
import type { EvalEnv } from '../../src/dsl/semantics/evaluate.ts';

const plan = (rule: string, within = 'current_block', by = 'confidence') =>
  checkSource({
    path: 'p.kvp',
    text: `plan p(tau: float = 0.7 in [0.05, 1.0], tau_revoke: float = 0.9 in [0.05, 1.0]) {
  blocks 8
  refresh all when block_start
  compute current_block
  cache kv of all
  attend all
  decode ${rule} by ${by} in ${within}
}
`,
  });

/** The decode statement and an environment over a canvas of 4 prompt and 16 generated positions in blocks of 8. */
function setup(rule = 'wino(tau, tau_revoke)', by = 'confidence') {
  const checked = plan(rule, 'current_block', by).plans[0];
  if (!checked) throw new Error('not checked');
  const canvas = new Canvas(4, 16, 8);
  const nothing = () => {
    throw new Error('not read by a revocation');
  };
  const env: EvalEnv = {
    canvas,
    bindings: checked.typed.bindings,
    hooks: {
      modelScore: nothing,
      selection: nothing,
      targets: nothing,
      uncached: nothing,
      dirty: nothing,
      attnSimilarity: nothing,
      afterDrift: nothing,
      measuredAt: nothing,
    },
  };
  return { decode: checked.typed.decode as DecodeStmt, canvas, env };
}

const scoresAt = (entries: Record<number, number>): Float64Array => {
  const s = new Float64Array(20).fill(Number.NaN);
  for (const [i, v] of Object.entries(entries)) s[Number(i)] = v;
  return s;
};

describe('wino', () => {
  test('remasks earlier commits short of tau_revoke, worst first, fewer than it commits', () => {
    const { decode, canvas, env } = setup();
    canvas.commit([4, 5, 6, 7]);
    canvas.advance();
    const atCommit = scoresAt({ 4: 0.95, 5: 0.75, 6: 0.8, 7: 0.9 });
    // 7 reached the bar (0.9 is not short of it); 5 is worse than 6.
    expect(decideRevocations(decode, env, [8, 9, 10], atCommit)).toEqual([5, 6]);
    expect(decideRevocations(decode, env, [8, 9], atCommit)).toEqual([5]);
    expect(decideRevocations(decode, env, [8], atCommit)).toEqual([]);
    // Positions committed this very step are never taken back.
    canvas.commit([8, 9]);
    expect(decideRevocations(decode, env, [8, 9, 10], scoresAt({ 8: 0.1, 9: 0.1, 5: 0.8 }))).toEqual([5]);
  });

  test('outside its `in` set and under a low-is-better score', () => {
    const { decode, canvas, env } = setup('wino(tau, tau_revoke)', 'entropy');
    canvas.commit([4, 5, 12]);
    canvas.advance();
    // Entropy: short of the bar means above it. 12 is in block 1, outside the current block.
    expect(decideRevocations(decode, env, [6, 7, 8], scoresAt({ 4: 0.95, 5: 0.2, 12: 3 }))).toEqual([4]);
  });

  test('rules that do not revoke never remask', () => {
    const { decode, canvas, env } = setup('threshold(tau)');
    canvas.commit([4, 5]);
    expect(decideRevocations(decode, env, [6, 7, 8], scoresAt({ 4: 0, 5: 0 }))).toEqual([]);
  });

  test('remasks only earlier commits of its set, and fewer than it commits, so every step leaves fewer masks', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 4, max: 19 }), { maxLength: 16 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 20, maxLength: 20 }),
        fc.integer({ min: 1, max: 8 }),
        (decodedRaw, s, take) => {
          const { decode, canvas, env } = setup();
          canvas.commit(decodedRaw);
          canvas.advance();
          const masked = Array.from({ length: 20 }, (_, i) => i).filter((i) => canvas.isMasked(i));
          const chosen = masked.slice(0, take);
          const out = decideRevocations(decode, env, chosen, Float64Array.from(s));
          expect(out.length).toBeLessThanOrEqual(Math.max(0, chosen.length - 1));
          for (const i of out) {
            expect(decodedRaw).toContain(i);
            expect(canvas.blockOf(i)).toBe(canvas.block);
            expect(s[i]).toBeLessThan(0.9);
          }
          const before = masked.length;
          canvas.commit(chosen, out);
          expect(
            masked.length === 0 ||
              Array.from({ length: 20 }, (_, i) => i).filter((i) => canvas.isMasked(i)).length < before,
          ).toBe(true);
        },
      ),
    );
  });

  test('a remask is a token change: what was cached before it is no longer valid', () => {
    const c = new Canvas(2, 4, 4);
    c.commit([2]);
    c.advance();
    c.advance();
    expect(c.tokenSince(2)).toBe(1);
    c.commit([3], [2]);
    expect(c.isMasked(2)).toBe(true);
    expect(c.tokenSince(2)).toBe(3);
    expect(c.age(2)).toBe(0);
  });

  test('the checker rejects reading the cache of a row remasked outside the compute set', () => {
    // Decoding may reach the finished blocks: nothing to commit there, unless a rule remasks them.
    expect(plan('threshold(tau)', 'current_block | before_block').diagnostics).toEqual([]);
    const bad = plan('wino(tau, tau_revoke)', 'current_block | before_block').diagnostics;
    expect(
      bad.map((d) =>
        d.message
          .replace(/positions? [\d., …]*\d /, 'P ')
          .replace(/step \d+ \(block \d+, block step \d+\)/, 'S'),
      ),
    ).toEqual([
      'keys at P (remasked rows before the current block) are read at S, layer 0 but are neither computed in this step nor cached since their token last changed',
      'the decode rule may commit P (remasked rows before the current block) at S, but that row was never computed since its token last changed',
    ]);
    // Within the current block, which is recomputed every step, remasks are fine.
    expect(plan('wino(tau, tau_revoke)').diagnostics).toEqual([]);
  });

  test('next_targets cannot be known ahead of a revoking rule', () => {
    const r = checkSource({
      path: 'p.kvp',
      text: `plan p() {
  blocks 8
  compute all
  attend all
  cache kv of all
  refresh next_targets when true
  decode wino(0.7, 0.9) by random in current_block
}
`,
    });
    expect(r.diagnostics.map((d) => d.message)).toEqual([
      "'next_targets' is not known before the step: decode rule 'wino' (line 7) remasks positions by their predictions, so the next step's candidates are known only after this one",
    ]);
  });
});
