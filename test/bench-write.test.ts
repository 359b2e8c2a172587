/**
 * The benchmarks' committed results (bench/results/*.json, docs/results.md) change only when a run
 * asks with --write: `npm run bench -- quality --n 2` once replaced them with 2-problem numbers.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { committedFiles, type Destination, destination, type Suite, saveResults } from '../bench/save.ts';

const REPO = fileURLToPath(new URL('../', import.meta.url));
const suites = Object.keys(committedFiles) as Suite[];

afterEach(() => {
  vi.restoreAllMocks();
});

/** Each committed file's content and modification time. */
function snapshot(): Map<string, { text: string; mtime: number }> {
  const files = suites.flatMap((s) => committedFiles[s].map((f) => join(REPO, f)));
  return new Map(files.map((f) => [f, { text: readFileSync(f, 'utf8'), mtime: statSync(f).mtimeMs }]));
}

/** Saves a result as a suite does, capturing stdout and stderr. */
function save(to: Destination, doc?: () => string): { stdout: string; stderr: string } {
  let stdout = '';
  let stderr = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    stdout += String(s);
    return true;
  });
  vi.spyOn(console, 'error').mockImplementation((s) => {
    stderr += `${String(s)}\n`;
  });
  saveResults(to, { suite: 'test', rows: [1, 2] }, doc);
  return { stdout, stderr };
}

function resolved(suite: Suite, o: Parameters<typeof destination>[1], repo?: string): Destination {
  const to = destination(suite, o, repo);
  if (typeof to === 'string') throw new Error(to);
  return to;
}

describe('bench results', () => {
  test('every file in bench/results is a committed file of some suite', () => {
    const committed = new Set(suites.flatMap((s) => committedFiles[s]));
    for (const f of readdirSync(join(REPO, 'bench/results')))
      expect(committed).toContain(`bench/results/${f}`);
  });

  test.each(suites)('%s without --write: printed, nothing written', (suite) => {
    const before = snapshot();
    const to = resolved(suite, { write: false, out: undefined });
    expect(to).toMatchObject({ json: null, doc: null });
    const makeDoc = vi.fn(() => '# doc\n');
    const { stdout, stderr } = save(to, makeDoc);
    expect(JSON.parse(stdout)).toEqual({ suite: 'test', rows: [1, 2] });
    // It says where --write would record them.
    for (const f of committedFiles[suite]) expect(stderr).toContain(f);
    expect(stderr).toContain('--write');
    expect(makeDoc).not.toHaveBeenCalled();
    expect(snapshot()).toEqual(before);
  });

  test('--write replaces the committed JSON and document, whole', () => {
    const repo = mkdtempSync(join(tmpdir(), 'kvplan-bench-write-'));
    try {
      const to = resolved('quality', { write: true, out: undefined }, repo);
      expect(to).toMatchObject({
        json: join(repo, 'bench/results/quality.json'),
        doc: join(repo, 'docs/results.md'),
      });
      const { stdout } = save(to, () => '# doc\n');
      expect(stdout).toBe('');
      expect(JSON.parse(readFileSync(join(repo, 'bench/results/quality.json'), 'utf8'))).toEqual({
        suite: 'test',
        rows: [1, 2],
      });
      expect(readFileSync(join(repo, 'docs/results.md'), 'utf8')).toBe('# doc\n');
      expect(readdirSync(join(repo, 'bench/results'))).toEqual(['quality.json']);
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  });

  test('--out writes that file only, never the committed document', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvplan-bench-out-'));
    try {
      const before = snapshot();
      const out = join(dir, 'q.json');
      const to = resolved('quality', { write: false, out });
      expect(to).toMatchObject({ json: out, doc: null });
      const makeDoc = vi.fn(() => '# doc\n');
      save(to, makeDoc);
      expect(makeDoc).not.toHaveBeenCalled();
      expect(readdirSync(dir)).toEqual(['q.json']);
      expect(snapshot()).toEqual(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('--write with --out, or with an option that runs part of the suite, is a usage error', () => {
    expect(destination('quality', { write: true, out: 'x.json' })).toMatch(/--write and --out/);
    expect(destination('kernels', { write: true, out: undefined, partial: '--filter' })).toMatch(
      /--filter runs part of it/,
    );
    // Without --write a partial run is printed, and the hint does not offer --write.
    const to = resolved('policies', { write: false, out: undefined, partial: '--plans' });
    expect(to.json).toBeNull();
    expect(to.hint).not.toContain('--write');
  });
});
