/**
 * The Python harness that replays the PTX checks on a GPU machine without Node
 * (bench/gpu/harness.py): its GPU-free parts, tested by bench/gpu/test_harness.py on cases written
 * here by bench/gpu/prepare.ts and on the stub libcuda. Needs python3; without it, says so.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { writeCases } from '../../../bench/gpu/prepare.ts';
import { fakeLibcuda } from './fakeLibcuda.ts';

const python = spawnSync('python3', ['--version']).status === 0;
if (!python) console.log('skipped: python3 not found');

test.skipIf(!python)(
  'the GPU harness packs, relocates, compares and calls the driver as recorded',
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvplan-gpu-cases-'));
    try {
      const summary = await writeCases(dir);
      expect(summary).toMatch(/\d+ cases, \d+ launches/);
      const r = spawnSync('python3', ['bench/gpu/test_harness.py'], {
        env: { ...process.env, KVPLAN_GPU_CASES: dir, KVPLAN_FAKE_LIBCUDA: fakeLibcuda() },
        encoding: 'utf8',
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/^OK$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  120_000,
);
