/**
 * The fault hook of the WGSL primitives (src/backends/fault.ts), which the mutation test
 * (test/cli/mutation.test.ts) relies on: each faultable primitive changes exactly the shader that
 * computes it, the faulty modules are valid WGSL, a normal shader is untouched, and pipelines are
 * keyed by their text so that a faulty one never stands in for a normal one.
 */
import { describe, expect, test } from 'vitest';
import { type FaultPrimitive, faultPrimitives, parseFault } from '../../../src/backends/fault.ts';
import { validateWgsl, validationDevice } from '../../../src/backends/webgpu/device.ts';
import { pipelineFor } from '../../../src/backends/webgpu/runner.ts';
import { type ShaderName, shaderDefs, wgslSource } from '../../../src/backends/webgpu/shaders.ts';
import { gpuOrSkip, runKernel } from './support.ts';

const validator = await validationDevice();
if (typeof validator === 'string')
  console.log(`WGSL fault validation: skipped: no Dawn null backend (${validator})`);
const nullDevice = typeof validator === 'string' ? undefined : validator;
const device = await gpuOrSkip('WGSL fault hook at run time');

const shadersOf: Record<FaultPrimitive, readonly ShaderName[]> = {
  gemm: ['gemm', 'gemm_bf16', 'gemm_f16'],
  attention: ['attention'],
  rmsnorm: ['rmsnorm'],
  rope: ['rope'],
  swiglu: ['swiglu'],
};

describe('WGSL fault hook', () => {
  test.each(faultPrimitives.map((p) => [p] as const))(
    '%s changes exactly its shaders (one per weight format), validly',
    async (p) => {
      const fault = parseFault(`${p}:0.01`);
      const changed = shaderDefs.filter((d) => wgslSource(d, fault) !== wgslSource(d));
      expect(changed.map((d) => d.name)).toEqual(shadersOf[p]);
      for (const d of changed) {
        const code = wgslSource(d, fault);
        expect(code).toContain(`// FAULT INJECTED (test only): ${p} outputs scaled by 1.01`);
        expect(code).toContain(') * 1.01e+0');
        if (nullDevice) expect(await validateWgsl(nullDevice, code)).toEqual([]);
      }
    },
  );

  test.skipIf(!device)('pipelines are keyed by their WGSL, fault included', () => {
    const gpu = device as GPUDevice;
    const fault = parseFault('rmsnorm:0.01');
    expect(pipelineFor(gpu, 'rmsnorm', fault)).toBe(pipelineFor(gpu, 'rmsnorm', fault));
    expect(pipelineFor(gpu, 'rmsnorm', fault)).not.toBe(pipelineFor(gpu, 'rmsnorm'));
    expect(pipelineFor(gpu, 'gemm', fault)).toBe(pipelineFor(gpu, 'gemm'));
  });

  test.skipIf(!device)(
    'at factor 2 a faulty rmsnorm and swiglu return exactly twice the normal output',
    async () => {
      const gpu = device as GPUDevice;
      const x = Float32Array.from({ length: 3 * 40 }, (_, i) => Math.sin(i));
      const w = Float32Array.from({ length: 40 }, (_, i) => Math.cos(i));
      const norm = (spec?: string) =>
        runKernel(
          gpu,
          'rmsnorm',
          [3, 40, 0, { f: 1e-5 }],
          [x, new Int32Array(4), w, { out: 3 * 40 }],
          [64 * 3, 1],
          spec === undefined ? undefined : parseFault(spec),
        );
      const elementwise = (shader: 'swiglu' | 'pointwise_add', spec?: string) =>
        runKernel(
          gpu,
          shader,
          [40],
          [w, x.subarray(0, 40), { out: 40 }],
          [40, 1],
          spec === undefined ? undefined : parseFault(spec),
        );
      const twice = (a: Float32Array[]) => Array.from(a[0] as Float32Array, (v) => 2 * v);
      expect(Array.from((await norm('rmsnorm:1'))[0] as Float32Array)).toEqual(twice(await norm()));
      expect(Array.from((await elementwise('swiglu', 'swiglu:1'))[0] as Float32Array)).toEqual(
        twice(await elementwise('swiglu')),
      );
      // Another elementwise shader is not the faulty primitive.
      expect(await elementwise('pointwise_add', 'swiglu:1')).toEqual(await elementwise('pointwise_add'));
    },
  );
});
