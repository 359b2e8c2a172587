// Start-up loads only what the invoked command needs (src/cli/main.ts): `--version` and the
// plan-only commands must not pay for koffi, the WebGPU bindings, the model readers or the
// backends, and `--version` not even for the parser. A child process records every module the
// loader resolves, through a resolve hook, and runs the commands one after another in-process.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';

const root = resolve('.');
const dir = mkdtempSync(join(tmpdir(), 'kvplan-imports-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hook = `
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context);
  appendFileSync(process.env.KVPLAN_IMPORT_LOG, resolved.url + '\\n');
  return resolved;
}`;

const stages: readonly (readonly [string, readonly string[]])[] = [
  ['--version', ['--version']],
  ['check', ['check', 'examples/baseline.kvp']],
  ['fmt', ['fmt', 'examples/baseline.kvp']],
  ['explain', ['explain', 'examples/baseline.kvp']],
];

// Each stage reports its exit code and every module resolved so far (the stages share a process).
const child = `
import { readFileSync } from 'node:fs';
import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));
const { main } = await import(${JSON.stringify(pathToFileURL(join(root, 'src/cli/main.ts')).href)});
const quiet = { out: () => {}, err: () => {} };
const report = {};
for (const [name, argv] of ${JSON.stringify(stages)}) {
  const code = await main(argv, quiet);
  report[name] = { code, loaded: readFileSync(process.env.KVPLAN_IMPORT_LOG, 'utf8').split('\\n').filter(Boolean) };
}
process.stdout.write(JSON.stringify(report));
`;

interface Stage {
  readonly code: number;
  readonly loaded: readonly string[];
}

function run(): Record<string, Stage> {
  const r = spawnSync(process.execPath, ['--import', 'tsx/esm', '--input-type=module', '-e', child], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '', KVPLAN_IMPORT_LOG: join(dir, 'resolved.txt') },
  });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Record<string, Stage>;
}

const report = run();

/** The packages a module URL belongs to, or its path under the repository (`src/cli/main.ts`). */
const named = (url: string): string => {
  const pkg = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
  if (pkg) return pkg[1] as string;
  return url.startsWith('file:') ? url.slice(pathToFileURL(root).href.length + 1) : url;
};

const loaded = (stage: string): Set<string> => new Set(report[stage]?.loaded.map(named));

/**
 * Packages no plan-only command needs; each costs tens of milliseconds or loads a native addon
 * (cli-progress, with its string-width, only draws the long commands' progress bars).
 */
const heavy = [
  'koffi',
  'onnx-proto',
  'webgpu',
  '@huggingface/tokenizers',
  '@huggingface/jinja',
  'cli-progress',
];

/**
 * The modules under src/backends/ that the command declarations and main's error handling import:
 * names, an error class and the PTX architectures, none importing a backend.
 */
const lightBackendModules = [
  'src/backends/registry.ts',
  'src/backends/cpu/compilerError.ts',
  'src/backends/cuda-ptx/kernels/ptx.ts',
];

describe('start-up imports', () => {
  test.each(stages.map(([name]) => name))('%s exits 0', (stage) => {
    expect(report[stage]?.code).toBe(0);
  });

  test('the recorder sees the modules a command loads', () => {
    expect(loaded('--version')).toContain('commander');
    expect(loaded('--version')).toContain('src/cli/commands/check.ts');
    expect(loaded('check')).toContain('src/cli/check.ts');
    expect(loaded('check')).toContain('chevrotain');
  });

  test('--version loads no command implementation and no parser', () => {
    const mods = [...loaded('--version')];
    expect(mods.filter((m) => /^src\/cli\/[^/]+\.ts$/.test(m)).sort()).toEqual([
      'src/cli/io.ts',
      'src/cli/main.ts',
      'src/cli/numbers.ts',
    ]);
    expect(mods).not.toContain('chevrotain');
  });

  test.each(stages.map(([name]) => name))('%s loads no backend and no heavy package', (stage) => {
    const mods = [...loaded(stage)];
    expect(mods.filter((m) => heavy.includes(m))).toEqual([]);
    expect(mods.filter((m) => m.startsWith('src/backends/') && !lightBackendModules.includes(m))).toEqual([]);
  });
});
