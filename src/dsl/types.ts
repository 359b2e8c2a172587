/**
 * Value types of the plan language. `set`, `score` and `pred` are per-token (one value per canvas
 * position); `int`, `float` and `bool` are per-step scalars.
 */
export type Type = 'set' | 'score' | 'pred' | 'int' | 'float' | 'bool';

export const typeWords: Record<Type, string> = {
  set: 'a token set',
  score: 'a per-token score',
  pred: 'a per-token predicate',
  int: 'an integer',
  float: 'a number',
  bool: 'a step condition',
};

/** Whether a value of type `actual` may stand where `expected` is wanted (ints widen to floats). */
export const assignable = (actual: Type, expected: Type): boolean =>
  actual === expected || (actual === 'int' && expected === 'float');
