// The worked example of docs/api.md is examples/api/worked.ts: this runs that file and checks what
// it computed against the plan it wrote, and checks that the docs show exactly that file.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

type Example = typeof import('../../examples/api/worked.ts');
let ex: Example;
const printed: string[] = [];

beforeAll(async () => {
  const log = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
    printed.push(args.join(' '));
  });
  try {
    ex = await import('../../examples/api/worked.ts');
  } finally {
    log.mockRestore();
  }
}, 60_000);
afterAll(() => vi.restoreAllMocks());

describe('the worked example of docs/api.md', () => {
  test('docs/api.md shows examples/api/worked.ts, importing from the package', () => {
    const docs = read('docs/api.md');
    const block = /```ts\n([\s\S]*?)```/.exec(docs)?.[1];
    const file = read('examples/api/worked.ts');
    expect(file).toContain("from '../../src/index.ts'");
    expect(block).toBe(file.replace("from '../../src/index.ts'", "from 'kvplan'"));
  });

  test('the plan is accepted, classified approximate, and verified against full attention', () => {
    const { checked, verdict } = ex;
    expect(checked.ok).toBe(true);
    expect(checked.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    const [plan] = checked.plans;
    // It reads stale K/V between refreshes: the checker must not call it exact.
    expect(plan?.classification).toMatchObject({
      exact: false,
      premise: expect.stringContaining('cached K/V'),
    });
    expect(verdict.ok).toBe(true);
    expect(verdict.checks.map((c) => [c.name, c.ok])).toEqual([
      ['ir', true],
      ['premise', true],
      ['refresh', true],
    ]);
    expect(printed).toContain(`premise ok: ${verdict.checks[1]?.detail}`);
  });

  test('the step callback saw every step, and the sets are the plan’s', () => {
    const { checked, events, result, model } = ex;
    const block = checked.plans[0]?.params.get('block') as number;
    const k = checked.plans[0]?.params.get('k') as number;
    const [seq] = result.sequences;
    if (seq === undefined) throw new Error('no sequence');
    const promptLen = seq.prompt.length;
    const genLength = seq.tokens.length;
    const canvas = promptLen + genLength;
    expect(events.length).toBe(seq.steps);
    expect(events.map((e) => e.step)).toEqual(events.map((_, i) => i));
    expect(events.every((e) => e.sequence === 0)).toBe(true);

    // Committed positions: each generated position once, with the token the result holds there.
    const committed = events.flatMap((e) => e.committed);
    // A sequence stops once it has committed an EOS and everything before it.
    const end = seq.eosAt === undefined ? genLength : seq.eosAt + 1;
    const positions = committed.map((c) => c.position);
    expect(new Set(positions).size).toBe(positions.length);
    for (let i = 0; i < end; i++) expect(positions).toContain(promptLen + i);
    for (const c of committed) expect(seq.tokens[c.position - promptLen]).toBe(c.token);
    const eos = seq.tokens.indexOf(model.tokenizer.eosTokenId ?? -1);
    expect(seq.text).toBe(model.tokenizer.decode(seq.tokens.slice(0, eos < 0 ? genLength : eos)));

    for (const e of events) {
      const start = promptLen + e.block * block;
      const current = Array.from({ length: block }, (_, i) => start + i);
      // `refresh all when block_start`: the first step of each block, and only it, recomputes every row.
      expect(e.phase).toBe(e.blockStep === 0 ? 'refresh' : 'cached');
      // `compute current_block` on the other steps.
      expect([...e.computed]).toEqual(
        e.phase === 'refresh' ? Array.from({ length: canvas }, (_, i) => i) : current,
      );
      expect(e.rowsPerLayer).toEqual(Array(model.config.layers).fill(e.computed.length));
      expect(e.logits.shape).toEqual([e.computed.length, model.config.vocab]);
      // `decode per_step(k) … in current_block`.
      expect(e.committed.length).toBe(k);
      for (const c of e.committed) expect(current).toContain(c.position);
    }
    expect(events.filter((e) => e.phase === 'refresh').length).toBe(Math.ceil(end / block));
  });
});
