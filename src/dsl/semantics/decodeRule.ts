import type { DecodeStmt, Expr } from '../ast.ts';
import { revokingRules } from '../builtins.ts';
import type { Canvas } from './canvas.ts';
import { type EvalEnv, evaluate, lowIsBetter, type Mask, maskOf, rankMembers } from './evaluate.ts';

/** What a decode rule sees of one step: its candidates ranked best first, with their scores. */
interface Ranked {
  /** Candidate positions, best first. */
  readonly positions: readonly number[];
  /** Their scores, in the same order. */
  readonly scores: readonly number[];
  readonly lowIsBetter: boolean;
  readonly canvas: Canvas;
}

const reaches = (r: Ranked, score: number, bar: number): boolean =>
  r.lowIsBetter ? score <= bar : score >= bar;

/** How many of the best candidates reach `bar`; at least one. */
const countReaching = (r: Ranked, bar: number): number =>
  Math.max(1, r.scores.filter((s) => reaches(r, s, bar)).length);

/**
 * The candidates a decode rule commits, best first, from its evaluated arguments. Every rule
 * commits at least one candidate while there is one, so that a block always finishes.
 */
export function ruleCommits(rule: string, args: readonly number[], r: Ranked): number[] {
  const n = r.positions.length;
  if (n === 0) return [];
  const first = (k: number) => r.positions.slice(0, Math.min(n, Math.max(1, k)));
  const [a = 0, b = 0, c = 0] = args;
  const c0 = r.canvas;
  switch (rule) {
    case 'per_step':
      return first(a);
    case 'steps':
      return first(Math.ceil(c0.maskedInBlock(c0.block) / Math.max(1, a - c0.blockStep)));
    case 'threshold':
    case 'wino':
      return first(countReaching(r, a));
    case 'factor': {
      // Fast-dLLM's factor rule: the largest k with (k + 1) * (1 - c_k) < f, c_k the k-th best confidence.
      let best = 1;
      for (let k = 1; k <= n; k++) if ((k + 1) * (1 - (r.scores[k - 1] ?? 0)) < a) best = k;
      return first(best);
    }
    case 'prophet': {
      // Prophet's early commit: once the candidates' mean top-2 gap (the `by` score) says the
      // answer is settled, every candidate is committed at once.
      const mean = r.scores.reduce((s, x) => s + x, 0) / n;
      return reaches(r, mean, a) ? [...r.positions] : first(b);
    }
    case 'slow_fast':
      // SlowFast's two phases, switched after a fixed number of steps of the block.
      return c0.blockStep < a ? first(1) : first(countReaching(r, b));
    case 'local_leap': {
      // LocalLeap: confident anchors, and a relaxed bar for the candidates near one.
      const anchors = r.positions.filter((_, k) => reaches(r, r.scores[k] ?? 0, a));
      const nearAnchor = (i: number) => anchors.some((x) => Math.abs(x - i) <= c);
      const chosen = r.positions.filter((i, k) => reaches(r, r.scores[k] ?? 0, b) && nearAnchor(i));
      return chosen.length > 0 ? chosen : first(1);
    }
    default:
      throw new Error(`unknown decode rule ${rule}`);
  }
}

/** The positions a decode rule works on: its `in` set, by default the current block. */
function decodeScope(d: DecodeStmt, env: EvalEnv): Mask {
  const c = env.canvas;
  return d.within ? (evaluate(d.within, env) as Mask) : maskOf(c.length, (i) => c.blockOf(i) === c.block);
}

/** The masked positions a decode rule may commit now: its `in` set, by default the current block. */
export function decodeCandidates(d: DecodeStmt, env: EvalEnv): Mask {
  const c = env.canvas;
  const within = decodeScope(d, env);
  return maskOf(c.length, (i) => c.isMasked(i) && within[i] === 1);
}

/**
 * The decoded positions a revoking rule remasks once it has committed `chosen`: those of its `in`
 * set committed at an earlier step with a score (`scoreAtCommit`, the rule's `by` score when they
 * were committed) short of `tau_revoke`, worst first, and fewer than it committed, so that every
 * step leaves fewer masks and the generation ends. A remasked position is predicted again, with
 * the context of the steps since. Other rules revoke nothing.
 */
export function decideRevocations(
  d: DecodeStmt,
  env: EvalEnv,
  chosen: readonly number[],
  scoreAtCommit: Float64Array,
): number[] {
  const bar = d.rule.args[1];
  if (!revokingRules.has(d.rule.callee.name) || !bar) return [];
  const c = env.canvas;
  const tau = evaluate(bar, env) as number;
  const low = d.by ? lowIsBetter(d.by, env.bindings) : false;
  const within = decodeScope(d, env);
  const committed = new Set(chosen);
  const doubtful = maskOf(c.length, (i) => {
    const s = scoreAtCommit[i] ?? Number.NaN;
    return (
      within[i] === 1 &&
      !c.isPrompt(i) &&
      !c.isMasked(i) &&
      !committed.has(i) &&
      !Number.isNaN(s) &&
      !(low ? s <= tau : s >= tau)
    );
  });
  return rankMembers(doubtful, scoreAtCommit, !low).slice(0, Math.max(0, chosen.length - 1));
}

/** The positions a decode rule commits on the current state given its scores, best first. */
export function decideCommits(d: DecodeStmt, env: EvalEnv, scores: Float64Array): number[] {
  const low = d.by ? lowIsBetter(d.by, env.bindings) : false;
  const positions = rankMembers(decodeCandidates(d, env), scores, low);
  const args = d.rule.args.map((a: Expr) => evaluate(a, env) as number);
  return ruleCommits(d.rule.callee.name, args, {
    positions,
    scores: positions.map((i) => scores[i] ?? 0),
    lowIsBetter: low,
    canvas: env.canvas,
  });
}
