/**
 * The system-compiler wrapper: content-addressed cache, integrity check of cached artifacts,
 * cache-directory permissions, and clear errors for a missing compiler or bad C.
 */
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import {
  CompilerError,
  compileLibrary,
  DEFAULT_FLAGS,
  defaultCacheDir,
  prepareCacheDir,
} from '../../../src/backends/cpu/compiler.ts';
import { loadLibrary } from '../../../src/backends/cpu/primitives.ts';

const SOURCE = '#include "kvplan_cpu.h"\nint answer(void) { return 42; }\n';

let root = '';
let n = 0;
/** A fresh, private cache directory for one test. */
const freshDir = () => join(root, `cache-${n++}`);

const savedEnv = { ...process.env };
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'kvplan-cc-'));
});
afterEach(() => {
  for (const key of ['KVPLAN_CC', 'KVPLAN_CFLAGS', 'KVPLAN_CACHE_DIR', 'XDG_CACHE_HOME']) {
    if (savedEnv[key] === undefined) delete process.env[key];
    else process.env[key] = savedEnv[key];
  }
});
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

function call(path: string, name = 'answer'): number {
  return loadLibrary(path).func(`int ${name}(void)`)() as number;
}

describe('compileLibrary', () => {
  test('compiles, loads, and hits the cache the second time', () => {
    const cacheDir = freshDir();
    const first = compileLibrary(SOURCE, { cacheDir });
    expect(first.cached).toBe(false);
    expect(first.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(first.path).toBe(join(cacheDir, `${first.hash}.so`));
    expect(call(first.path)).toBe(42);
    // The directory is created private, the side file holds the artifact's checksum.
    expect(statSync(cacheDir).mode & 0o777).toBe(0o700);
    expect(readFileSync(join(cacheDir, `${first.hash}.sha256`), 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/);
    expect(readFileSync(join(cacheDir, `${first.hash}.c`), 'utf8')).toBe(SOURCE);

    const second = compileLibrary(SOURCE, { cacheDir });
    expect(second).toEqual({ path: first.path, cached: true, hash: first.hash });
  });

  test('the key covers source and flags; KVPLAN_CFLAGS is appended', () => {
    const cacheDir = freshDir();
    const a = compileLibrary(SOURCE, { cacheDir });
    const b = compileLibrary(`${SOURCE}int other(void) { return 1; }\n`, { cacheDir });
    const c = compileLibrary(SOURCE, { cacheDir, flags: [...DEFAULT_FLAGS, '-O2'] });
    expect(new Set([a.hash, b.hash, c.hash]).size).toBe(3);
    process.env.KVPLAN_CFLAGS = '-DKV_TEST_VALUE=7  -DKV_OTHER=1';
    const d = compileLibrary('int value(void) { return KV_TEST_VALUE; }\n', { cacheDir });
    expect(d.cached).toBe(false);
    expect(call(d.path, 'value')).toBe(7);
  });

  test('a tampered or truncated artifact is recompiled, never used', () => {
    const cacheDir = freshDir();
    const first = compileLibrary(SOURCE, { cacheDir });
    const good = readFileSync(first.path);

    writeFileSync(first.path, Buffer.concat([good.subarray(0, 100), Buffer.from('tampered')]));
    const again = compileLibrary(SOURCE, { cacheDir });
    expect(again.cached).toBe(false);
    expect(again.path).toBe(first.path);
    expect(readFileSync(again.path).equals(good)).toBe(true);

    writeFileSync(first.path, good.subarray(0, good.length >> 1));
    expect(compileLibrary(SOURCE, { cacheDir }).cached).toBe(false);

    // A missing or wrong side file also forces a rebuild.
    writeFileSync(join(cacheDir, `${first.hash}.sha256`), `${'0'.repeat(64)}\n`);
    expect(compileLibrary(SOURCE, { cacheDir }).cached).toBe(false);
    rmSync(join(cacheDir, `${first.hash}.sha256`));
    expect(compileLibrary(SOURCE, { cacheDir }).cached).toBe(false);
    const final = compileLibrary(SOURCE, { cacheDir });
    expect(final.cached).toBe(true);
    expect(call(final.path)).toBe(42);
  });

  test('a cache directory writable by group or others is refused', () => {
    const cacheDir = freshDir();
    mkdirSync(cacheDir);
    chmodSync(cacheDir, 0o777);
    expect(() => compileLibrary(SOURCE, { cacheDir })).toThrow(CompilerError);
    expect(() => compileLibrary(SOURCE, { cacheDir })).toThrow(/writable by group or others \(mode 777\)/);
    chmodSync(cacheDir, 0o770);
    expect(() => compileLibrary(SOURCE, { cacheDir })).toThrow(/mode 770/);
    chmodSync(cacheDir, 0o700);
    expect(compileLibrary(SOURCE, { cacheDir }).cached).toBe(false);
  });

  test('a cache directory owned by another user is refused', () => {
    const cacheDir = freshDir();
    mkdirSync(cacheDir, { mode: 0o700 });
    const owner = statSync(cacheDir).uid;
    expect(() => prepareCacheDir(cacheDir, owner + 1)).toThrow(/owned by uid \d+, not by this user/);
    expect(() => prepareCacheDir(cacheDir, owner)).not.toThrow();
  });

  test('a cache path that is a file is refused', () => {
    const file = join(root, `file-${n++}`);
    writeFileSync(file, 'x');
    expect(() => compileLibrary(SOURCE, { cacheDir: file })).toThrow(CompilerError);
  });

  test('cache location: KVPLAN_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache', () => {
    expect(defaultCacheDir({ KVPLAN_CACHE_DIR: '/a/b' })).toBe('/a/b');
    expect(defaultCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/kvplan');
    expect(defaultCacheDir({})).toMatch(/\.cache\/kvplan$/);
    const cacheDir = freshDir();
    process.env.KVPLAN_CACHE_DIR = cacheDir;
    expect(compileLibrary(SOURCE).path.startsWith(`${cacheDir}/`)).toBe(true);
  });

  test('a missing compiler is a clear CompilerError', () => {
    process.env.KVPLAN_CC = '/nonexistent';
    let err: unknown;
    try {
      compileLibrary(SOURCE, { cacheDir: freshDir() });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CompilerError);
    expect((err as Error).message).toBe(
      'no C compiler found (tried `/nonexistent`); install gcc or set KVPLAN_CC',
    );
    expect(() => compileLibrary(SOURCE, { cacheDir: freshDir(), cc: 'kvplan-no-such-cc' })).toThrow(
      'no C compiler found (tried `kvplan-no-such-cc`)',
    );
  });

  test('a C error is a CompilerError with the diagnostics and the offending line', () => {
    const cacheDir = freshDir();
    const bad = 'int f(void) {\n  return undefined_name;\n}\n';
    let err: unknown;
    try {
      compileLibrary(bad, { cacheDir });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CompilerError);
    const msg = (err as CompilerError).message;
    expect(msg).toMatch(/C compilation failed/);
    expect(msg).toMatch(/:2:\d+: error: .*undefined_name/);
    expect(msg).toContain('return undefined_name;');
    expect((err as CompilerError).stderr).toContain('undefined_name');
    // Nothing half-built is left behind: no library, no temporary files.
    expect(readdirSync(cacheDir).filter((f) => !f.endsWith('.c'))).toEqual([]);
  });

  test('diagnostics are cut to the first 40 lines', () => {
    const lines = Array.from({ length: 80 }, (_, i) => `int f${i}(void) { return u${i}; }`).join('\n');
    try {
      compileLibrary(lines, { cacheDir: freshDir() });
      expect.unreachable('the source does not compile');
    } catch (e) {
      expect(e).toBeInstanceOf(CompilerError);
      const msg = (e as Error).message;
      expect(msg).toMatch(/more lines\)$/);
      expect(msg.split('\n').length).toBeLessThanOrEqual(43);
      expect((e as CompilerError).stderr?.split('\n').length).toBeGreaterThan(40);
    }
  });
});
