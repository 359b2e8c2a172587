// A checkpoint's weights are read when asked for, not when the checkpoint is opened: what a backend
// loads is what the file holds then, and a bad tensor is refused where it is read, as an input error.
import { closeSync, openSync, writeSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { openCheckpoint } from '../../../src/model/hf/checkpoint.ts';
import { CheckpointError } from '../../../src/model/hf/checkpointError.ts';
import { loadCheckpointModel } from '../../../src/model/hf/load.ts';
import { isHalf } from '../../../src/model/weights.ts';
import { runCli } from '../../support/cli.ts';
import { scratch } from './scratch.ts';

const tmp = scratch('kvplan-stored-');

async function checkpoint(): Promise<string> {
  const dir = tmp.path('ckpt');
  const run = await runCli([
    'make-model',
    '--format',
    'hf',
    '--family',
    'llada',
    '--dtype',
    'bf16',
    '-o',
    dir,
  ]);
  expect(run.code).toBe(0);
  return dir;
}

/** Overwrites element `at` of tensor `name` (kvplan's name) of a bf16 checkpoint with `bits`. */
function patch(dir: string, name: string, at: number, bits: number): string {
  const info = openCheckpoint(dir).tensors.get(name);
  if (!info) throw new Error(`no tensor ${name}`);
  const fd = openSync(info.file, 'r+');
  try {
    writeSync(fd, Uint16Array.of(bits), 0, 2, info.offset + 2 * at);
  } finally {
    closeSync(fd);
  }
  return info.name;
}

const norm = 'model.norm.weight';

describe('a checkpoint read on demand', () => {
  test('opening reads no tensor: a tensor changed after opening is read as it is then', async () => {
    const dir = await checkpoint();
    const { weights } = loadCheckpointModel(dir);
    patch(dir, norm, 5, 0x4040); // 3.0 in bf16
    const t = weights.get(norm);
    expect(t && isHalf(t) ? t.bits[5] : undefined).toBe(0x4040);
    expect(weights.size).toBe(openCheckpoint(dir).tensors.size);
    expect(weights.get('no.such.weight')).toBeUndefined();
  });

  test('a non-finite tensor is refused when it is read, naming the file and the tensor', async () => {
    const dir = await checkpoint();
    const { weights } = loadCheckpointModel(dir);
    const stored = patch(dir, norm, 3, 0x7fc0);
    expect(() => weights.get(norm)).toThrow(CheckpointError);
    expect(() => weights.get(norm)).toThrow(`weight "${stored}"`);
    expect(() => weights.get(norm)).toThrow('holds a non-finite value (NaN) at element 3');
    // The other tensors still read.
    expect(weights.get('model.embed_tokens.weight')).toBeDefined();
  });

  test.each(['reference', 'cpu'])(
    'generate on the %s backend with a non-finite weight is an input error (exit 1), not an internal one',
    async (backend) => {
      const dir = await checkpoint();
      patch(dir, 'model.layers.1.mlp.down_proj.weight', 0, 0xff80); // -inf
      const r = await runCli([
        'generate',
        '--model',
        dir,
        '--plan',
        'examples/baseline.kvp',
        '--prompt-ids',
        '1,2,3',
        '--gen-length',
        '4',
        '--backend',
        backend,
      ]);
      expect(r.stderr).toContain('holds a non-finite value (-Infinity) at element 0');
      expect(r.stderr).not.toContain('internal error');
      expect(r.code).toBe(1);
    },
  );
});
