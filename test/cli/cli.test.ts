// End-to-end: the real `bin/kvplan.mjs` in a child process (start-up of the built code included), so the exit
// status is what a shell sees. Spawns are slow (~0.5 s), so only the essentials are here; the
// details are covered in-process by commands.test.ts.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { brokenPlan, messyCanonical, messyPlan, okPlan, tempFiles } from '../support/cli.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tmp = tempFiles({ 'ok.kvp': okPlan, 'broken.kvp': brokenPlan, 'messy.kvp': messyPlan });
afterAll(() => tmp.cleanup());

function kvplan(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/kvplan.mjs', ...args], { cwd: root, encoding: 'utf8' });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const noStackTrace = (s: string) => expect(s).not.toMatch(/^\s+at /m);

describe('bin/kvplan.mjs', () => {
  it('check: a good plan exits 0 with an ok line', () => {
    const r = kvplan('check', '--set', 'tau=0.8', '--set', 'block=16', tmp.path('ok.kvp'));
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ok {2}\S+ok\.kvp {2}fast_dllm_dual {2}approximate: \S/);
    expect(r.stderr).toBe('');
  });

  it('check: a syntax error exits 1 with file:line:col, the source line and a caret', () => {
    const r = kvplan('check', tmp.path('broken.kvp'));
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('error  ');
    expect(r.stderr).toContain(`${tmp.path('broken.kvp')}:2:13: error: `);
    expect(r.stderr).toContain('2 |   compute a b\n');
    expect(r.stderr).toMatch(/^\s+\| {13}\^$/m);
    noStackTrace(r.stderr);
  });

  it('check: a malformed --set exits 2', () => {
    const r = kvplan('check', '--set', 'tau', tmp.path('ok.kvp'));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("'tau' is invalid");
    noStackTrace(r.stderr);
  });

  it('check: a missing file exits 2', () => {
    const r = kvplan('check', tmp.path('nope.kvp'));
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`kvplan: cannot read ${tmp.path('nope.kvp')}: no such file or directory\n`);
  });

  it('an unknown command exits 2', () => {
    const r = kvplan('frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
  });

  it('--help exits 0 and lists check and fmt', () => {
    const r = kvplan('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\s+check /m);
    expect(r.stdout).toMatch(/^\s+fmt /m);
  });

  it('fmt --check fails on a non-canonical file; fmt --write fixes it', () => {
    const check = kvplan('fmt', '--check', tmp.path('messy.kvp'));
    expect(check.code).toBe(1);
    expect(check.stdout).toBe(`would reformat ${tmp.path('messy.kvp')}\n`);
    const write = kvplan('fmt', '--write', tmp.path('messy.kvp'));
    expect(write.code).toBe(0);
    expect(write.stderr).toBe(`formatted ${tmp.path('messy.kvp')}\n`);
    expect(readFileSync(tmp.path('messy.kvp'), 'utf8')).toBe(messyCanonical);
  });
});
