/**
 * `bench policies --journal`, end to end at a tiny size: a run given a journal that holds every
 * pass runs none and reports the journal's numbers; one that lacks a pass runs that pass only.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { policiesSuite } from '../../bench/policies.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';

const dir = mkdtempSync(join(tmpdir(), 'kvplan-policies-journal-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

interface Row {
  plan: string;
  tokens_per_s: number;
  speedup: number;
  agreement: number;
}
interface Results {
  rows: Row[];
  journal: { segments: { passes: string[] }[] };
}

async function run(journal: string, out: string): Promise<Results> {
  vi.spyOn(console, 'log').mockImplementation(() => {});
  vi.spyOn(console, 'error').mockImplementation(() => {});
  try {
    await policiesSuite({
      config: presets.small as ModelConfig,
      promptLen: 4,
      genLen: 8,
      block: 4,
      prompts: 1,
      plans: ['d2cache'],
      repeats: 1,
      journal,
      to: { json: out, doc: null, hint: '' },
    });
  } finally {
    vi.restoreAllMocks();
  }
  return JSON.parse(readFileSync(out, 'utf8')) as Results;
}

describe('bench policies --journal', () => {
  test('held passes are not run again; a missing one is run alone', { timeout: 300_000 }, async () => {
    const path = join(dir, 'run.journal.json');
    const first = await run(path, join(dir, 'first.json'));
    expect(first.rows.map((r) => r.plan)).toEqual(['baseline', 'd2cache']);
    expect(first.journal.segments.map((s) => s.passes)).toEqual([['baseline#0', 'd2cache#0']]);

    // The journal's baseline made 1000 times slower: a run that reads it reports that.
    const journal = JSON.parse(readFileSync(path, 'utf8'));
    journal.passes['baseline#0'].ms *= 1000;
    writeFileSync(path, JSON.stringify(journal));
    const second = await run(path, join(dir, 'second.json'));
    const [b1, d1] = first.rows as [Row, Row];
    const [b2, d2] = second.rows as [Row, Row];
    expect(b2.tokens_per_s).toBeCloseTo(b1.tokens_per_s / 1000, 10);
    expect(d2.tokens_per_s).toBe(d1.tokens_per_s);
    expect(d2.speedup).toBeCloseTo(d1.speedup * 1000, 6);
    expect(second.journal.segments).toHaveLength(1);

    // Without its d2cache pass, only that pass runs; the baseline stays the journal's.
    delete journal.passes['d2cache#0'];
    writeFileSync(path, JSON.stringify(journal));
    const third = await run(path, join(dir, 'third.json'));
    expect(third.journal.segments.map((s) => s.passes)).toEqual([['baseline#0', 'd2cache#0'], ['d2cache#0']]);
    expect((third.rows[0] as Row).tokens_per_s).toBe(b2.tokens_per_s);
    // The same tokens from the same build: its agreement with the baseline is the first run's.
    expect((third.rows[1] as Row).agreement).toBe(d1.agreement);
  });
});
