import { describe, expect, test } from 'vitest';
import { validateWgsl, validationDevice } from '../../../src/backends/webgpu/device.ts';
import { pointwise } from '../../../src/backends/webgpu/pointwise.ts';
import { buildWebGpu } from '../../../src/backends/webgpu/runner.ts';
import { type ShaderName, shaderDef, shaderDefs, wgslSource } from '../../../src/backends/webgpu/shaders.ts';
import type { ModelConfig } from '../../../src/model/config.ts';
import { presets } from '../../../src/model/presets.ts';
import { weightSpec } from '../../../src/model/weights.ts';
import { modelFor } from '../../../src/runtime/modelFor.ts';
import { examplePlan, examples } from '../../runtime/support.ts';

const validator = await validationDevice();
if (typeof validator === 'string')
  console.log(`WGSL validation: skipped: no Dawn null backend (${validator})`);
const device = typeof validator === 'string' ? undefined : validator;

describe('generated WGSL', () => {
  const all: ShaderName[] = [
    ...shaderDefs.map((d) => d.name as ShaderName),
    ...Object.keys(pointwise).map((op): ShaderName => `pointwise_${op}`),
  ];
  test.skipIf(!device).each(all.map((name) => [name] as const))('%s validates with Dawn', async (name) => {
    expect(await validateWgsl(device as GPUDevice, wgslSource(shaderDef(name)))).toEqual([]);
  });

  test.skipIf(!device)('an invalid shader is reported with line:col', async () => {
    const errors = await validateWgsl(
      device as GPUDevice,
      `${wgslSource(shaderDef('swiglu'))}\nfn broken( {`,
    );
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]).toMatch(/^\d+:\d+: /);
  });

  test.each(['gemm', 'gemm_bf16', 'gemm_f16', 'softmax_stats'] as const)(
    'the %s shader is pinned',
    (name) => {
      expect(wgslSource(shaderDef(name))).toMatchSnapshot();
    },
  );

  test.each(['f32', 'bf16', 'f16'] as const)(
    'every example plan renders to a dispatch plan over the validated shaders, %s matrices',
    (format) => {
      const tiny = presets.tiny as ModelConfig;
      for (const name of examples) {
        const plan = examplePlan(name);
        const config = modelFor(plan, tiny);
        const { manifest } = buildWebGpu(plan, config, 13, () => format);
        const matrices = new Set(weightSpec(config).flatMap((w) => (w.shape.length === 2 ? [w.name] : [])));
        expect(manifest.shaders.length).toBeGreaterThan(0);
        // Matrices (GEMM weights, the embedding table) in the format, vectors (norms, biases) f32;
        // the renderer has checked that every binding is declared as what its buffer holds.
        for (const b of manifest.buffers.filter((x) => x.role === 'weight'))
          expect(b.format).toBe(format !== 'f32' && matrices.has(b.weight as string) ? format : undefined);
        for (const s of manifest.shaders) expect(all).toContain(s);
        const storage = Math.max(...shaderDefs.map((d) => d.bindings.length));
        expect(storage).toBeLessThanOrEqual(8); // within the default maxStorageBuffersPerShaderStage
        for (const stages of Object.values(manifest.phases))
          for (const st of stages)
            for (const d of st.dispatches)
              if (d.op === 'kernel') {
                const def = shaderDef(d.shader);
                const written = d.bindings.filter((_, i) => def.bindings[i]?.[1] === 'read_write');
                for (const w of written) expect(d.bindings.filter((b) => b === w)).toHaveLength(1);
              }
      }
    },
  );
});
