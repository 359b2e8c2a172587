/**
 * The CPU backend's pointwise ops, each spelled as the C expression of one output element: `args`
 * are the same element of each operand, `attrs` the op's numeric attributes as float literals. The
 * renderer makes each use a loop in the generated C, which the C compiler vectorises; adding a
 * pointwise op to this backend is one entry here (see pointwiseEmitters in ../walk.ts).
 */
export type CPointwise = (args: readonly string[], attrs: Readonly<Record<string, string>>) => string;

export const pointwise: Readonly<Record<string, CPointwise>> = {
  add: ([a, b]) => `${a} + ${b}`,
};
