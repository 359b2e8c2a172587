// In-process tests of the commands: main(argv, io) with captured output, no child processes.
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSetting } from '../../src/cli/io.ts';
import { brokenPlan, messyCanonical, messyPlan, okPlan, runCli, tempFiles } from '../support/cli.ts';

const tmp = tempFiles({
  'ok.kvp': okPlan,
  'broken.kvp': brokenPlan,
  'messy.kvp': messyPlan,
  'empty.kvp': '',
});
afterAll(() => tmp.cleanup());
const ok = tmp.path('ok.kvp');
const broken = tmp.path('broken.kvp');
const messy = tmp.path('messy.kvp');

describe('parseSetting', () => {
  it('splits name=value at the first =', () => {
    expect(parseSetting('tau=0.8')).toEqual(['tau', '0.8']);
    expect(parseSetting(' block = 16 ')).toEqual(['block', '16']);
    expect(parseSetting('expr=a=b')).toEqual(['expr', 'a=b']);
  });
  it.each(['tau', '=3', 'tau=', '1x=2', 'a-b=1', ''])('rejects %j', (arg) => {
    expect(() => parseSetting(arg)).toThrow();
  });
});

describe('kvplan check', () => {
  it('prints one ok line per plan with its classification', async () => {
    const r = await runCli(['check', ok]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(`^ok  ${ok.replace(/[.\\]/g, '\\$&')}  fast_dllm_dual  approximate: \\S.*\\n$`),
    );
    expect(r.stderr).toBe('');
  });

  it('prints every diagnostic and an error line, and goes on with the next file', async () => {
    const r = await runCli(['check', broken, ok]);
    expect(r.code).toBe(1);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`error  ${broken}  2 errors`);
    expect(lines[1]).toMatch(/^ok {2}.*fast_dllm_dual/);
    expect(r.stderr).toContain(`${broken}:2:13: error: `);
    expect(r.stderr).toContain(`${broken}:3:7: error: `);
  });

  it('passes --set overrides to the checker (an out-of-range value is a plan error)', async () => {
    const good = await runCli(['check', '--set', 'tau=0.8', '--set', 'block=16', ok]);
    expect(good.code).toBe(0);
    const bad = await runCli(['check', '--set', 'tau=2.0', ok]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe(`error  ${ok}  1 error\n`);
    expect(bad.stderr).toContain('tau');
  });

  it('rejects a --set that no plan declares', async () => {
    const r = await runCli(['check', '--set', 'tua=0.8', ok]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--set tua: no plan declares a parameter 'tua' (parameters: block, tau)");
  });

  // Silently running with the default would let the user believe they measured the setting.
  it.each([
    [
      ['generate', '--model', 'models/tiny-dllm/model.onnx', '--prompt', 'x', '--set', 'tua=0.5'],
      '--set tua',
    ],
    [['generate', '--model', 'models/tiny-dllm/model.onnx', '--prompt', 'x', '--steps', '4'], '--steps'],
    [['eval', '--set', 'tua=0.5'], '--set tua'],
    [['compile', '--set', 'tua=0.5'], '--set tua'],
    [['verify', '--set', 'tua=0.5'], '--set tua'],
    [['explain', '--set', 'blok=8'], '--set blok'],
  ])('%j: a parameter no plan declares is a usage error in every command', async (args, flag) => {
    const r = await runCli([
      ...args,
      ...(args[0] === 'compile' || args[0] === 'verify' || args[0] === 'explain' ? [] : ['--plan']),
      ok,
    ]);
    expect(r.stderr).toContain(`kvplan: ${flag}: no plan declares a parameter`);
    expect(r.code).toBe(2);
  });

  it('a close misspelling gets a hint', async () => {
    const r = await runCli(['check', '--set', 'blok=8', ok]);
    expect(r.stderr).toContain("did you mean 'block'?");
  });

  it.each([
    [['check', '--set', 'tau', ok], "argument 'tau' is invalid"],
    [['check', '--set', '=3', ok], "argument '=3' is invalid"],
    [['check'], "missing required argument 'files'"],
    [['check', '--frobnicate', ok], "unknown option '--frobnicate'"],
    [['frobnicate'], "unknown command 'frobnicate'"],
    [[], 'Usage: kvplan'],
  ])('usage error %j exits 2', async (argv, message) => {
    const r = await runCli(argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stdout).toBe('');
  });

  it('reports an unreadable file and exits 2, still checking the others', async () => {
    const missing = tmp.path('missing.kvp');
    const r = await runCli(['check', missing, ok]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`kvplan: cannot read ${missing}: no such file or directory\n`);
    expect(r.stdout).toContain('fast_dllm_dual');
    const dir = await runCli(['check', tmp.dir]);
    expect(dir).toMatchObject({ code: 2, stderr: `kvplan: cannot read ${tmp.dir}: is a directory\n` });
  });
});

describe('kvplan fmt', () => {
  it('prints canonical text', async () => {
    const r = await runCli(['fmt', messy]);
    expect(r).toEqual({ code: 0, stdout: messyCanonical, stderr: '' });
  });

  it('--check lists non-canonical files and fails', async () => {
    const r = await runCli(['fmt', '--check', messy, ok]);
    expect(r).toEqual({ code: 1, stdout: `would reformat ${messy}\n`, stderr: '' });
    expect(await runCli(['fmt', '--check', ok])).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it('--write rewrites only changed files', async () => {
    const t = tempFiles({ 'm.kvp': messyPlan, 'ok.kvp': okPlan });
    try {
      const r = await runCli(['fmt', '--write', t.path('m.kvp'), t.path('ok.kvp')]);
      expect(r).toEqual({ code: 0, stdout: '', stderr: `formatted ${t.path('m.kvp')}\n` });
      expect(readFileSync(t.path('m.kvp'), 'utf8')).toBe(messyCanonical);
      expect(readFileSync(t.path('ok.kvp'), 'utf8')).toBe(okPlan);
    } finally {
      t.cleanup();
    }
  });

  it('never writes a file that does not parse', async () => {
    const t = tempFiles({ 'b.kvp': brokenPlan });
    try {
      const r = await runCli(['fmt', '--write', t.path('b.kvp')]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`${t.path('b.kvp')}:2:13: error:`);
      expect(readFileSync(t.path('b.kvp'), 'utf8')).toBe(brokenPlan);
    } finally {
      t.cleanup();
    }
  });

  it('rejects --write with --check', async () => {
    const r = await runCli(['fmt', '--write', '--check', messy]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('cannot be used with');
    expect(readFileSync(messy, 'utf8')).toBe(messyPlan);
  });
});

describe('help and version', () => {
  it('--help lists the commands and exits 0', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\s+check \[options\] <files\.\.\.>/m);
    expect(r.stdout).toMatch(/^\s+fmt \[options\] <files\.\.\.>/m);
  });

  it('check --help shows --set and exits 0', async () => {
    const r = await runCli(['check', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--set <name=value>');
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(await runCli(['--version'])).toEqual({ code: 0, stdout: `${pkg.version}\n`, stderr: '' });
  });
});
