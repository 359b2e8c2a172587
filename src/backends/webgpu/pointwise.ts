/**
 * The WebGPU backend's pointwise ops, each spelled as the WGSL expression of one output element:
 * `args` are the same element of each operand, `attrs` the op's numeric attributes (uniform
 * fields). Each entry becomes a shader `pointwise_<op>` (see pointwiseShader in shaders.ts); adding
 * a pointwise op to this backend is one entry here (see pointwiseEmitters in ../walk.ts).
 */
export type WgslPointwise = (args: readonly string[], attrs: Readonly<Record<string, string>>) => string;

export const pointwise: Readonly<Record<string, WgslPointwise>> = {
  add: ([a, b]) => `${a} + ${b}`,
};
