import type { Expr } from '../ast.ts';
import type { TypedPlan } from '../typecheck.ts';
import { Canvas } from './canvas.ts';
import { evaluate } from './evaluate.ts';

/** The value of a constant expression (layer bounds, block length, delays), which the checker vouches for. */
export function constantOf(typed: TypedPlan, e: Expr): number {
  const unreachable = () => {
    throw new Error('a constant expression reads the token state');
  };
  const hooks = {
    modelScore: unreachable,
    selection: unreachable,
    targets: unreachable,
    uncached: unreachable,
    dirty: unreachable,
    attnSimilarity: unreachable,
    afterDrift: unreachable,
    measuredAt: unreachable,
  };
  return evaluate(e, { canvas: new Canvas(1, 1, 1), bindings: typed.bindings, hooks }) as number;
}
