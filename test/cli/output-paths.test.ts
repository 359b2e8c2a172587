// -o paths: a wrong kind of path, a missing parent or a place nothing can be created is a usage
// error (exit 2) naming the path, in bounded time (Node's recursive mkdir never returns under
// /proc), never an internal error.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { runCli } from '../support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'kvplan-out-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const aFile = join(dir, 'a-file');
writeFileSync(aFile, 'x');

const compile = (out: string) => runCli(['compile', 'examples/baseline.kvp', '--target', 'cpu', '-o', out]);
const makeOnnx = (out: string) => runCli(['make-model', '--config', 'tiny', '-o', out]);
const makeHf = (out: string) => runCli(['make-model', '--format', 'hf', '--family', 'llada', '-o', out]);

describe('-o paths', () => {
  test.each([
    ['compile', aFile, compile, 'not a directory'],
    ['compile', join(aFile, 'sub'), compile, 'a component of the path is not a directory'],
    ['compile', '/proc/kvplan-x', compile, 'cannot create /proc/kvplan-x'],
    ['make-model', dir, makeOnnx, 'is a directory (give a file name)'],
    [
      'make-model',
      join(dir, 'missing', 'm.onnx'),
      makeOnnx,
      `${join(dir, 'missing')}: no such file or directory`,
    ],
    ['make-model', '/proc/kvplan-x.onnx', makeOnnx, 'cannot write: no such file or directory'],
    ['make-model --format hf', aFile, makeHf, 'exists and is not a directory'],
    ['make-model --format hf', '/proc/kvplan-ckpt', makeHf, 'cannot create /proc/kvplan-ckpt'],
  ] as const)('%s -o %s is a usage error', async (_, out, run, reason) => {
    const r = await run(out);
    expect(r.stderr).toContain(reason);
    expect(r.stderr).toContain(`-o ${out}`);
    expect(r.stderr).not.toContain('internal error');
    expect(r.code).toBe(2);
  });

  test('compile -o creates missing directories, one component at a time', async () => {
    const out = join(dir, 'new', 'nested');
    const r = await compile(out);
    expect(r.code).toBe(0);
    expect(statSync(out).isDirectory()).toBe(true);
    expect(existsSync(join(out, 'baseline.c'))).toBe(true);
  });

  test('make-model replaces an existing file, as compilers do', async () => {
    const out = join(dir, 'old.onnx');
    writeFileSync(out, 'old');
    const r = await makeOnnx(out);
    expect(r.code).toBe(0);
    expect(statSync(out).size).toBeGreaterThan(1000);
  });
});

describe('an unsafe cache directory', () => {
  // The condition and its fix are the user's: exit 1 with the message in every command.
  test.each([
    [['compile', 'examples/baseline.kvp', '--target', 'cpu', '-o', join(dir, 'c')]],
    [['verify', 'examples/baseline.kvp', '--backend', 'cpu', '--cases', '1']],
  ])('%j exits 1, not as an internal error', async (args) => {
    const cache = join(dir, 'open-cache');
    mkdirSync(cache, { recursive: true });
    chmodSync(cache, 0o777);
    const before = process.env.KVPLAN_CACHE_DIR;
    process.env.KVPLAN_CACHE_DIR = cache;
    try {
      const r = await runCli(args);
      expect(r.stderr).toContain(`refusing to use the kvplan cache directory ${cache}`);
      expect(r.stderr).not.toContain('internal error');
      expect(r.code).toBe(1);
    } finally {
      if (before === undefined) delete process.env.KVPLAN_CACHE_DIR;
      else process.env.KVPLAN_CACHE_DIR = before;
    }
  });
});
