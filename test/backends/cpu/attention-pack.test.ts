/**
 * kv_attention copies a KV head's keys and values into a thread's buffer before its units read
 * them, when its key rows span much of the canvas and many units read each head (KV_ATT_PACK_UNITS,
 * KV_ATT_PACK_SPAN). The copy holds the same values, so every bit of the result must be the one
 * read in place. Two builds move the thresholds to the extremes, one copying every head of every
 * call and one never copying, and must agree bit for bit on random shapes, masks, key lists with
 * repeats, GQA and one or two threads; the default build must agree with them on a shape large
 * enough to copy at its own thresholds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { DEFAULT_FLAGS } from '../../../src/backends/cpu/compiler.ts';
import { loadPrimitives, type Primitives } from '../../../src/backends/cpu/primitives.ts';
import { type AttentionCase, makeAttentionCase, runAttention } from '../../support/attentionCase.ts';

/** A random case of up to 300 rows (several units a head), rows of blocks no query is in NaN. */
function makeCase(seed: number, shape: Partial<AttentionCase> = {}): AttentionCase {
  const t = makeAttentionCase(seed, { nq: 1 + ((seed * 37) % 300), nk: (seed * 53) % 300, ...shape });
  const { blocks, kvh, hd } = t;
  if (blocks) {
    // Such rows may never have been written: NaN, which must not be read.
    const latest = Math.max(...Array.from(t.qpos, (p) => blocks[p] as number));
    for (let p = 0; p < t.L; p++)
      if ((blocks[p] as number) > latest) {
        t.kc.fill(Number.NaN, p * kvh * hd, (p + 1) * kvh * hd);
        t.vc.fill(Number.NaN, p * kvh * hd, (p + 1) * kvh * hd);
      }
  }
  return t;
}

/** o and lse of a call, as bytes. */
function run(p: Primitives, t: AttentionCase, threads: number): Buffer {
  const { o, lse } = runAttention(p, t, { threads });
  return Buffer.concat([Buffer.from(o.buffer), Buffer.from(lse.buffer)]);
}

let cacheDir = '';
let always: Primitives;
let never: Primitives;
let standard: Primitives;
beforeAll(async () => {
  cacheDir = mkdtempSync(join(tmpdir(), 'kvplan-attpack-'));
  const build = (defines: string[]) => loadPrimitives({ cacheDir, flags: [...DEFAULT_FLAGS, ...defines] });
  always = await build(['-DKV_ATT_PACK_UNITS=1', '-DKV_ATT_PACK_SPAN=1']);
  never = await build(['-DKV_ATT_PACK_UNITS=2147483647']);
  standard = await loadPrimitives({ cacheDir });
});
afterAll(() => {
  if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
});

describe('kv_attention with keys and values copied per head', () => {
  test('copied and read in place agree bit for bit on random shapes, masks and key lists', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const t = makeCase(seed);
      // One sequence (copied) or two interleaved (never copied: a unit reads its own sequences' keys).
      const c = seed % 5 === 0 ? { ...t, seqs: Int32Array.from({ length: t.L }, (_, i) => i % 2) } : t;
      for (const threads of [1, 2]) {
        const label = `seed ${seed} nq=${c.nq} nk=${c.nk} heads=${c.heads} kvh=${c.kvh} hd=${c.hd} threads=${threads}`;
        expect(run(always, c, threads).equals(run(never, c, threads)), label).toBe(true);
      }
    }
  });

  test('at the default thresholds: a shape that copies agrees with both builds', () => {
    // 256 rows of 4 query heads a KV head: units of 32 rows, 8 a head; 1100 keys 16 x 64 floats
    // apart, a span past 2^20 floats.
    const t = makeCase(77, { nq: 256, nk: 1100, heads: 64, kvh: 16, hd: 64, blocks: null });
    for (const threads of [1, 2]) {
      const reference = run(never, t, threads);
      expect(run(standard, t, threads).equals(reference), `threads=${threads}`).toBe(true);
      expect(run(always, t, threads).equals(reference), `threads=${threads}`).toBe(true);
    }
  });
});
