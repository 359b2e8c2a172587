/**
 * `kvplan compile --target cpu -o DIR` output: the plan's library and the primitives library it
 * is linked against, which the plan's library finds beside it ($ORIGIN) in a process that has
 * loaded nothing of kvplan's.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { soname } from '../../../src/backends/cpu/compiler.ts';
import { writeCpuBuild } from '../../../src/backends/cpu/output.ts';
import { buildCpu } from '../../../src/backends/cpu/runner.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { presets } from '../../../src/model/presets.ts';
import { examplePlan } from '../../runtime/support.ts';

const dir = mkdtempSync(join(tmpdir(), 'kvplan-cpu-out-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test('the written plan library loads on its own, with the primitives beside it', () => {
  const build = buildCpu(examplePlan('baseline'), presets.tiny as ModelConfig, 16);
  const files = writeCpuBuild(dir, 'baseline', build);
  expect(files.map((f) => basename(f))).toEqual([
    'baseline.c',
    'baseline.so',
    'baseline.manifest.json',
    soname(build.primitives.hash),
  ]);
  // A fresh process: the primitives are found through the plan library's rpath, nowhere else.
  const script = `
    import koffi from 'koffi';
    const lib = koffi.load(process.argv[1]);
    lib.func('void kv_set_threads(int n)')(1);
    console.log(lib.func('int kv_get_threads(void)')());`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script, join(dir, 'baseline.so')], {
    encoding: 'utf8',
  });
  expect(run.stderr).toBe('');
  expect(run.stdout.trim()).toBe('1');
});
