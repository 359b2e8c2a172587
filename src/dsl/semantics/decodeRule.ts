import type { DecodeStmt, Expr } from '../ast.ts';
import { type EvalEnv, evaluate, lowIsBetter, type Mask, maskOf, rankMembers } from './evaluate.ts';

/** How many of the candidates a decode rule commits, given their scores sorted best first. */
export function commitCount(
  rule: string,
  arg: number,
  sortedScores: readonly number[],
  lowIsBetter: boolean,
  blockStep: number,
  remainingInBlock: number,
): number {
  const n = sortedScores.length;
  if (n === 0) return 0;
  switch (rule) {
    case 'per_step':
      return Math.min(arg, n);
    case 'steps':
      return Math.min(n, Math.max(1, Math.ceil(remainingInBlock / Math.max(1, arg - blockStep))));
    case 'threshold': {
      const passes = sortedScores.filter((s) => (lowIsBetter ? s <= arg : s >= arg)).length;
      return Math.max(1, passes);
    }
    case 'factor': {
      // Fast-dLLM's factor rule: the largest k with (k + 1) * (1 - c_k) < f, c_k the k-th best confidence.
      let best = 1;
      for (let k = 1; k <= n; k++) if ((k + 1) * (1 - (sortedScores[k - 1] ?? 0)) < arg) best = k;
      return best;
    }
    default:
      throw new Error(`unknown decode rule ${rule}`);
  }
}

/** The masked positions a decode rule may commit now: its `in` set, by default the current block. */
export function decodeCandidates(d: DecodeStmt, env: EvalEnv): Mask {
  const c = env.canvas;
  const within = d.within
    ? (evaluate(d.within, env) as Mask)
    : maskOf(c.length, (i) => c.blockOf(i) === c.block);
  return maskOf(c.length, (i) => c.isMasked(i) && within[i] === 1);
}

/** The positions a decode rule commits on the current state given its scores, best first. */
export function decideCommits(d: DecodeStmt, env: EvalEnv, scores: Float64Array): number[] {
  const c = env.canvas;
  const low = d.by ? lowIsBetter(d.by, env.bindings) : false;
  const ranked = rankMembers(decodeCandidates(d, env), scores, low);
  const arg = evaluate(d.rule.args[0] as Expr, env) as number;
  const sorted = ranked.map((i) => scores[i] ?? 0);
  return ranked.slice(
    0,
    commitCount(d.rule.callee.name, arg, sorted, low, c.blockStep, c.maskedInBlock(c.block)),
  );
}
