/**
 * The journal that lets the full-size `policies` run (hours) run in parts: a pass it holds is not
 * run again, and it is resumed only by a run of the same settings, machine and sources, so that
 * one table is one build's numbers.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import {
  Journal,
  JournalError,
  type JournalSettings,
  type PassRecord,
  sourcesHash,
} from '../../bench/journal.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kvplan-journal-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const settings: JournalSettings = {
  model: { name: 'bench-1024x8', layers: 8 },
  prompt_length: 256,
  gen_length: 1024,
  block: 32,
  prompts: 1,
  repeats: 2,
  plans: ['baseline', 'd2cache', 'elastic_cache'],
  machine: { cpu: 'AMD EPYC', family_model: '25/17', cores: 2 },
  sources: 'a'.repeat(64),
};

const record = (ms: number): PassRecord => ({
  ms,
  roofMs: ms * 0.8,
  flops: 1e12,
  probe: 0,
  stageMs: ms * 0.9,
  probeMs: 0,
  generated: 4,
  outputs: [[1, 2, 3, ms % 7]],
  peak: 1 << 20,
  around: [
    { peakFlops: 2e11, bandwidth: 4e10 },
    { peakFlops: 1.9e11, bandwidth: 3.5e10 },
  ],
});

describe('policies journal', () => {
  test('a pass recorded by one process is held by the next, which records its own in a new segment', () => {
    const path = join(dir, 'sub', 'run.journal.json');
    const first = Journal.open(path, settings, new Date('2026-12-06T08:00:00Z'), 'c0ffee');
    expect(first.missing()).toBe(6);
    expect(first.get('baseline', 0)).toBeUndefined();
    first.record('baseline', 0, record(1000), 0.02, new Date('2026-12-06T08:30:00Z'));
    first.record('d2cache', 0, record(100), 0.03, new Date('2026-12-06T08:40:00Z'));

    const second = Journal.open(path, settings, new Date('2026-12-07T09:00:00Z'), null);
    expect(second.get('baseline', 0)).toEqual(record(1000));
    expect(second.get('d2cache', 0)).toEqual(record(100));
    expect(second.get('d2cache', 1)).toBeUndefined();
    expect(second.missing()).toBe(4);
    second.record('elastic_cache', 0, record(90), null, new Date('2026-12-07T09:10:00Z'));
    expect(second.segments).toEqual([
      {
        revision: 'c0ffee',
        started: '2026-12-06T08:00:00.000Z',
        ended: '2026-12-06T08:40:00.000Z',
        other_processes_busy_cores: 0.03,
        passes: ['baseline#0', 'd2cache#0'],
      },
      {
        revision: null,
        started: '2026-12-07T09:00:00.000Z',
        ended: '2026-12-07T09:10:00.000Z',
        other_processes_busy_cores: null,
        passes: ['elastic_cache#0'],
      },
    ]);
    expect(Journal.open(path, settings).missing()).toBe(3);
    // Written whole under its own name: no temporary file is left beside it.
    expect(readdirSync(join(dir, 'sub'))).toEqual(['run.journal.json']);
  });

  test('opening a journal writes nothing until a pass is recorded', () => {
    const path = join(dir, 'run.json');
    Journal.open(path, settings);
    expect(readdirSync(dir)).toEqual([]);
  });

  test.each([
    ['gen_length', { gen_length: 128 }, /begun with another gen_length \(1024\)/],
    ['plans', { plans: ['baseline', 'd2cache'] }, /begun with another plans/],
    ['repeats', { repeats: 1 }, /begun with another repeats \(2\)/],
    [
      'machine',
      { machine: { cpu: 'AMD EPYC', family_model: '26/2', cores: 2 } },
      /begun with another machine/,
    ],
    [
      'sources',
      { sources: 'b'.repeat(64) },
      /written by other sources .*checkout of that revision \(c0ffee\)/,
    ],
  ])('a run with another %s does not resume the journal', (_, change, message) => {
    const path = join(dir, 'run.json');
    Journal.open(path, settings, new Date(), 'c0ffee').record('baseline', 0, record(1000), 0);
    const before = readFileSync(path, 'utf8');
    expect(() => Journal.open(path, { ...settings, ...change })).toThrow(JournalError);
    expect(() => Journal.open(path, { ...settings, ...change })).toThrow(message);
    expect(readFileSync(path, 'utf8')).toBe(before);
  });

  test.each([
    ['truncated JSON', '{"kind": "kvplan policies journal", "settings": {'],
    ['another JSON file', JSON.stringify({ suite: 'policies', rows: [] })],
    [
      'a journal without its passes',
      JSON.stringify({ kind: 'kvplan policies journal', settings, segments: [] }),
    ],
    ['null', 'null'],
    [
      'a journal whose settings are null',
      JSON.stringify({ kind: 'kvplan policies journal', settings: null, segments: [], passes: {} }),
    ],
  ])('%s is not taken for a journal', (_, text) => {
    const path = join(dir, 'run.json');
    writeFileSync(path, text);
    expect(() => Journal.open(path, settings)).toThrow(JournalError);
    expect(() => Journal.open(path, settings)).toThrow(/not a journal of a policies run/);
  });

  const { outputs: _, ...noOutputs } = record(5);
  test.each([
    ['without its outputs', noOutputs],
    ['with a step time that is not a number', { ...record(5), ms: '5' }],
    ['with one roofline reading', { ...record(5), around: [record(5).around[0]] }],
    ['with a token that is not a number', { ...record(5), outputs: [[1, null]] }],
  ])('a pass %s is refused when the journal is opened', (_, bad) => {
    const path = join(dir, 'run.json');
    Journal.open(path, settings).record('baseline', 0, record(1000), 0);
    const file = JSON.parse(readFileSync(path, 'utf8'));
    file.passes['d2cache#0'] = bad;
    writeFileSync(path, JSON.stringify(file));
    expect(() => Journal.open(path, settings)).toThrow(/the pass d2cache#0 is not a pass record/);
  });
});

describe('sources hash', () => {
  function tree(files: Record<string, string>): string {
    const repo = mkdtempSync(join(dir, 'repo-'));
    for (const [f, text] of Object.entries(files)) {
      mkdirSync(join(repo, f, '..'), { recursive: true });
      writeFileSync(join(repo, f), text);
    }
    return repo;
  }
  const base = {
    'src/a.ts': 'export const a = 1;\n',
    'src/backends/cpu/c/k.c': 'int k;\n',
    'bench/policies.ts': 'x\n',
    'examples/p.kvp': 'plan p {}\n',
  };

  test('changes with any source of src/, bench/ or examples/, by content or by name', () => {
    const h = sourcesHash(tree(base));
    expect(sourcesHash(tree(base))).toBe(h);
    expect(sourcesHash(tree({ ...base, 'src/backends/cpu/c/k.c': 'int k2;\n' }))).not.toBe(h);
    expect(sourcesHash(tree({ ...base, 'examples/p.kvp': 'plan p { }\n' }))).not.toBe(h);
    expect(sourcesHash(tree({ ...base, 'bench/new.ts': '' }))).not.toBe(h);
    const { 'src/a.ts': a, ...rest } = base;
    expect(sourcesHash(tree({ ...rest, 'src/b.ts': a }))).not.toBe(h);
  });

  test('does not change with results, journals or documents', () => {
    const h = sourcesHash(tree(base));
    expect(
      sourcesHash(
        tree({
          ...base,
          'bench/results/policies.json': '{}',
          'bench/run.journal.json': '{}',
          'src/README.md': '#',
        }),
      ),
    ).toBe(h);
  });
});
