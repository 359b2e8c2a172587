/**
 * The compiler wrapper seen from outside a process: an interrupted compile (SIGINT, SIGTERM)
 * leaves no compiler running and no temporary file, and a cache shared by machines with different
 * CPUs keeps one library per CPU. Each case runs compileLibrary in a child Node process, with a
 * fake compiler (a shell script) that stands for gcc.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { GUARD } from '../../../src/backends/cpu/compiler.ts';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

let root = '';
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'kvplan-ccp-'));
});
afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

/** Starts a Node process that compiles `source` into `cacheDir` and prints the result as JSON. */
function compileInChild(source: string, cacheDir: string, env: NodeJS.ProcessEnv): ChildProcess {
  const code = `
    import { register } from 'tsx/esm/api';
    register();
    const { compileLibrary } = await import('./src/backends/cpu/compiler.ts');
    const lib = compileLibrary(${JSON.stringify(source)}, { cacheDir: ${JSON.stringify(cacheDir)} });
    process.stdout.write(JSON.stringify({ hash: lib.hash, cached: lib.cached }));
  `;
  return spawn(process.execPath, ['--input-type=module', '-e', code], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function exited(
  child: ChildProcess,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string }> {
  let out = '';
  child.stdout?.on('data', (d) => {
    out += String(d);
  });
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, out })));
}

/** A fake compiler: reports a version, answers -### with `-march=$FAKE_ARCH`, else exec's cc. */
function fakeCompiler(body: string): string {
  const path = join(root, `fakecc-${Math.random().toString(16).slice(2)}`);
  writeFileSync(
    path,
    `#!/bin/sh
for a in "$@"; do
  case "$a" in
    --version) echo "fakecc 1.0"; exit 0 ;;
    -###) echo " /fake/cc1 \\"-march=\${FAKE_ARCH:-native-cpu}\\" -o /tmp/cc$$.s" >&2; exit 0 ;;
  esac
done
${body}
`,
  );
  chmodSync(path, 0o755);
  return path;
}

const alive = (pid: number): boolean => {
  try {
    // A zombie is dead for our purpose: it runs nothing and holds no file.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

async function until(ok: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (ok()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return ok();
}

describe.skipIf(process.platform !== 'linux')('an interrupted compile', () => {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    test(`${signal}: exits within 1 s, no compiler left running, no temporary file`, async () => {
      const cacheDir = join(root, `cache-${signal}`);
      const mark = join(root, `pids-${signal}`);
      // Creates its output, starts a child (as gcc starts cc1) and waits for it.
      const cc = fakeCompiler(`
out=; prev=; for a in "$@"; do [ "$prev" = "-o" ] && out=$a; prev=$a; done
: > "$out"
sleep 60 & echo "$$ $!" > "${mark}.tmp" && mv "${mark}.tmp" "${mark}"
wait`);
      const child = compileInChild('int f(void) { return 1; }\n', cacheDir, { KVPLAN_CC: cc });
      const done = exited(child);
      expect(await until(() => existsSync(mark), 30_000)).toBe(true);
      const pids = readFileSync(mark, 'utf8').trim().split(' ').map(Number);
      expect(readdirSync(cacheDir).some((f) => /^\..*\.so$/.test(f))).toBe(true);

      const sent = Date.now();
      child.kill(signal);
      const result = await done;
      expect(Date.now() - sent).toBeLessThan(1000);
      // Killed by the signal: a shell reports it as 128 + the signal's number.
      expect(result.signal === signal || result.code === code).toBe(true);
      expect(await until(() => pids.every((p) => !alive(p)), 2000)).toBe(true);
      expect(await until(() => readdirSync(cacheDir).every((f) => !f.startsWith('.')), 2000)).toBe(true);
      expect(readdirSync(cacheDir).filter((f) => f.endsWith('.so'))).toEqual([]);
    });
  }
});

describe.skipIf(process.platform !== 'linux')('the compile guard', () => {
  // Its handler is reached as the Node process dies: its stderr then leads to a closed pipe,
  // and the parent-death signal arrives once per thread. Neither may keep it from cleaning up.
  test('removes the output when stderr has no reader and the signal comes again and again', async () => {
    const out = join(root, 'guarded.so');
    const mark = join(root, 'pids-guard');
    const cc = fakeCompiler(`
: > "$1"
sleep 60 & echo "$$ $!" > "${mark}.tmp" && mv "${mark}.tmp" "${mark}"
wait`);
    const guard = spawn('sh', ['-c', GUARD, 'kvplan-cc-guard', out, cc, out], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const done = exited(guard);
    expect(await until(() => existsSync(mark), 30_000)).toBe(true);
    const pids = readFileSync(mark, 'utf8').trim().split(' ').map(Number);
    guard.stderr?.destroy();
    for (let i = 0; i < 5; i++) guard.kill('SIGTERM');
    const result = await done;
    expect(result.code).toBe(143);
    expect(await until(() => pids.every((p) => !alive(p)), 2000)).toBe(true);
    expect(existsSync(out)).toBe(false);
  });
});

describe('a cache shared by two machines', () => {
  test('a CPU the compiler resolves differently gets its own library', async () => {
    const cacheDir = join(root, 'shared');
    const cc = fakeCompiler('exec cc "$@"');
    const source = 'int g(void) { return 2; }\n';
    const run = async (arch: string) => {
      const r = await exited(compileInChild(source, cacheDir, { KVPLAN_CC: cc, FAKE_ARCH: arch }));
      expect(r.code).toBe(0);
      return JSON.parse(r.out) as { hash: string; cached: boolean };
    };
    const a = await run('znver3');
    const b = await run('skylake');
    expect(b.cached).toBe(false);
    expect(b.hash).not.toBe(a.hash);
    expect(await run('znver3')).toEqual({ hash: a.hash, cached: true });
  });
});
