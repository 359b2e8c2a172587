// The worked example of docs/ir.md ("Adding an op"): a test-only `scale`, written exactly as an
// entry of a family module under src/ir/ops/ would be, and as its entry in each backend's pointwise
// table. ops.test.ts adds it to the catalogue; test/backends/pointwise.test.ts to the backends too.
import type { CPointwise } from '../../src/backends/cpu/pointwise.ts';
import type { PtxPointwise } from '../../src/backends/cuda-ptx/kernels/pointwise.ts';
import type { WgslPointwise } from '../../src/backends/webgpu/pointwise.ts';
import { isTensor, need, type OpSpec, rule, show } from '../../src/ir/ops/spec.ts';

export const scale: OpSpec = {
  args: ['x'],
  attrs: { factor: 'number' },
  results: rule(([x]) => {
    need(isTensor(x), `scale needs a tensor, got ${show(x)}`);
    return [x];
  }),
  doc: 'out = factor * x, elementwise',
  interpret: (c) => {
    const x = c.float(0);
    const factor = c.num('factor');
    return [{ shape: [...x.shape], data: x.data.map((v) => factor * v) }];
  },
  flops: (rs) => [[1, ...rs]],
  fusion: { alone: 'elementwise' },
};

// Its one entry in each backend's pointwise table (src/backends/cpu/pointwise.ts,
// src/backends/webgpu/pointwise.ts, src/backends/cuda-ptx/kernels/pointwise.ts).
export const scaleC: CPointwise = ([x], { factor }) => `${factor} * ${x}`;
export const scaleWgsl: WgslPointwise = ([x], { factor }) => `${factor} * ${x}`;
export const scalePtx: PtxPointwise = (p, [x], { factor }) => {
  const o = p.f();
  p.i(`mul.f32 ${o}, ${factor}, ${x}`);
  return o;
};
