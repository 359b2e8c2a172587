/**
 * The PTX backend's pointwise ops, each spelled as the PTX that computes one output element into a
 * register: `args` hold the same element of each operand, `attrs` the op's numeric attributes (f32
 * kernel parameters). Each entry becomes a kernel `kvp_<op>` (mapKernel); adding a pointwise op to
 * this backend is one entry here (see pointwiseEmitters in ../../walk.ts). The table alone is here,
 * so that a test can extend it.
 */
import type { Ptx } from './ptx.ts';

export type PtxPointwise = (
  x: Ptx,
  args: readonly string[],
  attrs: Readonly<Record<string, string>>,
) => string;

export const pointwise: Readonly<Record<string, PtxPointwise>> = {
  add: (x, [a, b]) => {
    const o = x.f();
    x.i(`add.f32 ${o}, ${a}, ${b}`);
    return o;
  },
};
