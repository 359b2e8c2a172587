import type { Fault } from '../../../src/backends/fault.ts';
import { sharedDevice } from '../../../src/backends/webgpu/device.ts';
import type { Param } from '../../../src/backends/webgpu/render.ts';
import { pipelineFor, uniformData, workgroups } from '../../../src/backends/webgpu/runner.ts';
import { type ShaderName, shaderDef, type WeightFormat } from '../../../src/backends/webgpu/shaders.ts';
import { halfToFloat32 } from '../../../src/model/half.ts';
import { float32ToBf16, float32ToF16 } from '../../../src/model/hf/write.ts';

/**
 * The shared device for the WebGPU tests, or undefined after printing why it is skipped. On this
 * project's CI machines (Dawn on Mesa llvmpipe) an adapter exists, so the tests run there.
 */
export async function gpuOrSkip(what: string): Promise<GPUDevice | undefined> {
  const acq = await sharedDevice();
  if (acq.ok) return acq.gpu.device;
  console.log(`${what}: skipped: no WebGPU adapter (${acq.reason})`);
  return undefined;
}

/** Whether the device can run the shaders that read weights in this format (f16 needs `shader-f16`). */
export const readsFormat = (device: GPUDevice | undefined, format: WeightFormat): boolean =>
  device !== undefined && (format !== 'f16' || device.features.has('shader-f16'));

/**
 * A weight matrix in a format, from float32 values: the operand to upload (16-bit bits, rounded to
 * nearest even, padded to whole 32-bit words) and the values a shader reading it must see.
 */
export function weightIn(
  values: Float32Array,
  format: WeightFormat,
): { readonly operand: Float32Array | Uint16Array; readonly values: Float32Array } {
  if (format === 'f32') return { operand: values, values };
  const bits = new Uint16Array(values.length + (values.length % 2));
  (format === 'bf16' ? float32ToBf16 : float32ToF16)(values, bits.subarray(0, values.length));
  return { operand: bits, values: halfToFloat32(bits.subarray(0, values.length), format) };
}

/** A buffer operand of a single dispatch: data to upload, or an output of n floats (poisoned NaN). */
export type Operand = Float32Array | Int32Array | Uint16Array | { readonly out: number };

/**
 * Runs one dispatch of a primitive: uploads the operands in binding order, evaluates the params
 * (numbers are u32 fields, { f } floats), dispatches `items` work items and reads back the outputs;
 * with a fault, the dispatch runs the primitive built with it (the mutation test's hook).
 */
export async function runKernel(
  device: GPUDevice,
  shader: ShaderName,
  params: readonly (number | { f: number })[],
  operands: readonly Operand[],
  items: readonly [number, number],
  fault?: Fault,
): Promise<Float32Array[]> {
  const def = shaderDef(shader);
  if (operands.length !== def.bindings.length)
    throw new Error(`${shader} takes ${def.bindings.length} buffers`);
  const made: GPUBuffer[] = [];
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const buffers = operands.map((o) => {
    const bytes = 'out' in o ? o.out * 4 : o.byteLength;
    const b = device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
    made.push(b);
    device.queue.writeBuffer(b, 0, 'out' in o ? new Float32Array(o.out).fill(Number.NaN) : o);
    return b;
  });
  const ps: Param[] = params.map((p) => (typeof p === 'number' ? { u: [p] } : p));
  const ub = device.createBuffer({
    size: uniformData(shader, ps, () => 0).byteLength,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  made.push(ub);
  device.queue.writeBuffer(
    ub,
    0,
    uniformData(shader, ps, () => 0),
  );
  const pipeline = pipelineFor(device, shader, fault);
  device.pushErrorScope('validation');
  const enc = device.createCommandEncoder();
  const [gx, gy] = workgroups(shader, items[0], items[1]);
  if (gx > 0 && gy > 0) {
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: ub } },
          ...buffers.map((buffer, i) => ({ binding: i + 1, resource: { buffer } })),
        ],
      }),
    );
    pass.dispatchWorkgroups(gx, gy);
    pass.end();
  }
  const outs = operands.flatMap((o, i) => ('out' in o ? [[buffers[i] as GPUBuffer, o.out] as const] : []));
  const total = outs.reduce((s, [, n]) => s + n, 0);
  const staging = device.createBuffer({
    size: Math.max(16, total * 4),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  made.push(staging);
  let off = 0;
  for (const [b, n] of outs) {
    if (n > 0) enc.copyBufferToBuffer(b, 0, staging, off * 4, n * 4);
    off += n;
  }
  device.queue.submit([enc.finish()]);
  const err = await device.popErrorScope();
  if (err) throw new Error(`${shader}: ${err.message}`);
  await staging.mapAsync(GPUMapMode.READ);
  const all = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  for (const b of made) b.destroy();
  off = 0;
  return outs.map(([, n]) => {
    const r = all.slice(off, off + n);
    off += n;
    return r;
  });
}
