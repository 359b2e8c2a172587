/**
 * `bench policies --journal`, end to end at a tiny size: a run given a journal that holds every
 * pass runs none and reports the journal's numbers; one that lacks a pass runs that pass only.
 */

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { policiesSuite } from '../../bench/policies.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
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

async function run(journal: string, out: string, stopAfterMs?: number): Promise<Results | undefined> {
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
      journal: { path: journal, ...(stopAfterMs !== undefined ? { stopAfterMs } : {}) },
      to: { json: out, doc: null, hint: '' },
    });
  } finally {
    vi.restoreAllMocks();
  }
  return existsSync(out) ? (JSON.parse(readFileSync(out, 'utf8')) as Results) : undefined;
}

describe('bench policies --journal', () => {
  test('held passes are not run again; a missing one is run alone', { timeout: 300_000 }, async () => {
    const path = join(dir, 'run.journal.json');
    // Stopped before its first pass: no journal and no results, and nothing run.
    expect(await run(path, join(dir, 'stopped.json'), 0)).toBeUndefined();
    expect(existsSync(path)).toBe(false);
    const first = (await run(path, join(dir, 'first.json'))) as Results;
    expect(first.rows.map((r) => r.plan)).toEqual(['baseline', 'd2cache']);
    expect(first.journal.segments.map((s) => s.passes)).toEqual([['baseline#0', 'd2cache#0']]);

    // The journal's baseline made 1000 times slower: a run that reads it reports that.
    const journal = JSON.parse(readFileSync(path, 'utf8'));
    journal.passes['baseline#0'].ms *= 1000;
    writeFileSync(path, JSON.stringify(journal));
    // A run told to stop at once still writes the results of a journal that holds every pass.
    const second = (await run(path, join(dir, 'second.json'), 0)) as Results;
    const [b1, d1] = first.rows as [Row, Row];
    const [b2, d2] = second.rows as [Row, Row];
    expect(b2.tokens_per_s).toBeCloseTo(b1.tokens_per_s / 1000, 10);
    expect(d2.tokens_per_s).toBe(d1.tokens_per_s);
    expect(d2.speedup).toBeCloseTo(d1.speedup * 1000, 6);
    expect(second.journal.segments).toHaveLength(1);

    // Without its d2cache pass, only that pass runs; the baseline stays the journal's.
    delete journal.passes['d2cache#0'];
    writeFileSync(path, JSON.stringify(journal));
    // Stopped at once, the journal lacking a pass: nothing run, nothing written.
    expect(await run(path, join(dir, 'third-stopped.json'), 0)).toBeUndefined();
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual(journal);
    const third = (await run(path, join(dir, 'third.json'))) as Results;
    expect(third.journal.segments.map((s) => s.passes)).toEqual([['baseline#0', 'd2cache#0'], ['d2cache#0']]);
    expect((third.rows[0] as Row).tokens_per_s).toBe(b2.tokens_per_s);
    // The same tokens from the same build: its agreement with the baseline is the first run's.
    expect((third.rows[1] as Row).agreement).toBe(d1.agreement);
  });
});

describe('bench policies --journal on the command line', () => {
  const bench = (...args: string[]) =>
    spawnSync(
      process.execPath,
      [join(REPO, 'node_modules/tsx/dist/cli.mjs'), 'bench/run.ts', 'policies', ...args],
      {
        cwd: REPO,
        encoding: 'utf8',
        timeout: 60_000,
      },
    );

  test('--stop-after without --journal is a usage error', () => {
    const r = bench('--quick', '--stop-after', '5');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--stop-after needs --journal <file>');
  });

  test('--stop-after that is not a number of minutes is a usage error', () => {
    const r = bench('--quick', '--journal', join(dir, 'never.json'), '--stop-after', 'soon');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('bad --stop-after "soon"');
  });

  test('a file that is not a journal: exit 1, its name and why, no stack trace', () => {
    const path = join(dir, 'not-a-journal.json');
    writeFileSync(path, '{"suite": "policies"');
    const r = bench('--quick', '--journal', path);
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toMatch(
      new RegExp(`^bench policies: ${path}: not a journal of a policies run \\(`),
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
