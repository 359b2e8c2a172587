// The worked example of docs/ir.md ("Adding an op"): a test-only `scale`, written exactly as an
// entry of a family module under src/ir/ops/ would be. ops.test.ts adds it to the catalogue.
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
