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
