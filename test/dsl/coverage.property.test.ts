import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { checkSource } from '../../src/dsl/check.ts';

/**
 * Row classes that every sample generation meets at a step that is not a refresh (block sizes >= 4
 * and several blocks): the prompt, the current block's masked, newly decoded and older decoded
 * rows, masked rows after the block, and decoded rows before it.
 */
const atoms = ['prompt', 'cur_masked', 'cur_new', 'cur_old', 'after_masked', 'before_old'] as const;
type Atom = (typeof atoms)[number] | 'before_new';

/**
 * The classes a row of each class has passed through since its token last changed: a cache entry
 * is valid only if it was written in one of them. A row decoded last step has no such past.
 */
const since: Record<(typeof atoms)[number], readonly Atom[]> = {
  prompt: ['prompt'],
  cur_masked: ['after_masked', 'cur_masked'],
  cur_new: ['cur_new'],
  cur_old: ['cur_new', 'cur_old'],
  after_masked: ['after_masked'],
  before_old: ['cur_new', 'cur_old', 'before_new', 'before_old'],
};

// Which classes each base set contains, worked out by hand from the definitions in builtins.ts.
const baseSets: Record<string, readonly Atom[]> = {
  prompt: ['prompt'],
  generated: ['cur_masked', 'cur_new', 'cur_old', 'after_masked', 'before_old', 'before_new'],
  masked: ['cur_masked', 'after_masked'],
  decoded: ['cur_new', 'cur_old', 'before_old', 'before_new'],
  newly_decoded: ['cur_new', 'before_new'],
  current_block: ['cur_masked', 'cur_new', 'cur_old'],
  before_block: ['before_old', 'before_new'],
  after_block: ['after_masked'],
};
const names = Object.keys(baseSets);
const setExpr = fc.uniqueArray(fc.constantFrom(...names), { minLength: 1, maxLength: 4 });
const covers = (sets: readonly string[]): Set<Atom> => new Set(sets.flatMap((s) => baseSets[s] ?? []));

const planText = (compute: string[], cached: string[], block: number, refresh: string) =>
  `plan p(block = ${block}) {
  blocks block
  refresh all when ${refresh}
  compute ${compute.join(' | ')}
  cache kv of ${cached.join(' | ')}
  attend all
  decode steps(block)
}
`;

describe('the checker never accepts reads that nothing covers', () => {
  test('a key class that is neither computed nor ever validly cached is always rejected', () => {
    fc.assert(
      fc.property(
        setExpr,
        setExpr,
        fc.constantFrom(4, 8),
        fc.constantFrom('block_start', 'step == 0', 'every(64)'),
        (compute, cached, block, refresh) => {
          const computed = covers(compute);
          const stored = covers(cached);
          // Rows of a class that is never computed, and never cached since their token changed.
          const uncovered = atoms.filter((a) => !computed.has(a) && !since[a].some((b) => stored.has(b)));
          fc.pre(uncovered.length > 0);
          const r = checkSource({ path: 'p.kvp', text: planText(compute, cached, block, refresh) });
          expect(r.plans).toEqual([]);
          expect(r.diagnostics.some((d) => /neither computed in this step/.test(d.message))).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  test('computing every class is always accepted, whatever is cached', () => {
    fc.assert(
      fc.property(setExpr, fc.constantFrom(4, 8), (cached, block) => {
        const r = checkSource({
          path: 'p.kvp',
          text: planText(['prompt', 'generated'], cached, block, 'step == 0'),
        });
        expect(r.diagnostics).toEqual([]);
        expect(r.plans[0]?.classification).toEqual({ exact: true });
      }),
      { numRuns: 20 },
    );
  });
});
