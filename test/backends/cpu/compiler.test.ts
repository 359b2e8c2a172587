/**
 * The system-compiler wrapper: content-addressed cache keyed by the target CPU too, integrity
 * check of cached artifacts and of the bytes loaded, healing of corrupt entries, permissions of
 * the cache directory and its parents, and clear errors for a missing compiler or bad C.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import {
  type CompiledLibrary,
  compileLibrary,
  DEFAULT_FLAGS,
  defaultCacheDir,
  openLibrary,
  prepareCacheDir,
} from '../../../src/backends/cpu/compiler.ts';
import { CompilerError } from '../../../src/backends/cpu/compilerError.ts';
import { resolveTarget, targetArgs } from '../../../src/backends/cpu/target.ts';

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
  for (const key of [
    'KVPLAN_CC',
    'KVPLAN_CFLAGS',
    'KVPLAN_CACHE_DIR',
    'KVPLAN_CC_TIMEOUT',
    'XDG_CACHE_HOME',
  ]) {
    if (savedEnv[key] === undefined) delete process.env[key];
    else process.env[key] = savedEnv[key];
  }
});
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

function call(lib: CompiledLibrary, name = 'answer'): number {
  return openLibrary(lib, [name]).func(`int ${name}(void)`)() as number;
}

describe('compileLibrary', () => {
  test('compiles, loads, and hits the cache the second time', () => {
    const cacheDir = freshDir();
    const first = compileLibrary(SOURCE, { cacheDir });
    expect(first.cached).toBe(false);
    expect(first.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(first.path).toBe(join(cacheDir, `${first.hash}.so`));
    expect(call(first)).toBe(42);
    // The directory is created private, the side file holds the artifact's checksum.
    expect(statSync(cacheDir).mode & 0o777).toBe(0o700);
    expect(readFileSync(join(cacheDir, `${first.hash}.sha256`), 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/);
    expect(readFileSync(join(cacheDir, `${first.hash}.c`), 'utf8')).toBe(SOURCE);

    const second = compileLibrary(SOURCE, { cacheDir });
    expect(second).toMatchObject({ path: first.path, cached: true, hash: first.hash });
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
    expect(call(d, 'value')).toBe(7);
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
    expect(call(final)).toBe(42);
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

describe('a library linked against another (the primitives)', () => {
  const BASE = 'int base_value(void) { return 40; }\n';
  const USER = 'int base_value(void);\nint answer(void) { return base_value() + 2; }\n';

  test('resolves its functions from the dependency, which is part of its key', () => {
    const cacheDir = freshDir();
    const base = compileLibrary(BASE, { cacheDir });
    const user = compileLibrary(USER, { cacheDir, against: base });
    expect(call(user)).toBe(42);
    // The dependency is named by its soname, not its path, and found where the library lies.
    const elf = readFileSync(user.path, 'latin1');
    expect(elf).toContain(`kvplan-${base.hash}.so`);
    expect(elf).not.toContain(base.path);
    expect(elf).toContain('$ORIGIN');
    // Another build of the dependency never pairs with a library linked against this one.
    const base2 = compileLibrary(`${BASE}int more(void) { return 0; }\n`, { cacheDir });
    const user2 = compileLibrary(USER, { cacheDir, against: base2 });
    expect(user2.hash).not.toBe(user.hash);
    expect(user2.cached).toBe(false);
    expect(compileLibrary(USER, { cacheDir, against: base }).cached).toBe(true);
  });

  test('a corrupt dependency is rebuilt before the library that needs it is loaded', () => {
    const cacheDir = freshDir();
    const base = compileLibrary(`${BASE}int marker_a(void) { return 0; }\n`, { cacheDir });
    const user = compileLibrary(USER, { cacheDir, against: base });
    writeFileSync(join(cacheDir, `${base.hash}.sha256`), `${'0'.repeat(64)}\n`);
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(call(user)).toBe(42);
      expect(spy.mock.calls.map((c) => String(c[0])).join('')).toContain(
        `${base.hash}.so cannot be loaded (its checksum does not match); rebuilding it`,
      );
    } finally {
      spy.mockRestore();
    }
  });
});

describe('the time limit', () => {
  test('a compile past KVPLAN_CC_TIMEOUT says so, names the knob and the unit size, leaves no file', () => {
    const cacheDir = freshDir();
    process.env.KVPLAN_CC_TIMEOUT = '0.001';
    const big = `${SOURCE}/* kernel a (gemm) */\n/* kernel b (norm) */\n`;
    expect(() => compileLibrary(big, { cacheDir })).toThrow(
      /^C compilation timed out: cc ran past the limit of 0\.001 s and was stopped \(the unit has 5 lines, 2 kernels\); set KVPLAN_CC_TIMEOUT=<seconds> to allow longer$/,
    );
    expect(readdirSync(cacheDir).filter((f) => !f.endsWith('.c'))).toEqual([]);
  });
});

describe('cache directory parents', () => {
  test('a parent writable by group or others is refused unless sticky', () => {
    const parent = join(root, `parent-${n++}`);
    mkdirSync(parent, { mode: 0o700 });
    chmodSync(parent, 0o777);
    const cacheDir = join(parent, 'cache');
    expect(() => compileLibrary(SOURCE, { cacheDir })).toThrow(
      `the directory above it, ${parent}, is writable by group or others without the sticky bit (mode 777)`,
    );
    expect(() => prepareCacheDir(cacheDir)).toThrow(`run \`chmod go-w ${parent}\``);
    // Sticky, like /tmp: only an entry's owner may rename it.
    chmodSync(parent, 0o1777);
    expect(() => prepareCacheDir(cacheDir)).not.toThrow();
    chmodSync(parent, 0o755);
    expect(() => prepareCacheDir(cacheDir)).not.toThrow();
  });

  test('a parent reached through a symbolic link is checked where the link lives', () => {
    const open = join(root, `open-${n++}`);
    const real = join(root, `real-${n++}`);
    mkdirSync(open, { mode: 0o700 });
    mkdirSync(real, { mode: 0o700 });
    symlinkSync(real, join(open, 'link'));
    chmodSync(open, 0o777);
    expect(() => prepareCacheDir(join(open, 'link', 'cache'))).toThrow(`the directory above it, ${open},`);
  });

  test.skipIf(process.getuid?.() !== 0)('a parent owned by another user (not root) is refused', () => {
    const parent = join(root, `foreign-${n++}`);
    mkdirSync(parent, { mode: 0o755 });
    chownSync(parent, 12345, 12345);
    expect(() => prepareCacheDir(join(parent, 'cache'))).toThrow(
      `the directory above it, ${parent}, is owned by uid 12345 (neither this user, uid 0, nor root)`,
    );
  });

  test('a parent owned by this user or by root passes', () => {
    const parent = join(root, `mine-${n++}`);
    mkdirSync(parent, { mode: 0o755 });
    const uid = statSync(parent).uid;
    expect(() => prepareCacheDir(join(parent, 'cache'), uid)).not.toThrow();
  });
});

describe('loading verifies the bytes loaded and heals corrupt entries', () => {
  /** Replaces the stored library with `bytes` and a matching side file, as a bad copy would. */
  function replaceEntry(lib: CompiledLibrary, bytes: Buffer): void {
    writeFileSync(lib.path, bytes, { mode: 0o700 });
    writeFileSync(
      join(dirname(lib.path), `${lib.hash}.sha256`),
      `${createHash('sha256').update(bytes).digest('hex')}\n`,
    );
  }

  function warnings(run: () => void): string {
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      run();
      return spy.mock.calls.map((c) => String(c[0])).join('');
    } finally {
      spy.mockRestore();
    }
  }

  test('a cached library that is not a shared object is deleted, rebuilt once, with a warning', () => {
    const cacheDir = freshDir();
    compileLibrary(SOURCE, { cacheDir });
    const cached = compileLibrary(SOURCE, { cacheDir });
    replaceEntry(cached, Buffer.from('this is not an ELF file\n'));
    const again = compileLibrary(SOURCE, { cacheDir });
    expect(again.cached).toBe(true);
    let value = 0;
    const text = warnings(() => {
      value = call(again);
    });
    expect(value).toBe(42);
    expect(text).toMatch(
      /^kvplan: warning: the compiled library .* cannot be loaded \(.*\); rebuilding it\n$/,
    );
    // The entry on disk is a good one again.
    expect(readFileSync(again.path, 'utf8').startsWith('\u007fELF')).toBe(true);
  });

  test('a cached library missing a function is deleted and rebuilt', () => {
    const cacheDir = freshDir();
    const other = compileLibrary('int unrelated(void) { return 1; }\n', { cacheDir });
    const lib = compileLibrary(SOURCE, { cacheDir });
    replaceEntry(lib, readFileSync(other.path));
    let value = 0;
    const text = warnings(() => {
      value = call(compileLibrary(SOURCE, { cacheDir }));
    });
    expect(text).toContain('(it has no function answer); rebuilding it');
    expect(value).toBe(42);
  });

  test('a library swapped in after the lookup is not the one loaded', () => {
    const cacheDir = freshDir();
    const evil = compileLibrary('int answer(void) { return 666; }\n', { cacheDir });
    const lib = compileLibrary(SOURCE, { cacheDir });
    // Renamed into place between compileLibrary's check and the load, side file untouched.
    const swap = join(cacheDir, 'swap.so');
    writeFileSync(swap, readFileSync(evil.path), { mode: 0o700 });
    renameSync(swap, lib.path);
    let value = 0;
    const text = warnings(() => {
      value = call(lib);
    });
    expect(value).toBe(42);
    expect(text).toContain('(its checksum does not match)');
  });

  test('a library that still fails after the rebuild is a CompilerError, not a loop', () => {
    const cacheDir = freshDir();
    const lib = compileLibrary(SOURCE, { cacheDir });
    warnings(() => {
      expect(() => openLibrary(lib, ['no_such_function'])).toThrow(
        /the freshly compiled library .* cannot be loaded: it has no function no_such_function/,
      );
    });
  });
});

describe('the cache key names the target CPU', () => {
  test('the dry run keeps the target arguments and drops temporary names', () => {
    const gcc =
      ' /usr/lib/gcc/x86_64-linux-gnu/12/cc1 -quiet /dev/null "-march=znver3" -mavx2 -mno-xop ' +
      '--param "l1-cache-size=48" "-mtune=znver3" -O3 -o /tmp/ccdBaTkg.s\n as --64 -o /dev/null /tmp/ccdBaTkg.s\n';
    expect(targetArgs(gcc)).toEqual([
      '-march=znver3',
      '-mavx2',
      '-mno-xop',
      '--param l1-cache-size=48',
      '-mtune=znver3',
    ]);
    const clang =
      ' "/usr/bin/clang" "-cc1" "-target-cpu" "znver4" "-target-feature" "+avx2" "-o" "/tmp/x-1.o"\n';
    expect(targetArgs(clang)).toEqual(['-target-cpu znver4', '-target-feature +avx2']);
  });

  test('-march=native resolves to a concrete CPU, once per process', () => {
    const t = resolveTarget('cc', DEFAULT_FLAGS);
    expect(t.fromCompiler).toBe(true);
    expect(t.key).toMatch(/^-march=(?!native)\S+$/m);
    expect(resolveTarget('cc', DEFAULT_FLAGS)).toBe(t);
    // A plan's flags differ only in what does not change the target: the dry run is shared, and
    // its own dry run resolves the same target.
    const plan = ['-O2', '-march=native', '-fPIC', '-shared', '-std=c11'];
    expect(resolveTarget('cc', plan)).toBe(t);
    const dry = spawnSync('cc', [...plan, '-###', '-x', 'c', '-c', '/dev/null', '-o', '/dev/null'], {
      encoding: 'utf8',
    });
    expect(targetArgs(dry.stderr).join('\n')).toBe(t.key);
    // Without -march=native the build is portable, and so is its key.
    expect(resolveTarget('cc', ['-O2']).key).not.toMatch(/-mavx2/);
  });
});

describe('stale temporary files', () => {
  test('orphans older than the compile limit are removed, young ones kept', () => {
    const cacheDir = freshDir();
    mkdirSync(cacheDir, { mode: 0o700 });
    const hash = 'a'.repeat(64);
    const old = join(cacheDir, `.${hash}.4242.0123456789ab.so`);
    const oldTmp = join(cacheDir, `.${hash}.sha256.4242.0123456789ab.tmp`);
    const young = join(cacheDir, `.${hash}.4243.0123456789ab.so`);
    for (const f of [old, oldTmp, young]) writeFileSync(f, 'x');
    const hourAgo = new Date(Date.now() - 3600_000);
    utimesSync(old, hourAgo, hourAgo);
    utimesSync(oldTmp, hourAgo, hourAgo);
    compileLibrary(SOURCE, { cacheDir });
    expect(existsSync(old)).toBe(false);
    expect(existsSync(oldTmp)).toBe(false);
    expect(existsSync(young)).toBe(true);
  });
});
