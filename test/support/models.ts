import fc from 'fast-check';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';

/** Small LLaMA-family configurations: MHA and GQA, with and without QKV bias. */
export const configArb = (maxLayers: number): fc.Arbitrary<ModelConfig> =>
  fc
    .record({
      layers: fc.integer({ min: 1, max: maxLayers }),
      kvHeads: fc.constantFrom(1, 2),
      group: fc.constantFrom(1, 2),
      headDim: fc.constantFrom(4, 8),
      dFF: fc.constantFrom(16, 24),
      vocab: fc.integer({ min: 12, max: 24 }),
      qkvBias: fc.boolean(),
      qkNorm: fc.boolean(),
      ropeTheta: fc.constantFrom(10000, 500000),
    })
    .map((r) => ({
      ...(presets.tiny as ModelConfig),
      name: 'random',
      layers: r.layers,
      heads: r.kvHeads * r.group,
      kvHeads: r.kvHeads,
      headDim: r.headDim,
      dModel: 16,
      dFF: r.dFF,
      vocab: r.vocab,
      maskTokenId: r.vocab - 1,
      qkvBias: r.qkvBias,
      ...(r.qkNorm ? { qkNorm: true } : {}),
      ropeTheta: r.ropeTheta,
    }));
