import type { Expr, LayerScope } from '../ast.ts';
import type { CheckedPlan } from '../check.ts';
import type { Diagnostic } from '../diagnostics.ts';
import { printExpr } from '../printer.ts';
import { forEachChild, forEachStmtExpr, layerInScope } from '../typecheck.ts';
import { constantOf } from './constant.ts';

function describeScope(scope: LayerScope, value: (e: Expr) => number): string {
  if (scope.kind === 'range') return `on layers ${value(scope.lo)}..${value(scope.hi)}`;
  return scope.op === '==' ? `on layer ${value(scope.bound)}` : `on layers ${scope.op} ${value(scope.bound)}`;
}

/**
 * One diagnostic per layer-scoped rule of the plan whose scope selects no layer of a model with
 * `layers` layers (numbered 0..layers-1): such a rule never applies there, which is never what
 * its author meant. Scope bounds are read with the plan's parameter values (after `--set`).
 * `kvplan check --config` reports these as warnings; commands that run the plan on that model
 * report them as errors.
 */
export function layerScopeDiagnostics(
  checked: CheckedPlan,
  layers: number,
  modelName: string,
  severity: 'error' | 'warning' = 'error',
): Diagnostic[] {
  const value = (e: Expr) => constantOf(checked.typed, e);
  const depth = layers === 1 ? '1 layer: 0' : `${layers} layers: 0..${layers - 1}`;
  const out: Diagnostic[] = [];
  for (const s of checked.typed.plan.body) {
    if (!('layers' in s) || !s.layers) continue;
    const scope = s.layers;
    let selects = false;
    for (let l = 0; l < layers && !selects; l++) selects = layerInScope(scope, l, value);
    if (selects) continue;
    out.push({
      severity,
      span: scope.span,
      message: `\`${describeScope(scope, value)}\` selects no layer of model '${modelName}' (${depth})`,
      notes: [`note: this \`${s.kind}\` rule would never apply on '${modelName}'`],
    });
  }
  const probe = (e: Expr): void => {
    if (e.kind === 'call' && e.callee.name === 'attn_similarity' && e.args[0]) {
      const l = value(e.args[0]);
      if (l >= layers)
        out.push({
          severity,
          span: e.span,
          message: `\`${printExpr(e)}\` probes layer ${l}, which model '${modelName}' does not have (${depth})`,
          notes: ['note: a layer that never runs is never measured, so this condition would never hold'],
        });
    }
    forEachChild(e, probe);
  };
  for (const s of checked.typed.plan.body) forEachStmtExpr(s, probe);
  return out;
}
