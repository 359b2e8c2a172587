import type { Type } from './types.ts';

/** An argument's allowed values; `open` ends exclude the bound. */
/**
 * The largest block length, delay or layer index a plan may state: far beyond any model, and
 * small enough that the checker's simulation of a block stays bounded (a literal of 1e32 once
 * reached an allocation).
 */
export const maxPositionCount = 65_536;

export interface ArgRange {
  readonly min?: number;
  readonly max?: number;
  readonly minOpen?: boolean;
  readonly odd?: boolean;
}

export interface ArgSpec {
  readonly name: string;
  readonly type: Type;
  readonly range?: ArgRange;
}

export interface BuiltinValue {
  readonly kind: 'value';
  readonly type: Type;
  readonly doc: string;
  /** For scores: selection and decoding prefer low values (entropy) instead of high ones. */
  readonly lowIsBetter?: boolean;
}

export interface BuiltinFunction {
  readonly kind: 'function';
  readonly type: Type;
  readonly args: readonly ArgSpec[];
  readonly doc: string;
}

export type Builtin = BuiltinValue | BuiltinFunction;

const v = (type: Type, doc: string, lowIsBetter = false): BuiltinValue =>
  lowIsBetter ? { kind: 'value', type, doc, lowIsBetter } : { kind: 'value', type, doc };
const f = (type: Type, args: ArgSpec[], doc: string): BuiltinFunction => ({
  kind: 'function',
  type,
  args,
  doc,
});
const positive = { min: 0, minOpen: true } as const;
const atLeastOne = { min: 1 } as const;
const unit = { min: 0, max: 1, minOpen: true } as const;

/** Names every plan can use: token sets, scores, step quantities and functions over them. */
export const builtins: Readonly<Record<string, Builtin>> = {
  // Token sets (the universe is the canvas: prompt + generated positions).
  all: v('set', 'every position of the canvas'),
  none: v('set', 'the empty set'),
  prompt: v('set', 'prompt positions'),
  generated: v('set', 'generated (non-prompt) positions'),
  masked: v('set', 'positions still holding [MASK]'),
  decoded: v('set', 'generated positions already committed to a token'),
  newly_decoded: v('set', 'positions committed by the previous step (age 1)'),
  current_block: v('set', 'positions of the block being denoised'),
  before_block: v('set', 'generated positions of blocks before the current one'),
  after_block: v('set', 'positions of blocks after the current one'),
  uncached: v(
    'set',
    'positions with no valid K/V cache entry at the layer being decided (none written since their token last changed)',
  ),
  targets: v(
    'set',
    'positions the decode rule commits this step (needs an order fixed in advance: by random)',
  ),
  next_targets: v(
    'set',
    'positions the decode rule commits next step (needs an order fixed in advance: by random)',
  ),
  // Per-token scores. In compute/attend/refresh they are the latest values known before the step;
  // in `select` they are those of the step at which the selection is chosen.
  confidence: v('score', 'max softmax probability at the row’s last prediction'),
  margin: v('score', 'top-1 minus top-2 probability at the row’s last prediction'),
  entropy: v('score', 'entropy of the row’s last prediction (low is certain)', true),
  age: v('score', 'steps since the row’s token last changed (prompt: step + 1; masked: 0)'),
  position: v('score', 'canvas index of the row'),
  random: v(
    'score',
    'a uniform random number per row, fixed per generation (a decode order known in advance)',
  ),
  rollout: v('score', 'attention-rollout importance (column sums of the layer-product of attention)'),
  value_drift: v('score', '1 - cos(V fresh, V cached) per row; needs a K/V cache of the rows it scores'),
  key_drift: v(
    'score',
    '1 - cos(K fresh, K cached) per row (keys after RoPE); needs a K/V cache of the rows it scores',
  ),
  hidden_drift: v(
    'score',
    '1 - cos(h fresh, h cached) per row, h the hidden state entering the layer; needs the hidden cache of the layer below',
  ),
  certainty: f(
    'score',
    [{ name: 'sigma', type: 'float', range: positive }],
    'confidence times the Gaussian(sigma) density of decoded neighbours (d2Cache certainty prior)',
  ),
  attention_mass: f(
    'score',
    [{ name: 'queries', type: 'set' }],
    'attention mass each key receives from the queries',
  ),
  query_key: f(
    'score',
    [{ name: 'queries', type: 'set' }],
    'mean query of the set dotted with each key, mean over heads',
  ),
  maxpool: f(
    'score',
    [
      { name: 'score', type: 'score' },
      { name: 'kernel', type: 'int', range: { min: 1, odd: true } },
    ],
    'max of the score over a window of `kernel` neighbouring positions',
  ),
  // Set functions.
  window: f(
    'set',
    [
      { name: 'set', type: 'set' },
      { name: 'radius', type: 'int', range: { min: 0 } },
    ],
    'positions within `radius` of a member of the set',
  ),
  leftmost: f(
    'set',
    [
      { name: 'set', type: 'set' },
      { name: 'n', type: 'int', range: atLeastOne },
    ],
    'the n lowest positions of the set',
  ),
  shift: f(
    'set',
    [
      { name: 'set', type: 'set' },
      { name: 'offset', type: 'int' },
    ],
    'the set moved by offset positions (AR-shifted models read position i - 1 to predict i)',
  ),
  topk: f(
    'set',
    [
      { name: 'set', type: 'set' },
      { name: 'score', type: 'score' },
      { name: 'k', type: 'int', range: atLeastOne },
    ],
    'the k members with the best score',
  ),
  topp: f(
    'set',
    [
      { name: 'set', type: 'set' },
      { name: 'score', type: 'score' },
      { name: 'p', type: 'float', range: unit },
    ],
    'the smallest best-scored subset holding fraction p of the score mass',
  ),
  keep: f(
    'set',
    [
      { name: 'set', type: 'set' },
      { name: 'score', type: 'score' },
      { name: 'ratio', type: 'float', range: unit },
    ],
    'the ceil(ratio * |set|) best-scored members',
  ),
  // Step quantities and conditions.
  step: v('int', 'denoising step since the start of the generation (0-based)'),
  block_step: v('int', 'denoising step within the current block (0-based)'),
  block_index: v('int', 'index of the current block'),
  block_start: v('bool', 'the first step of a block (block_step == 0)'),
  every: f('bool', [{ name: 'n', type: 'int', range: atLeastOne }], 'steps whose index is a multiple of n'),
  count: f('int', [{ name: 'set', type: 'set' }], 'number of members of the set'),
  dirty: f(
    'int',
    [{ name: 'set', type: 'set' }],
    'members of the set whose token changed since the value this condition guards was last computed',
  ),
  attn_similarity: f(
    'float',
    [{ name: 'layer', type: 'int', range: { min: 0 } }],
    'cosine between the most-attended token’s attention row now and at the last refresh, at that layer',
  ),
  measured_at: f(
    'score',
    [
      { name: 'score', type: 'score' },
      { name: 'layer', type: 'int', range: { min: 0, max: maxPositionCount } },
    ],
    'the score as measured at that layer this step (from the hidden state entering it), the same value on every later layer',
  ),
  after_drift: f(
    'bool',
    [{ name: 'gamma', type: 'float', range: { min: 0, max: 1 } }],
    'on layer l: some layer below l has attn_similarity below gamma this step (after the forward: some layer has)',
  ),
};

/** The rule of a `decode` statement: how many masked positions to commit after each step. */
export const decodeRules: Readonly<Record<string, BuiltinFunction>> = {
  per_step: f(
    'set',
    [{ name: 'k', type: 'int', range: atLeastOne }],
    'commit the k best positions each step',
  ),
  steps: f(
    'set',
    [{ name: 'n', type: 'int', range: atLeastOne }],
    'spread each block over n steps, committing ceil(remaining / steps left) per step',
  ),
  threshold: f(
    'set',
    [{ name: 'tau', type: 'float', range: unit }],
    'commit every position whose score reaches tau, and always at least one',
  ),
  factor: f(
    'set',
    [{ name: 'f', type: 'float', range: positive }],
    'commit the largest n with (n + 1) * (1 - c_n) < f, c_n the n-th best confidence (at least one)',
  ),
  prophet: f(
    'set',
    [
      { name: 'gap', type: 'float', range: positive },
      { name: 'k', type: 'int', range: atLeastOne },
    ],
    'commit every candidate once their mean score reaches gap (early commit), else the k best',
  ),
  slow_fast: f(
    'set',
    [
      { name: 'k', type: 'int', range: { min: 0 } },
      { name: 'tau', type: 'float', range: unit },
    ],
    'commit one position a step for the first k steps of a block, then every position whose score reaches tau',
  ),
  local_leap: f(
    'set',
    [
      { name: 'tau', type: 'float', range: unit },
      { name: 'tau_near', type: 'float', range: unit },
      { name: 'radius', type: 'int', range: atLeastOne },
    ],
    'commit the anchors (score reaching tau) and every candidate within radius of an anchor whose score reaches tau_near (at least one)',
  ),
  wino: f(
    'set',
    [
      { name: 'tau', type: 'float', range: unit },
      { name: 'tau_revoke', type: 'float', range: unit },
    ],
    'commit every candidate whose score reaches tau (at least one), then remask the positions of the `in` set committed at earlier steps with a score short of tau_revoke, worst first, fewer than it committed',
  ),
};

/** Decode rules that may turn committed tokens back into masks (section 4.5 of docs/language.md). */
export const revokingRules: ReadonlySet<string> = new Set(['wino']);

export const cacheKinds: Readonly<Record<string, string>> = {
  kv: 'keys and values of each layer',
  attn: 'attention output and its log-sum-exp of each layer',
  ffn: 'feed-forward output of each layer',
  hidden: 'the hidden state each layer outputs',
};

export const masks: Readonly<Record<string, string>> = {
  block_causal: 'queries see the prompt, their own block and earlier blocks (block diffusion)',
};

export const perScopes: Readonly<Record<string, string>> = {
  kv_head: 'one key set per key/value head: each head attends to its own (MAGE, SparseD)',
};
