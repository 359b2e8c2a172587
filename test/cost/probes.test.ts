// The cost of score probes: each part on the kernel that runs it (projections as GEMMs streaming
// their weights, the attention mass on kv_attention_mass's own rate) and the fresh host buffers a
// call writes, worked out by hand for one shape.
import { describe, expect, test } from 'vitest';
import { costProbe } from '../../src/cost/probes.ts';
import type { Roofline, Sizes } from '../../src/cost/roofline.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';

const c: ModelConfig = { ...(presets.small as ModelConfig), dModel: 64, heads: 4, kvHeads: 4, headDim: 16 };
const L = 100;
const sizes: Sizes = { dim: () => 0, batch: 1, weightBytes: 4 };
// overlap 0: every part's time is its compute time plus its memory time, easy to add up by hand.
const hw: Roofline = { peakFlops: 1e9, bandwidth: 1e9, overlap: 0 };

describe('costProbe', () => {
  // mass of 10 queries: norm 4·L·d FLOPs; q projection 2·10·64·64; k projection 2·L·64·64;
  // scores 2·10·L·64 + 5·10·L·4.
  const norm = 4 * L * 64;
  const proj = (rows: number) => 2 * rows * 64 * 64;
  const scores = 2 * 10 * L * 64 + 5 * 10 * L * 4;
  const bytes = 2 * L * 64 * 4 + (64 * 64 * 4 + 2 * 10 * 64 * 4) + (64 * 64 * 4 + 2 * L * 64 * 4) + 8 * L;

  test('the attention mass runs at the mass kernel rate, the projections at the peak', () => {
    const call = { output: 'mass', layer: 0, queries: 10 } as const;
    const plain = costProbe(call, c, L, sizes, hw);
    expect(plain.flops).toBe(norm + proj(10) + proj(L) + scores);
    expect(plain.bytes).toBe(bytes);
    expect(plain.seconds).toBeCloseTo((norm + proj(10) + proj(L) + scores) / 1e9 + bytes / 1e9, 12);
    const slowMass = costProbe(call, c, L, sizes, { ...hw, massFlops: 1e8 });
    expect(slowMass.seconds - plain.seconds).toBeCloseTo(scores / 1e8 - scores / 1e9, 12);
    // query_key does not run the mass kernel
    const qk = { output: 'query_key', layer: 0, queries: 10 } as const;
    expect(costProbe(qk, c, L, sizes, { ...hw, massFlops: 1e8 }).seconds).toBe(
      costProbe(qk, c, L, sizes, hw).seconds,
    );
  });

  test('the mass of each KV head costs what the summed mass costs: the same kernel over the same rows', () => {
    const mass = costProbe({ output: 'mass', layer: 0, queries: 10 }, c, L, sizes, { ...hw, massFlops: 1e8 });
    const perHead = costProbe({ output: 'mass_heads', layer: 0, queries: 10 }, c, L, sizes, {
      ...hw,
      massFlops: 1e8,
    });
    expect(perHead.flops).toBe(norm + proj(10) + proj(L) + scores);
    expect(perHead.seconds).toBe(mass.seconds);
    // The row of the most-attended key: the same projections, and one query row scored again.
    const row = costProbe({ output: 'row', layer: 0, queries: 10 }, c, L, sizes, { ...hw, massFlops: 1e8 });
    expect(row.flops - mass.flops).toBe(2 * L * 64 + 5 * L * 4);
    expect(row.bytes - mass.bytes).toBe(8 * L);
  });

  test('a call that kept earlier projections costs the rows it normalised and projected, and every score', () => {
    const call = { output: 'mass', layer: 0, queries: 10 } as const;
    const all = costProbe(call, c, L, sizes, hw);
    const few = costProbe({ ...call, projected: { norms: 7, keys: 7, queries: 3 } }, c, L, sizes, hw);
    expect(few.flops).toBe(4 * 7 * 64 + proj(3) + proj(7) + scores);
    expect(all.flops - few.flops).toBe(norm - 4 * 7 * 64 + proj(10) - proj(3) + proj(L) - proj(7));
    // What the probe program states, stated as rows: the same cost as without them.
    expect(costProbe({ ...call, projected: { norms: L, keys: L, queries: 10 } }, c, L, sizes, hw)).toEqual(
      all,
    );
    // A drift projects keys or values only.
    const k = { output: 'k', layer: 0, queries: 0 } as const;
    expect(costProbe({ ...k, projected: { norms: 0, keys: 0, queries: 0 } }, c, L, sizes, hw).flops).toBe(0);
  });

  test('the fresh host buffers of a call cost their bytes at the readback rate', () => {
    const call = { output: 'v', layer: 0, queries: 0 } as const;
    const without = costProbe(call, c, L, sizes, hw);
    const withCopies = costProbe(call, c, L, sizes, { ...hw, readbackBandwidth: 1e6 });
    // the normalised state (L·d floats), V (L·kv floats) and the float32 copy of the cached V
    const fresh = 4 * L * 64 + (4 + 4) * L * 64;
    expect(withCopies.seconds - without.seconds).toBeCloseTo(fresh / 1e6, 12);
    expect(withCopies.bytes - without.bytes).toBe(fresh);
  });
});
