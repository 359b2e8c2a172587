/**
 * The op catalogue. Each op's facts (operands, attributes, result-type rule, doc, reference
 * semantics, cost, fusion class) are one entry of a family module under ops/, so that adding an
 * op is one entry there plus one emitter per backend. docs/ir.md documents the families, under
 * these titles and in this order.
 */
import { attentionOps } from './ops/attention.ts';
import { cacheOps } from './ops/cache.ts';
import { layerOps } from './ops/layer.ts';
import { rowOps } from './ops/rows.ts';
import { scoreOps } from './ops/scores.ts';
import type { OpSpec } from './ops/spec.ts';

export { maskOperands } from './ops/attention.ts';
export type { AttrKind, Cost, Fusion, KernelKind, OpContext, OpSpec } from './ops/spec.ts';

export const opFamilies: readonly {
  readonly title: string;
  readonly ops: Readonly<Record<string, OpSpec>>;
}[] = [
  { title: 'Rows and data movement', ops: rowOps },
  { title: 'Layer math', ops: layerOps },
  { title: 'Attention', ops: attentionOps },
  { title: 'Scores and selection', ops: scoreOps },
  { title: 'Caches', ops: cacheOps },
];

export const ops: Readonly<Record<string, OpSpec>> = Object.assign({}, ...opFamilies.map((f) => f.ops));
