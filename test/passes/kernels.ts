import type { Kernel } from '../../src/passes/kernelIR.ts';

/** A kernel that only states what it reads and writes: all the memory planner looks at. */
export const kernel = (
  name: string,
  reads: readonly string[],
  writes: readonly string[],
  kind: Kernel['kind'] = 'elementwise',
): Kernel => ({
  name,
  kind,
  stage: 'layer.0',
  reads: [...reads],
  writes: [...writes],
  grid: [1],
  indirect: [],
  epilogue: [],
  flops: [],
  bytes: [],
  instrs: [],
});
