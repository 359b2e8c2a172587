/**
 * Random plans that nobody wrote: fast-check arbitraries producing plan text that is meant to be
 * meaningful (well-typed, built from the patterns of section 6 of docs/language.md), plus
 * near-miss mutations that break exactly one well-formedness rule. Unlike the syntactic AST
 * arbitrary of `arbitraries.ts`, these plans are checked and then run against full attention.
 *
 * A plan is first a `Spec` (structured, so that mutations can target one rule), then text.
 */
import fc from 'fast-check';
import type { Expr } from '../../src/dsl/ast.ts';
import { type CheckedPlan, checkSource } from '../../src/dsl/check.ts';
import type { Diagnostic } from '../../src/dsl/diagnostics.ts';
import { canvasSets } from '../../src/dsl/semantics/evaluate.ts';
import { arithmetic, forEachChild, type TypedPlan } from '../../src/dsl/typecheck.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { modelFor } from '../../src/runtime/modelFor.ts';
import { DecodeStalled, simulateGeneration } from '../../src/runtime/simulate.ts';
import { type PlanVerdict, type RunnerFactory, verifyCheckedPlan } from '../../src/runtime/verify.ts';

export type CmpOp = '<' | '<=' | '>' | '>=' | '==' | '!=';

/** One disjunct of a condition: static atoms can be evaluated from the step counters alone. */
export type Atom =
  | { readonly k: 'block_start' }
  | { readonly k: 'every'; readonly n: number }
  | { readonly k: 'step0' }
  | { readonly k: 'bs_lt'; readonly n: number }
  | { readonly k: 'bs_eq'; readonly n: number }
  | { readonly k: 'false' }
  | { readonly k: 'true' }
  /** `step op n`, `block_step op n`, `block_index op n` (the last is not static: it needs the block). */
  | {
      readonly k: 'cmp';
      readonly v: 'step' | 'block_step' | 'block_index';
      readonly op: CmpOp;
      readonly n: number;
    }
  | { readonly k: 'dirty'; readonly set: string; readonly r: number }
  | { readonly k: 'sim'; readonly layer: number; readonly gamma: number }
  /** The adaptive layer boundary: true on the layers above the first that drifted. */
  | { readonly k: 'drift'; readonly gamma: number };

/** A per-step condition for a phase filter (`s[cond]`, docs/language.md section 3). */
export type Phase =
  | { readonly k: 'atom'; readonly a: Atom }
  | { readonly k: 'not'; readonly p: Phase }
  | { readonly k: 'and' | 'or' | '==' | '!='; readonly a: Phase; readonly b: Phase };

/**
 * A phase filter on a set S by a step condition c. `only` writes `S[c]`: S at the steps where c
 * holds, nothing (and nothing read) at the others. `split` writes `S[c] | S[not c]`: the same set
 * at every step, written as two phases, so that it keeps the plan's meaning wherever S stood.
 */
export interface PhaseFilter {
  readonly mode: 'only' | 'split';
  readonly cond: Phase;
}

export type Scope =
  | { readonly k: 'eq'; readonly l: number }
  | { readonly k: 'cmp'; readonly op: '<' | '<=' | '>' | '>='; readonly l: number }
  | { readonly k: 'range'; readonly a: number; readonly b: number };

export interface Refresh {
  readonly set: string;
  readonly when: readonly Atom[];
  readonly scope?: Scope;
  readonly phase?: PhaseFilter;
}
export interface Compute {
  readonly set: string;
  readonly scope?: Scope;
  readonly phase?: PhaseFilter;
}
export interface Cache {
  readonly kinds: readonly ('kv' | 'attn' | 'ffn' | 'hidden')[];
  readonly of: string;
  readonly delay?: number;
  readonly scope?: Scope;
  readonly phase?: PhaseFilter;
}
export interface Segment {
  readonly name: string;
  readonly keys: string;
  readonly until?: readonly Atom[];
  readonly phase?: PhaseFilter;
}
export interface Attend {
  readonly keys: string | readonly Segment[];
  readonly causal: boolean;
  /** A phase filter on a key set written as one expression (segments carry their own). */
  readonly phase?: PhaseFilter;
}
export interface Select {
  readonly name: string;
  readonly set: string;
  readonly at: readonly Atom[];
  readonly phase?: PhaseFilter;
  /** `per kv_head`: one set per KV head, read only by the attend (without split). */
  readonly perKvHead?: boolean;
}
export interface Decode {
  readonly rule: string;
  readonly by?: string;
  readonly in?: string;
  readonly inPhase?: PhaseFilter;
  readonly arShift: boolean;
  /** Commits exactly one position per step, whatever the scores (per_step(1), steps(n >= block)). */
  readonly onePerStep: boolean;
}

export type Preset = 'tiny' | 'small';

export interface Spec {
  readonly family: string;
  readonly preset: Preset;
  readonly layers: number;
  readonly block?: number;
  readonly blockAsParam: boolean;
  readonly refreshes: readonly Refresh[];
  readonly computes: readonly Compute[];
  readonly caches: readonly Cache[];
  readonly attend?: Attend;
  readonly selects: readonly Select[];
  readonly decode: Decode;
  /** Wild edits applied on top of the family's pattern (the plan may then be rejected). */
  readonly edits: readonly string[];
  /** Phase-filter decorations applied to the family's pattern, which keep it well formed. */
  readonly phases?: readonly string[];
  /**
   * The key set with a selection read in every phase instead of only after it is chosen: a near
   * miss (7.12) where no full refresh covers the steps before the choice.
   */
  readonly unphasedKeys?: Attend['keys'];
}

/**
 * Generator features that can be switched off, one per class of plans that once exposed a bug
 * (docs/fuzz.md, "Findings"): while a finding is open, CI turns its feature off in `ciFeatures`
 * with the finding's name; once it is fixed the feature goes back on.
 */
export interface GenOptions {
  /** Score arithmetic and score comparisons (`confidence - 0.01 * position`, `-entropy`). */
  readonly scoreArithmetic?: boolean;
  /** `threshold`/`factor` decoding, whose commit counts depend on model scores (F6, F9). */
  readonly dataDependentDecode?: boolean;
  /** `steps(n)` without `blocks`, whose commit schedule depends on the canvas length (F7). */
  readonly stepsWithoutBlocks?: boolean;
  /** A random decode `in` set, which may hold no masked row on a model's scores (F8). */
  readonly randomDecodeIn?: boolean;
  /** Wild edits: random changes that may or may not keep the plan well formed. */
  readonly wild?: boolean;
  /**
   * Phase filters, sets filtered by a step condition (`all[step < k] | kept[step >= k]`): the
   * SparseD family, phase-filter decorations of the other families, and in wild set expressions.
   */
  readonly phaseFilters?: boolean;
}

/** Every feature: what the long campaign runs by default. */
export const allFeatures: GenOptions = {
  scoreArithmetic: true,
  dataDependentDecode: true,
  stepsWithoutBlocks: true,
  randomDecodeIn: true,
  wild: true,
  phaseFilters: true,
};

/** What the CI properties run: every feature, as no finding is open. */
export const ciFeatures: GenOptions = allFeatures;

export const layersOf: Record<Preset, number> = { tiny: 2, small: 4 };

// ---------------------------------------------------------------------------------------------
// Text

const num = (x: number) => (Number.isInteger(x) ? `${x}.0` : String(x));

export function atomText(a: Atom): string {
  switch (a.k) {
    case 'block_start':
      return 'block_start';
    case 'every':
      return `every(${a.n})`;
    case 'step0':
      return 'step == 0';
    case 'bs_lt':
      return `block_step < ${a.n}`;
    case 'bs_eq':
      return `block_step == ${a.n}`;
    case 'false':
      return 'false';
    case 'true':
      return 'true';
    case 'cmp':
      return `${a.v} ${a.op} ${a.n}`;
    case 'dirty':
      return `dirty(${a.set}) >= ${a.r}`;
    case 'sim':
      return `attn_similarity(${a.layer}) < ${num(a.gamma)}`;
    case 'drift':
      return `after_drift(${num(a.gamma)})`;
  }
}

const condText = (c: readonly Atom[]) => (c.length === 0 ? 'false' : c.map(atomText).join(' or '));

/** A step condition's text; operands that are not a single word are parenthesized. */
export function phaseText(p: Phase): string {
  const operand = (q: Phase) => {
    const t = phaseText(q);
    return /^[a-z_]+(\([0-9]+\))?$/.test(t) ? t : `(${t})`;
  };
  switch (p.k) {
    case 'atom':
      return atomText(p.a);
    case 'not':
      return `not ${operand(p.p)}`;
    default:
      return `${operand(p.a)} ${p.k} ${operand(p.b)}`;
  }
}

const setOperand = (set: string) => (/^[a-z_]+$/.test(set) ? set : `(${set})`);

/** A set under a phase filter (section 3: `s[p]` with `p` a bool is `s` while `p` holds, else none). */
export function phasedText(set: string, f: PhaseFilter | undefined): string {
  if (!f) return set;
  const s = setOperand(set);
  const c = phaseText(f.cond);
  return f.mode === 'only' ? `${s}[${c}]` : `${s}[${c}] | ${s}[${phaseText({ k: 'not', p: f.cond })}]`;
}

function scopeText(s: Scope | undefined): string {
  if (!s) return '';
  if (s.k === 'eq') return ` on layer ${s.l}`;
  if (s.k === 'cmp') return ` on layers ${s.op} ${s.l}`;
  return ` on layers ${s.a}..${s.b}`;
}

export function planText(s: Spec, name = 'fuzz'): string {
  const lines: string[] = [];
  const params = s.block !== undefined && s.blockAsParam ? `block: int = ${s.block} in [1, 64]` : '';
  lines.push(`plan ${name}(${params}) {`);
  if (s.block !== undefined) lines.push(`  blocks ${s.blockAsParam ? 'block' : s.block}`);
  for (const r of s.refreshes)
    lines.push(`  refresh ${phasedText(r.set, r.phase)} when ${condText(r.when)}${scopeText(r.scope)}`);
  for (const x of s.selects)
    lines.push(
      `  select ${x.name} = ${phasedText(x.set, x.phase)} at ${condText(x.at)}${x.perKvHead ? ' per kv_head' : ''}`,
    );
  for (const c of s.computes) lines.push(`  compute ${phasedText(c.set, c.phase)}${scopeText(c.scope)}`);
  for (const c of s.caches) {
    const delay = c.delay === undefined ? '' : ` delay ${c.delay}`;
    lines.push(`  cache ${c.kinds.join(', ')} of ${phasedText(c.of, c.phase)}${delay}${scopeText(c.scope)}`);
  }
  if (s.attend) {
    const mask = s.attend.causal ? ' mask block_causal' : '';
    const k = s.attend.keys;
    if (typeof k === 'string') lines.push(`  attend ${phasedText(k, s.attend.phase)}${mask}`);
    else {
      const segs = k.map(
        (g) =>
          `    ${g.name} = ${phasedText(g.keys, g.phase)}${g.until ? ` reused until ${condText(g.until)}` : ''}`,
      );
      lines.push(`  attend split {\n${segs.join(',\n')}\n  } merge lse${mask}`);
    }
  }
  const d = s.decode;
  const inSet = d.in ? ` in ${phasedText(d.in, d.inPhase)}` : '';
  lines.push(`  decode ${d.rule}${d.by ? ` by ${d.by}` : ''}${inSet}${d.arShift ? ' ar_shift' : ''}`);
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// The static refresh schedule, for near-miss applicability and for telling data-dependent firings
// apart from scheduled ones.

/** Whether the atom holds at this step from the step counters alone (undefined: depends on data). */
export function staticAtom(a: Atom, step: number, blockStep: number): boolean | undefined {
  switch (a.k) {
    case 'block_start':
      return blockStep === 0;
    case 'every':
      return step % a.n === 0;
    case 'step0':
      return step === 0;
    case 'bs_lt':
      return blockStep < a.n;
    case 'bs_eq':
      return blockStep === a.n;
    case 'false':
      return false;
    case 'true':
      return true;
    case 'cmp': {
      if (a.v === 'block_index') return undefined;
      const x = a.v === 'step' ? step : blockStep;
      return arithmetic(a.op, x, a.n, true) === true;
    }
    default:
      return undefined;
  }
}

/** Whether a step condition holds at this step (undefined: it depends on more than the step counters). */
export function staticPhase(p: Phase, step: number, blockStep: number): boolean | undefined {
  if (p.k === 'atom') return staticAtom(p.a, step, blockStep);
  if (p.k === 'not') {
    const x = staticPhase(p.p, step, blockStep);
    return x === undefined ? undefined : !x;
  }
  const a = staticPhase(p.a, step, blockStep);
  const b = staticPhase(p.b, step, blockStep);
  if (p.k === 'and' && (a === false || b === false)) return false;
  if (p.k === 'or' && (a === true || b === true)) return true;
  if (a === undefined || b === undefined) return undefined;
  return p.k === 'and' ? a && b : p.k === 'or' ? a || b : p.k === '==' ? a === b : a !== b;
}

/** Whether the set of a refresh is all of it at this step: no phase filter, or one that holds. */
const phaseHolds = (f: PhaseFilter | undefined, step: number, blockStep: number): boolean =>
  !f || f.mode === 'split' || staticPhase(f.cond, step, blockStep) === true;

/** Whether a refresh of `all` on every layer is scheduled at this step, ignoring data-dependent atoms. */
export function scheduledFull(s: Spec, step: number, blockStep: number): boolean {
  return s.refreshes.some(
    (r) =>
      r.set === 'all' &&
      !r.scope &&
      phaseHolds(r.phase, step, blockStep) &&
      r.when.some((a) => staticAtom(a, step, blockStep)),
  );
}

export const hasDataRefresh = (s: Spec): boolean =>
  s.refreshes.some((r) => r.when.some((a) => a.k === 'dirty' || a.k === 'sim' || a.k === 'drift'));

/**
 * The checker's sample geometry (see `scenarios` in src/dsl/semantics/simulate.ts) with one commit
 * per step: whether some step t >= from is not a scheduled full refresh.
 */
function hasCachedStep(s: Spec, from = 1): boolean {
  const B = s.block ?? 24;
  const blocks = s.block === undefined ? 1 : B <= 8 ? 4 : B <= 64 ? 3 : 2;
  for (let t = from; t < B * blocks; t++) if (!scheduledFull(s, t, t % B)) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Pieces

const blockArb = fc.integer({ min: 2, max: 4 });

/**
 * Decode rules; `onePerStep` ones keep the checker's schedule predictable for near-misses.
 * `revocable`: the family recomputes every row of the current block (the default `in` set) at every
 * step and layer, so the rows a revoking rule remasks are never read from a stale cache.
 */
function decodeArb(
  block: number | undefined,
  o: GenOptions,
  inSet?: string,
  revocable = false,
): fc.Arbitrary<Decode> {
  const B = block ?? 6;
  const scores = ['confidence', 'margin', 'entropy', 'certainty(2.0)', 'maxpool(confidence, 3)'];
  if (o.scoreArithmetic) scores.push('confidence - 0.01 * position', '-entropy');
  type Rule = { rule: string; one: boolean };
  const rules: fc.Arbitrary<Rule>[] = [
    fc.constant({ rule: 'per_step(1)', one: true }),
    // 2 and 3 divide both the checker's canvas (24) and ours (6).
    fc.integer({ min: 2, max: 3 }).map((k) => ({ rule: `per_step(${k})`, one: false })),
  ];
  if (block !== undefined || o.stepsWithoutBlocks)
    rules.push(
      // Without blocks the checker's canvas is longer than ours, so only per_step(1) is one per step there.
      fc.integer({ min: B, max: B + 4 }).map((n) => ({ rule: `steps(${n})`, one: block !== undefined })),
      fc.integer({ min: 1, max: Math.max(1, B - 1) }).map((n) => ({ rule: `steps(${n})`, one: false })),
    );
  if (o.dataDependentDecode)
    rules.push(
      fc.constantFrom(0.05, 0.3, 0.9).map((t) => ({ rule: `threshold(${num(t)})`, one: false })),
      fc.constantFrom(0.5, 1.0, 3.0).map((f) => ({ rule: `factor(${num(f)})`, one: false })),
      // The decode rules of the methods after the seed twelve (issue 19).
      fc
        .tuple(fc.constantFrom(0.1, 0.5, 0.9), fc.integer({ min: 1, max: 2 }))
        .map(([g, k]) => ({ rule: `prophet(${num(g)}, ${k})`, one: false })),
      fc
        .tuple(fc.integer({ min: 0, max: 3 }), fc.constantFrom(0.3, 0.9))
        .map(([k, t]) => ({ rule: `slow_fast(${k}, ${num(t)})`, one: false })),
      fc
        .tuple(fc.constantFrom(0.5, 0.9), fc.constantFrom(0.1, 0.4), fc.integer({ min: 1, max: 3 }))
        .map(([t, n, r]) => ({ rule: `local_leap(${num(t)}, ${num(n)}, ${r})`, one: false })),
    );
  if (o.dataDependentDecode && revocable && inSet === undefined)
    rules.push(
      // Revocable decoding: takes back earlier commits short of the second bar.
      fc
        .tuple(fc.constantFrom(0.05, 0.3, 0.7), fc.constantFrom(0.5, 0.99))
        .map(([t, r]) => ({ rule: `wino(${num(t)}, ${num(r)})`, one: false })),
    );
  return fc
    .record({
      rule: fc.oneof(...rules),
      by: fc.option(fc.constantFrom(...scores), { nil: undefined }),
      arShift: fc.boolean(),
    })
    .map(({ rule, by, arShift }) => ({
      rule: rule.rule,
      ...(by ? { by } : {}),
      ...(inSet ? { in: inSet } : {}),
      arShift,
      onePerStep: rule.one,
    }));
}

const cmpOpArb = fc.constantFrom<CmpOp>('<', '<=', '>', '>=', '==', '!=');

/** Atoms of step conditions: the step counters compared with small ints, `block_start`, `every(n)`. */
const stepAtomArb = (withIndex: boolean): fc.Arbitrary<Atom> =>
  fc.oneof(
    fc.constant<Atom>({ k: 'block_start' }),
    fc.integer({ min: 1, max: 4 }).map((n): Atom => ({ k: 'every', n })),
    fc
      .tuple(
        fc.constantFrom<'step' | 'block_step' | 'block_index'>(
          'step',
          'block_step',
          ...(withIndex ? (['block_index'] as const) : []),
        ),
        cmpOpArb,
        fc.integer({ min: 0, max: 4 }),
      )
      .map(([v, op, n]): Atom => ({ k: 'cmp', v, op, n })),
  );

/**
 * Random step conditions for phase filters: atoms under `not`, `and`, `or` and bool `==`/`!=`.
 * Without `withIndex` they are static (`staticPhase` decides them from the step counters).
 */
export const phaseArb = (withIndex = true): fc.Arbitrary<Phase> =>
  fc.letrec<{ p: Phase }>((tie) => ({
    p: fc.oneof(
      { depthSize: 'small', maxDepth: 2, withCrossShrink: true },
      stepAtomArb(withIndex).map((a): Phase => ({ k: 'atom', a })),
      tie('p').map((p): Phase => ({ k: 'not', p })),
      fc
        .tuple(fc.constantFrom<'and' | 'or' | '==' | '!='>('and', 'or', '==', '!='), tie('p'), tie('p'))
        .map(([k, a, b]): Phase => ({ k, a, b })),
    ),
  })).p;

/** The same set in two phases: any step condition will do, `block_index` included. */
const splitArb = (): fc.Arbitrary<PhaseFilter> =>
  phaseArb().map((cond): PhaseFilter => ({ mode: 'split', cond }));

/** `arb` once in `1 + weight` draws, else undefined. */
const rarely = <T>(arb: fc.Arbitrary<T>, weight: number): fc.Arbitrary<T | undefined> =>
  fc.oneof({ arbitrary: fc.constant(undefined), weight }, { arbitrary: arb, weight: 1 });

/** Random set expressions over the builtin sets, for wild edits. */
const setExprArb = (o: GenOptions): fc.Arbitrary<string> =>
  fc.letrec<{ set: string }>((tie) => ({
    set: fc.oneof(
      { depthSize: 'small', maxDepth: 3 },
      fc.constantFrom(...canvasSets),
      fc
        .tuple(tie('set'), fc.constantFrom('|', '&', '-'), tie('set'))
        .map(([a, op, b]) => `(${a} ${op} ${b})`),
      fc
        .tuple(
          tie('set'),
          fc.oneof(
            fc.constantFrom(0.01, 0.02, 0.05).map((x) => `confidence > ${num(x)}`),
            fc.integer({ min: 0, max: 3 }).map((k) => `age >= ${k}`),
            fc.integer({ min: 3, max: 10 }).map((k) => `position < ${k}`),
            fc.constantFrom(0.5, 1.0).map((x) => `entropy < ${num(x)}`),
          ),
        )
        .map(([s, p]) => `(${s})[${p}]`),
      fc.tuple(tie('set'), fc.integer({ min: 0, max: 2 })).map(([s, r]) => `window(${s}, ${r})`),
      fc.tuple(tie('set'), fc.integer({ min: 1, max: 4 })).map(([s, n]) => `leftmost(${s}, ${n})`),
      fc
        .tuple(
          tie('set'),
          fc.constantFrom('confidence', 'position', 'rollout', 'margin'),
          fc.integer({ min: 1, max: 4 }),
        )
        .map(([s, sc, k]) => `topk(${s}, ${sc}, ${k})`),
      fc
        .tuple(tie('set'), fc.constantFrom('confidence', 'rollout'), fc.constantFrom(0.3, 0.6, 1.0))
        .map(([s, sc, p]) => `topp(${s}, ${sc}, ${num(p)})`),
      fc.tuple(tie('set'), fc.constantFrom(0.25, 0.5, 1.0)).map(([s, r]) => `keep(${s}, age, ${num(r)})`),
      // A phase, now and then: the set at the steps where a step condition holds, else nothing.
      ...(o.phaseFilters
        ? [fc.tuple(tie('set'), rarely(phaseArb(), 5)).map(([s, p]) => (p ? `(${s})[${phaseText(p)}]` : s))]
        : []),
    ),
  })).set;

const staticCondArb = (block: number | undefined): fc.Arbitrary<Atom[]> =>
  fc.array(
    fc.oneof(
      fc.constant<Atom>({ k: 'block_start' }),
      fc.integer({ min: 1, max: 4 }).map((n): Atom => ({ k: 'every', n })),
      fc.constant<Atom>({ k: 'step0' }),
      fc.integer({ min: 1, max: Math.max(1, (block ?? 6) - 1) }).map((n): Atom => ({ k: 'bs_lt', n })),
    ),
    { minLength: 1, maxLength: 2 },
  );

// ---------------------------------------------------------------------------------------------
// Families: each a well-formed pattern of section 6, with its knobs drawn at random

const presetArb = fc.constantFrom<Preset>('tiny', 'small');

const base = (family: string, preset: Preset) => ({
  family,
  preset,
  layers: layersOf[preset],
  blockAsParam: false,
  selects: [] as Select[],
  edits: [] as string[],
});

/** Everything recomputed: exact whatever else it says. */
const fullFamily = (o: GenOptions): fc.Arbitrary<Spec> =>
  fc
    .record({
      preset: presetArb,
      block: fc.option(blockArb, { nil: undefined }),
      param: fc.boolean(),
      split: fc.boolean(),
      causal: fc.boolean(),
      cache: fc.boolean(),
    })
    .chain((r) =>
      decodeArb(r.block, o, undefined, true).map(
        (decode): Spec => ({
          ...base('full', r.preset),
          ...(r.block === undefined ? {} : { block: r.block }),
          blockAsParam: r.param,
          refreshes: [],
          computes: r.cache ? [{ set: 'all' }] : [],
          caches: r.cache ? [{ kinds: ['kv'], of: 'all' }] : [],
          attend: {
            keys: r.split
              ? [
                  // Minus the current block: blocks counted from position 0 put prompt rows in it.
                  { name: 'outside', keys: '(prompt | before_block) - current_block' },
                  { name: 'inside', keys: 'current_block | after_block' },
                ]
              : 'all',
            causal: r.causal,
          },
          decode,
        }),
      ),
    );

/** Fast-dLLM dual / prefix cache and its block-causal v2 form. */
const blockFamily = (o: GenOptions): fc.Arbitrary<Spec> =>
  fc
    .record({
      preset: presetArb,
      block: blockArb,
      param: fc.boolean(),
      variant: fc.constantFrom('dual', 'prefix', 'v2'),
      extra: fc.option(
        fc.oneof(
          fc.integer({ min: 2, max: 4 }).map((n): Atom => ({ k: 'every', n })),
          fc.constant<Atom>({ k: 'bs_lt', n: 1 }),
        ),
        { nil: undefined },
      ),
      delay: fc.boolean(),
      splitCache: fc.boolean(),
    })
    .chain((r) =>
      decodeArb(r.block, o, undefined, true).map((decode): Spec => {
        const of = r.variant === 'dual' ? 'all' : 'prompt | before_block';
        // Delay 1 is safe for a prefix cache (rows decoded in the last step are written at the
        // block-start refresh) but not for a dual cache (masked rows after the block have age 0).
        const delay = r.delay && r.variant !== 'dual' ? 1 : undefined;
        const scoped = r.splitCache && r.preset === 'small';
        const caches: Cache[] = scoped
          ? [
              { kinds: ['kv'], of, ...(delay ? { delay } : {}), scope: { k: 'cmp', op: '<', l: 2 } },
              // `>= 2`, not `2..3`: the checker simulates more layers than the model has.
              { kinds: ['kv'], of, ...(delay ? { delay } : {}), scope: { k: 'cmp', op: '>=', l: 2 } },
            ]
          : [{ kinds: ['kv'], of, ...(delay ? { delay } : {}) }];
        return {
          ...base(r.variant, r.preset),
          block: r.block,
          blockAsParam: r.param,
          refreshes: [{ set: 'all', when: [{ k: 'block_start' }, ...(r.extra ? [r.extra] : [])] }],
          computes: [{ set: r.variant === 'prefix' ? 'current_block | after_block' : 'current_block' }],
          caches,
          attend: { keys: 'all', causal: r.variant === 'v2' },
          decode: { ...decode, in: 'current_block' },
        };
      }),
    );

/** dKV-Cache-Decode: recompute masked and just-decoded rows, cache the rest. */
const dkvFamily = (o: GenOptions): fc.Arbitrary<Spec> =>
  fc
    .record({
      preset: presetArb,
      block: fc.option(blockArb, { nil: undefined }),
      when: fc.oneof(
        fc.integer({ min: 2, max: 5 }).map((n): Atom[] => [
          { k: 'every', n },
          { k: 'bs_lt', n: 2 },
        ]),
        fc.constant<Atom[]>([{ k: 'step0' }]),
        fc.constant<Atom[]>([{ k: 'block_start' }]),
      ),
      cacheOf: fc.constantFrom('prompt | decoded', 'all', 'all delay 1'),
    })
    .chain((r) =>
      decodeArb(r.block, o).map(
        (decode): Spec => ({
          ...base('dkv', r.preset),
          ...(r.block === undefined ? {} : { block: r.block }),
          refreshes: [{ set: 'all', when: r.when }],
          computes: [{ set: 'masked | newly_decoded' }],
          caches: [
            r.cacheOf === 'all delay 1'
              ? { kinds: ['kv'], of: 'all', delay: 1 }
              : { kinds: ['kv'], of: r.cacheOf },
          ],
          attend: { keys: 'all', causal: false },
          decode,
        }),
      ),
    );

/**
 * Elastic-Cache: a window of masks, with an attention-similarity refresh of the deeper layers and/or
 * a dirty-count refresh. One commit per step, so that a generation has enough steps for these
 * data-dependent rules to both fire and not fire.
 */
const elasticFamily = (): fc.Arbitrary<Spec> =>
  fc
    .record({
      preset: presetArb,
      w: fc.integer({ min: 1, max: 3 }),
      probe: fc.integer({ min: 0, max: 2 }),
      gamma: fc.constantFrom(0.9, 0.99, 0.999, 0.9999),
      rules: fc.constantFrom('sim', 'adaptive', 'dirty', 'both'),
      dirty: fc.integer({ min: 2, max: 3 }),
      dirtySet: fc.constantFrom('generated', 'current_block'),
      hidden: fc.constantFrom<Cache['kinds']>(['kv', 'hidden'], ['kv', 'attn', 'ffn']),
      decodeIn: fc.boolean(),
      by: fc.constantFrom('confidence', 'margin', 'entropy'),
    })
    .map((r): Spec => {
      const layers = layersOf[r.preset];
      const probe = Math.min(r.probe, layers - 2);
      const refreshes: Refresh[] = [{ set: 'all', when: [{ k: 'step0' }] }];
      if (r.rules === 'sim' || r.rules === 'both')
        refreshes.push({
          set: 'all',
          when: [{ k: 'sim', layer: probe, gamma: r.gamma }],
          scope: { k: 'cmp', op: '>', l: probe },
        });
      // Elastic-Cache's adaptive boundary: every layer above the first whose attention drifted.
      if (r.rules === 'adaptive') refreshes.push({ set: 'all', when: [{ k: 'drift', gamma: r.gamma }] });
      if (r.rules === 'dirty' || r.rules === 'both')
        refreshes.push({ set: 'all', when: [{ k: 'dirty', set: r.dirtySet, r: r.dirty }] });
      return {
        ...base('elastic', r.preset),
        refreshes,
        computes: [{ set: `leftmost(masked, ${r.w}) | newly_decoded` }],
        caches: [{ kinds: r.hidden, of: 'all' }],
        attend: { keys: 'all', causal: false },
        decode: {
          rule: 'per_step(1)',
          by: r.by,
          ...(r.decodeIn ? { in: `leftmost(masked, ${r.w})` } : {}),
          arShift: false,
          onePerStep: true,
        },
      };
    });

/**
 * Streaming-dLLM: a window that slides with the decoding frontier, each position computed when it
 * enters (`uncached`), the suffix beyond it dropped, everything attended refreshed every `period`.
 */
const streamingFamily = (): fc.Arbitrary<Spec> =>
  fc
    .record({
      preset: presetArb,
      active: fc.integer({ min: 1, max: 2 }),
      ahead: fc.integer({ min: 0, max: 3 }),
      period: fc.option(fc.integer({ min: 2, max: 4 }), { nil: undefined }),
      rule: fc.constantFrom('per_step(1)', 'threshold(0.3)'),
      by: fc.constantFrom('confidence', 'margin', 'entropy'),
    })
    .map((r): Spec => {
      const active = `leftmost(masked, ${r.active})`;
      const keys = `prompt | decoded | leftmost(masked, ${r.active + r.ahead})`;
      return {
        ...base('streaming', r.preset),
        refreshes: r.period === undefined ? [] : [{ set: `(${keys})`, when: [{ k: 'every', n: r.period }] }],
        computes: [{ set: `${active} | newly_decoded | (${keys}) & uncached` }],
        caches: [{ kinds: ['kv'], of: 'all' }],
        attend: { keys, causal: false },
        decode: { rule: r.rule, by: r.by, in: active, arShift: false, onePerStep: r.rule === 'per_step(1)' },
      };
    });

/** FlashBlock: the block-external partial reused until enough of the block changed. */
const flashFamily = (o: GenOptions): fc.Arbitrary<Spec> =>
  fc
    .record({
      preset: presetArb,
      block: blockArb,
      r: fc.integer({ min: 1, max: 3 }),
      variant: fc.constantFrom('a', 'b'),
      causal: fc.boolean(),
    })
    .chain((r) =>
      decodeArb(r.block, o).map((decode): Spec => {
        const until: Atom[] = [
          { k: 'dirty', set: 'current_block', r: Math.min(r.r, r.block - 1) },
          { k: 'block_start' },
        ];
        // Variant a refreshes at every block start; variant b only at step 0, so the reuse
        // condition's `or block_start` is what recomputes the partial for a new block.
        const a = r.variant === 'a';
        // Segments must not overlap, so just-decoded rows of the previous block are queries only.
        const own = a ? 'current_block' : 'current_block | newly_decoded';
        const segments: Segment[] = [
          { name: 'external', keys: '(prompt | before_block) - current_block', until },
          { name: 'internal', keys: 'current_block' },
          ...(r.causal ? [] : [{ name: 'later', keys: 'after_block' }]),
        ];
        return {
          ...base(`flash-${r.variant}`, r.preset),
          block: r.block,
          refreshes: [{ set: 'all', when: [a ? { k: 'block_start' } : { k: 'step0' }] }],
          computes: [{ set: own }],
          caches: [{ kinds: ['kv'], of: a && r.causal ? 'prompt | before_block' : 'all' }],
          attend: { keys: segments, causal: r.causal },
          decode: { ...decode, in: 'current_block' },
        };
      }),
    );

/** MAGE / Sparse-dLLM: a sparse key set chosen at a refresh step and reused within the block. */
const selectFamily = (o: GenOptions): fc.Arbitrary<Spec> =>
  fc
    .record({
      preset: presetArb,
      block: fc.integer({ min: 3, max: 4 }),
      late: fc.boolean(),
      pick: fc.constantFrom('topk', 'keep', 'topp'),
      score: fc.constantFrom(
        'attention_mass(current_block)',
        'query_key(current_block)',
        'maxpool(query_key(current_block), 3)',
        'confidence',
        'rollout',
        'position',
      ),
      universe: fc.constantFrom('prompt | before_block', 'prompt | before_block | after_block'),
      causal: fc.boolean(),
      split: fc.boolean(),
      perKvHead: fc.boolean(),
    })
    .chain((r) =>
      decodeArb(r.block, o).map((decode): Spec => {
        const arg = r.pick === 'topk' ? '2' : r.pick === 'keep' ? '0.5' : '0.6';
        const split = r.split;
        return {
          ...base('select', r.preset),
          block: r.block,
          refreshes: [{ set: 'all', when: [r.late ? { k: 'bs_lt', n: 2 } : { k: 'block_start' }] }],
          selects: [
            {
              name: 'u',
              set: `${r.pick}(${r.universe}, ${r.score}, ${arg})`,
              at: [r.late ? { k: 'bs_eq', n: 1 } : { k: 'block_start' }],
              perKvHead: r.perKvHead && !split,
            },
          ],
          computes: [{ set: 'current_block' }],
          caches: [{ kinds: ['kv'], of: 'all' }],
          attend: {
            keys: split
              ? [
                  { name: 'chosen', keys: 'u - current_block' },
                  { name: 'own', keys: 'current_block' },
                ]
              : 'u | current_block',
            causal: r.causal,
          },
          decode: { ...decode, in: 'current_block' },
        };
      }),
    );

/** dLLM-Cache: per-layer recompute of the rows whose values drift most. */
const dllmCacheFamily = (o: GenOptions): fc.Arbitrary<Spec> =>
  fc
    .record({
      kp: fc.integer({ min: 2, max: 6 }),
      kr: fc.integer({ min: 2, max: 4 }),
      rho: fc.constantFrom(0.25, 0.5),
      score: fc.constantFrom('value_drift', 'key_drift', 'hidden_drift', 'confidence'),
      // ES-dLLM: the score measured once, at the first layer of the ranked range (`measured_at`).
      pinned: fc.constantFrom(undefined, 1, 2),
      preset: presetArb,
    })
    .chain((r) =>
      decodeArb(undefined, o).map(
        (decode): Spec => ({
          ...base('dllm-cache', r.preset),
          refreshes: [
            { set: 'prompt', when: [{ k: 'every', n: r.kp }] },
            { set: 'generated', when: [{ k: 'every', n: r.kr }] },
          ],
          computes: [
            { set: 'all', scope: { k: 'cmp', op: '<', l: r.pinned ?? 1 } },
            {
              set: `keep(generated, ${r.pinned === undefined ? r.score : `measured_at(${r.score}, ${r.pinned})`}, ${num(r.rho)}) | newly_decoded`,
              scope: { k: 'cmp', op: '>=', l: r.pinned ?? 1 },
            },
          ],
          // The hidden-state drift compares with the hidden cache of the layer below.
          caches: [
            {
              kinds: r.score === 'hidden_drift' ? ['kv', 'attn', 'ffn', 'hidden'] : ['kv', 'attn', 'ffn'],
              of: 'all',
            },
          ],
          attend: { keys: 'all', causal: false },
          decode,
        }),
      ),
    );

/** d2Cache and dKV-Cache-Greedy: compute sets picked by score or by a fixed decode order. */
const scoredFamily = (o: GenOptions): fc.Arbitrary<Spec> =>
  fc
    .record({
      preset: presetArb,
      greedy: fc.boolean(),
      k: fc.integer({ min: 1, max: 3 }),
      w: fc.integer({ min: 0, max: 2 }),
      p: fc.constantFrom(0.1, 0.3),
    })
    .chain((r) =>
      decodeArb(undefined, o).map(
        (decode): Spec =>
          r.greedy
            ? {
                ...base('greedy', r.preset),
                refreshes: [{ set: 'all', when: [{ k: 'every', n: 2 }] }],
                computes: [
                  { set: `targets | newly_decoded | next_targets | window(next_targets, ${r.w}) & masked` },
                ],
                caches: [{ kinds: ['kv'], of: 'all' }],
                attend: { keys: 'all', causal: false },
                decode: {
                  rule: `per_step(${r.k})`,
                  by: 'random',
                  arShift: decode.arShift,
                  onePerStep: r.k === 1,
                },
              }
            : {
                ...base('d2cache', r.preset),
                refreshes: [{ set: 'all', when: [{ k: 'step0' }] }],
                computes: [
                  {
                    set: `topk(masked, certainty(2.0), ${r.k}) | newly_decoded | topp(decoded | prompt, rollout, ${num(r.p)})`,
                  },
                ],
                caches: [{ kinds: ['kv'], of: 'all' }],
                attend: { keys: 'all', causal: false },
                decode: { ...decode, by: 'certainty(2.0)' },
              },
      ),
    );

const atomPhase = (a: Atom): Phase => ({ k: 'atom', a });
const stepCmp = (op: CmpOp, n: number): Atom => ({ k: 'cmp', v: 'step', op, n });
const only = (cond: Phase): PhaseFilter => ({ mode: 'only', cond });
/** The disjunction of a refresh's atoms, as a step condition. */
const anyOf = (atoms: readonly Atom[]): Phase =>
  atoms.map(atomPhase).reduce((a, b): Phase => ({ k: 'or', a, b }));

/**
 * SparseD (examples/sparsed.kvp): every key for the first steps, then a selection chosen once, at
 * the end of step c, and read only after it: the phases are filters by a step condition
 * (`all[step <= c] | (kept | current_block)[step > c]`). Every row is computed, with the steps up
 * to c full refreshes or not; or a Sparse-dLLM-like cached form that recomputes the block only and
 * refreshes at block starts and up to the choice.
 */
const sparsedFamily = (o: GenOptions): fc.Arbitrary<Spec> =>
  fc
    .record({
      preset: presetArb,
      block: blockArb,
      param: fc.boolean(),
      c: fc.integer({ min: 0, max: 2 }),
      // How the phases are written: `step <= c` / `step > c`, `step < c + 1` / `step >= c + 1`, `not`.
      form: fc.constantFrom('le', 'lt', 'not'),
      ownInPhase: fc.boolean(),
      refresh: fc.constantFrom('none', 'phase', 'cached'),
      pick: fc.constantFrom('isolated', 'keep', 'topk'),
      score: fc.constantFrom(
        'attention_mass(masked)',
        'attention_mass(current_block)',
        'query_key(current_block)',
        'confidence',
        'position',
      ),
      ratio: fc.constantFrom(0.3, 0.5),
      split: fc.boolean(),
      causal: fc.boolean(),
      // The selection's set filtered by its own choice condition.
      phasedSet: fc.boolean(),
      perKvHead: fc.boolean(),
    })
    .chain((r) =>
      decodeArb(r.block, o).map((decode): Spec => {
        const c = r.c;
        const [before, after]: [Phase, Phase] =
          r.form === 'le'
            ? [atomPhase(stepCmp('<=', c)), atomPhase(stepCmp('>', c))]
            : r.form === 'lt'
              ? [atomPhase(stepCmp('<', c + 1)), atomPhase(stepCmp('>=', c + 1))]
              : [{ k: 'not', p: atomPhase(stepCmp('>', c)) }, atomPhase(stepCmp('>', c))];
        const early = `all[${phaseText(before)}]`;
        const late = phaseText(after);
        const kept =
          r.pick === 'isolated'
            ? `keep(prompt, ${r.score}, ${num(r.ratio)}) | keep(generated, ${r.score}, ${num(r.ratio)})`
            : r.pick === 'keep'
              ? `keep(all, ${r.score}, ${num(r.ratio)})`
              : `topk(all, ${r.score}, 2)`;
        // Segments are disjoint at every step: the early phase in one, the late one in two.
        const keys: Attend['keys'] = r.split
          ? [
              { name: 'early', keys: 'all', phase: only(before) },
              { name: 'sparse', keys: 'kept - current_block', phase: only(after) },
              { name: 'own', keys: 'current_block', phase: only(after) },
            ]
          : r.ownInPhase
            ? `${early} | (kept | current_block)[${late}]`
            : `${early} | kept[${late}] | current_block`;
        const cached = r.refresh === 'cached';
        return {
          ...base('sparsed', r.preset),
          block: r.block,
          blockAsParam: r.param,
          refreshes:
            r.refresh === 'none'
              ? []
              : [
                  {
                    set: 'all',
                    when: [stepCmp('<=', c), ...(cached ? [{ k: 'block_start' } as const] : [])],
                  },
                ],
          selects: [
            {
              name: 'kept',
              set: kept,
              at: [stepCmp('==', c)],
              ...(r.phasedSet ? { phase: only(atomPhase(stepCmp('==', c))) } : {}),
              perKvHead: r.perKvHead && !r.split,
            },
          ],
          computes: [{ set: cached ? 'current_block' : 'all' }],
          caches: cached ? [{ kinds: ['kv'], of: 'all' }] : [],
          attend: { keys, causal: r.causal },
          decode: { ...decode, in: 'current_block' },
          ...(r.split ? {} : { unphasedKeys: `${early} | kept | current_block` }),
        };
      }),
    );

/** Families whose every-block-start refresh of `all` writes every K/V entry that later steps read. */
const blockStartWrites = new Set(['dual', 'prefix', 'v2', 'flash-a', 'select']);

const at = <T>(xs: readonly T[], i: number, f: (x: T) => T): T[] => xs.map((x, j) => (j === i ? f(x) : x));

/** A phase filter on an element that has none yet (a second one would replace the first). */
const withPhase = <T extends { readonly phase?: PhaseFilter }>(x: T, phase: PhaseFilter): T =>
  x.phase ? x : { ...x, phase };

/**
 * Phase filters that keep a family plan well formed, and its near misses sure to break their rule:
 * the same set written as two phases (`S[c] | S[not c]`) wherever a set appears, and real phases
 * where the pattern allows them — rows not computed at steps where a full refresh computes every
 * row anyway, a refresh written as `S[c] when true`, K/V written only at the block-start refresh
 * that every later read is served from, a selection's keys read only after it is chosen, a
 * selection's set filtered by its own choice condition.
 */
function phaseDecorations(s: Spec): fc.Arbitrary<[string, Edit]>[] {
  // By place, so that each place a set appears in is decorated as often.
  const byPlace = new Map<SetPlace, fc.Arbitrary<[string, Edit]>[]>();
  const add = (place: SetPlace, arb: fc.Arbitrary<[string, Edit]>) =>
    byPlace.set(place, [...(byPlace.get(place) ?? []), arb]);
  const index = (xs: readonly unknown[]) => fc.nat(xs.length - 1);
  const isStatic = (a: Atom) => staticAtom(a, 0, 0) !== undefined;
  const attend = s.attend;
  // The same set written as two phases, in each list of statements that has one.
  const split = <K extends 'computes' | 'refreshes' | 'caches' | 'selects'>(
    place: SetPlace,
    key: K,
    label: string,
  ) => {
    if (s[key].length === 0) return;
    add(
      place,
      fc.tuple(index(s[key]), splitArb()).map(([i, f]): [string, Edit] => [
        label,
        (x) => ({
          ...x,
          [key]: at(x[key] as readonly { readonly phase?: PhaseFilter }[], i, (c) => withPhase(c, f)),
        }),
      ]),
    );
  };
  split('compute', 'computes', 'split compute');
  split('refresh', 'refreshes', 'split refresh');
  split('cache', 'caches', 'split cache');
  split('select', 'selects', 'split select');
  if (attend && typeof attend.keys === 'string')
    add(
      'attend',
      splitArb().map((f): [string, Edit] => [
        'split keys',
        (x) => ({ ...x, attend: x.attend && withPhase(x.attend, f) }),
      ]),
    );
  const segments = segmentsOf(s);
  if (segments.length > 0)
    add(
      'segment',
      fc.tuple(index(segments), splitArb()).map(([i, f]): [string, Edit] => [
        'split segment',
        (x) => ({
          ...x,
          attend: x.attend && { ...x.attend, keys: at(segmentsOf(x), i, (g) => withPhase(g, f)) },
        }),
      ]),
    );
  // Without `in`, the candidates are the masked rows of `current_block` (section 5, `decode`).
  add(
    'decode in',
    splitArb().map((f): [string, Edit] => [
      'split decode in',
      (x) => ({
        ...x,
        decode: x.decode.inPhase ? x.decode : { ...x.decode, in: x.decode.in ?? 'current_block', inPhase: f },
      }),
    ]),
  );

  // Compute sets are not read where a full refresh of every layer recomputes every row.
  const full = s.refreshes.find((r) => r.set === 'all' && !r.scope && !r.phase && r.when.some(isStatic));
  if (full && s.computes.length > 0)
    add(
      'compute',
      fc.constantFrom(...full.when.filter(isStatic)).map((a): [string, Edit] => [
        'compute off at full refreshes',
        (x) => ({
          ...x,
          computes: x.computes.map((c) => withPhase(c, only({ k: 'not', p: atomPhase(a) }))),
        }),
      ]),
    );
  // `refresh S when c` is `refresh S[c] when true`, or `refresh S[c] when c`.
  const staticRefreshes = s.refreshes.flatMap((r, i) => (!r.phase && r.when.every(isStatic) ? [i] : []));
  if (staticRefreshes.length > 0)
    add(
      'refresh',
      fc.tuple(fc.constantFrom(...staticRefreshes), fc.boolean()).map(([i, always]): [string, Edit] => [
        'refresh set in its phase',
        (x) => ({
          ...x,
          refreshes: at(x.refreshes, i, (r) =>
            r.phase ? r : { ...r, phase: only(anyOf(r.when)), when: always ? [{ k: 'true' }] : r.when },
          ),
        }),
      ]),
    );
  // K/V entries read at later steps of a block are the ones its block-start refresh wrote.
  const blockStart = s.refreshes.some(
    (r) => r.set === 'all' && !r.scope && r.when.some((a) => a.k === 'block_start'),
  );
  if ((blockStartWrites.has(s.family) || (s.family === 'sparsed' && blockStart)) && s.caches.length > 0)
    add(
      'cache',
      fc.constant<[string, Edit]>([
        'cache written at block starts',
        (x) => ({ ...x, caches: x.caches.map((c) => withPhase(c, only(atomPhase({ k: 'block_start' })))) }),
      ]),
    );
  // A selection's set, filtered by its own choice condition.
  const chosenAt = s.selects.flatMap((x, i) =>
    !x.phase && x.at.length === 1 && x.at.every(isStatic) ? [i] : [],
  );
  if (chosenAt.length > 0)
    add(
      'select',
      fc
        .constantFrom(...chosenAt)
        .map((i): [string, Edit] => [
          'select set in its phase',
          (x) => ({ ...x, selects: at(x.selects, i, (c) => withPhase(c, only(anyOf(c.at)))) }),
        ]),
    );
  // MAGE / Sparse-dLLM: every key at the refresh steps of a block, the selection after them.
  if (s.family === 'select' && attend) {
    const late = s.refreshes[0]?.when[0]?.k === 'bs_lt';
    const phaseArbs = fc
      .integer({ min: 1, max: late ? 2 : 1 })
      .map((r): [Phase, Phase] => [
        atomPhase({ k: 'cmp', v: 'block_step', op: '<', n: r }),
        atomPhase({ k: 'cmp', v: 'block_step', op: '>=', n: r }),
      ]);
    add(
      typeof attend.keys === 'string' ? 'attend' : 'segment',
      phaseArbs.map(([before, after]): [string, Edit] => [
        'selection read after its choice',
        (x) => {
          const keys = x.attend?.keys;
          if (!x.attend || keys === undefined) return x;
          return {
            ...x,
            attend: {
              ...x.attend,
              keys:
                typeof keys === 'string'
                  ? `all[${phaseText(before)}] | (${keys})[${phaseText(after)}]`
                  : keys.map((g) => (g.name === 'chosen' ? withPhase(g, only(after)) : g)),
            },
          };
        },
      ]),
    );
  }
  return [...byPlace.values()].map((arbs) => fc.oneof(...arbs));
}

/** Phase decorations of two places of a family plan (one where only one applies, none where none does). */
const decorate = (s: Spec): fc.Arbitrary<Spec> => {
  const decorations = phaseDecorations(s);
  if (decorations.length === 0) return fc.constant(s);
  const n = Math.min(2, decorations.length);
  return fc
    .shuffledSubarray(decorations, { minLength: n, maxLength: n })
    .chain((picked) => fc.tuple(...picked))
    .map((edits) =>
      edits.reduce((acc, [name, edit]) => {
        const next = edit(acc);
        // A decoration that met a phase filter already there changes nothing.
        return planText(next) === planText(acc) ? acc : { ...next, phases: [...(acc.phases ?? []), name] };
      }, s),
    );
};

/** Plans built from the patterns of docs/language.md section 6, meant to be accepted. */
export const familySpecArb = (o: GenOptions = {}): fc.Arbitrary<Spec> => {
  const families = [
    fullFamily(o),
    blockFamily(o),
    dkvFamily(o),
    elasticFamily(),
    flashFamily(o),
    selectFamily(o),
    dllmCacheFamily(o),
    scoredFamily(o),
    streamingFamily(),
  ];
  if (!o.phaseFilters) return fc.oneof(...families);
  // Phase filters in about one plan in six: SparseD plans, and family plans with two places decorated.
  return fc
    .oneof(...families.map((arbitrary) => ({ arbitrary, weight: 2 })), {
      arbitrary: sparsedFamily(o),
      weight: 1,
    })
    .chain((s) => fc.oneof({ arbitrary: fc.constant(s), weight: 9 }, { arbitrary: decorate(s), weight: 1 }));
};

// ---------------------------------------------------------------------------------------------
// Wild edits: random changes whose effect on well-formedness is unknown; whatever the checker
// accepts must still verify.

const scopeArb = (layers: number): fc.Arbitrary<Scope> =>
  fc.oneof(
    fc.integer({ min: 0, max: layers - 1 }).map((l): Scope => ({ k: 'eq', l })),
    fc
      .tuple(
        fc.constantFrom<'<' | '<=' | '>' | '>='>('<', '<=', '>', '>='),
        fc.integer({ min: 0, max: layers - 1 }),
      )
      .map(([op, l]): Scope => ({ k: 'cmp', op, l })),
    fc
      .tuple(fc.integer({ min: 0, max: layers - 1 }), fc.integer({ min: 0, max: layers - 1 }))
      .map(([a, b]): Scope => ({ k: 'range', a: Math.min(a, b), b: Math.max(a, b) })),
  );

type Edit = (s: Spec) => Spec;

const editArb = (s: Spec, o: GenOptions): fc.Arbitrary<[string, Edit]> => {
  const L = s.layers;
  const setExpr = setExprArb(o);
  return fc.oneof(
    setExpr.map((set): [string, Edit] => [`compute ${set}`, (x) => ({ ...x, computes: [{ set }] })]),
    fc
      .tuple(setExpr, scopeArb(L))
      .map(([set, scope]): [string, Edit] => [
        `compute scoped`,
        (x) => ({ ...x, computes: [...x.computes.filter((c) => c.scope), { set, scope }] }),
      ]),
    fc
      .tuple(
        fc.constantFrom('all', 'prompt', 'generated', 'current_block', 'masked'),
        staticCondArb(s.block),
        fc.option(scopeArb(L), { nil: undefined }),
        o.phaseFilters ? rarely(phaseArb(false), 3) : fc.constant(undefined),
      )
      .map(([set, when, scope, cond]): [string, Edit] => [
        'add refresh',
        (x) => ({
          ...x,
          refreshes: [
            ...x.refreshes,
            { set, when, ...(scope ? { scope } : {}), ...(cond ? { phase: { mode: 'only', cond } } : {}) },
          ],
        }),
      ]),
    fc
      .tuple(fc.integer({ min: 0, max: Math.max(0, L - 2) }), fc.constantFrom(0.9, 0.99, 0.999))
      .map(([l, gamma]): [string, Edit] => [
        'add similarity refresh',
        (x) => ({
          ...x,
          refreshes: [
            ...x.refreshes,
            { set: 'all', when: [{ k: 'sim', layer: l, gamma }], scope: { k: 'cmp', op: '>', l } },
          ],
        }),
      ]),
    fc
      .tuple(fc.constantFrom('current_block', 'generated', 'masked'), fc.integer({ min: 1, max: 3 }))
      .map(([set, r]): [string, Edit] => [
        'add dirty refresh',
        (x) => ({ ...x, refreshes: [...x.refreshes, { set: 'all', when: [{ k: 'dirty', set, r }] }] }),
      ]),
    fc
      .tuple(
        fc.subarray(['kv', 'attn', 'ffn', 'hidden'] as const, { minLength: 1 }),
        setExpr,
        fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined }),
        fc.option(scopeArb(L), { nil: undefined }),
      )
      .map(([kinds, of, delay, scope]): [string, Edit] => [
        'add cache',
        (x) => ({
          ...x,
          caches: [
            ...x.caches,
            { kinds, of, ...(delay === undefined ? {} : { delay }), ...(scope ? { scope } : {}) },
          ],
        }),
      ]),
    fc
      .integer({ min: 0, max: 2 })
      .map((d): [string, Edit] => [
        `delay ${d}`,
        (x) => ({ ...x, caches: x.caches.map((c) => ({ ...c, delay: d })) }),
      ]),
    fc
      .tuple(setExpr, fc.boolean())
      .map(([keys, causal]): [string, Edit] => ['attend', (x) => ({ ...x, attend: { keys, causal } })]),
    decodeArb(s.block, o, undefined).chain((d) =>
      (o.randomDecodeIn ? fc.option(setExpr, { nil: undefined }) : fc.constant(undefined)).map(
        (inSet): [string, Edit] => [
          'decode',
          (x) => ({ ...x, decode: { ...d, ...(inSet ? { in: inSet } : {}) } }),
        ],
      ),
    ),
  );
};

/** A family plan, sometimes with wild edits on top. */
export const specArb = (o: GenOptions = {}): fc.Arbitrary<Spec> =>
  familySpecArb(o).chain((s) =>
    o.wild === false
      ? fc.constant(s)
      : fc
          .array(editArb(s, o), { maxLength: 2 })
          .map((edits) =>
            edits.reduce((acc, [name, edit]) => ({ ...edit(acc), edits: [...acc.edits, name] }), s),
          ),
  );

// ---------------------------------------------------------------------------------------------
// Near misses: one mutation that breaks one rule of section 7, applied where it is sure to

export interface NearMiss {
  readonly mutation: string;
  /** The section 7 rule the mutation breaks. */
  readonly rule: string;
  readonly spec: Spec;
}

const onlyBlockStart = (s: Spec) =>
  s.refreshes.length === 1 &&
  s.refreshes[0]?.when.length === 1 &&
  s.refreshes[0].when[0]?.k === 'block_start';

const segmentsOf = (s: Spec): readonly Segment[] =>
  Array.isArray(s.attend?.keys) ? (s.attend.keys as readonly Segment[]) : [];

/**
 * Whether a select plan reads its selection at some step: 'selection read after its choice'
 * reads it only from block step r on, which a block decoded in r steps or fewer never reaches
 * (`steps(2)` with the selection read from block step 2 reads it never, and needs no refresh).
 */
function selectionRead(s: Spec): boolean {
  const phased = (p: PhaseFilter | undefined) =>
    p?.cond.k === 'atom' && p.cond.a.k === 'cmp' && p.cond.a.v === 'block_step' && p.cond.a.op === '>='
      ? p.cond.a.n
      : 0;
  const keys = s.attend?.keys;
  const from =
    typeof keys === 'string'
      ? Number(/\[block_step >= (\d+)\]/.exec(keys)?.[1] ?? 0)
      : phased(segmentsOf(s).find((g) => g.name === 'chosen')?.phase);
  if (from === 0 || s.block === undefined) return true;
  const steps = /^steps\((\d+)\)$/.exec(s.decode.rule);
  const per = /^per_step\((\d+)\)$/.exec(s.decode.rule);
  // The most steps a block can take: one row a step, fewer steps under steps(n) and per_step(k)
  // (a mutation is only added where it is sure to break the rule, so this errs low).
  const most = Math.min(
    s.block,
    steps ? Number(steps[1]) : per ? Math.ceil(s.block / Number(per[1])) : s.block,
  );
  return most > from;
}

/** Every near miss that applies to a family plan (without wild edits). */
export function nearMisses(s: Spec): NearMiss[] {
  const out: NearMiss[] = [];
  const f = s.family;
  const add = (mutation: string, rule: string, spec: Spec) => out.push({ mutation, rule, spec });
  const noDirty = !s.refreshes.some((r) => r.when.some((a) => a.k === 'dirty'));

  // Nothing is cached before step 0, and every one of these families reads prompt keys it does not
  // compute (a streaming plan computes every key it reads uncached, without a refresh or a cache).
  if (
    f !== 'full' &&
    f !== 'd2cache' &&
    f !== 'streaming' &&
    !(f === 'sparsed' && s.caches.length === 0) &&
    !(f === 'select' && !selectionRead(s))
  )
    add('drop every refresh', '7.10 no refresh at step 0', { ...s, refreshes: [] });

  // A cached step reads prompt keys outside R; the schedule guarantees such a step (a SparseD
  // selection may happen to lie in the current block).
  if (
    f !== 'full' &&
    f !== 'sparsed' &&
    f !== 'streaming' &&
    s.decode.onePerStep &&
    noDirty &&
    hasCachedStep(s)
  )
    add('drop the kv cache', '7.10 reads not covered', {
      ...s,
      caches: s.caches
        .map((c) => ({ ...c, kinds: c.kinds.filter((k) => k !== 'kv') }))
        .filter((c) => c.kinds.length > 0),
    });

  // Without `uncached` (and without a refresh at step 0) the prompt's keys are read and never computed.
  if (f === 'streaming' && s.refreshes.length === 0)
    add('compute drops the uncached keys', '7.10 reads not covered', {
      ...s,
      computes: s.computes.map((c) => ({ ...c, set: c.set.replace(/ \| \(.*\) & uncached$/, '') })),
    });

  if ((f === 'dkv' || f === 'greedy') && s.decode.onePerStep && noDirty && hasCachedStep(s))
    add('compute drops newly_decoded', '7.10 stale after decode', {
      ...s,
      computes: [
        { set: f === 'dkv' ? 'masked' : (s.computes[0]?.set.replace('newly_decoded | ', '') ?? 'masked') },
      ],
    });

  if (f === 'dual' && s.decode.onePerStep)
    add('delay 1 on a dual cache', '7.10 masked rows after the block never written', {
      ...s,
      caches: s.caches.map((c) => ({ ...c, delay: 1 })),
    });

  if ((f === 'prefix' || f === 'v2') && s.decode.onePerStep && onlyBlockStart(s))
    add('delay 2 on a prefix cache', '7.10 rows decoded in the last step never written', {
      ...s,
      caches: s.caches.map((c) => ({ ...c, delay: 2 })),
    });

  if (f === 'dkv' && s.decode.onePerStep && hasCachedStep(s, 2) && s.caches[0]?.of !== 'all')
    add('delay 2 on a decoded-row cache', '7.10 just-decoded rows never written', {
      ...s,
      caches: s.caches.map((c) => ({ ...c, delay: 2 })),
    });

  if (f === 'flash-b' && s.decode.onePerStep)
    add('drop `or block_start` from the reuse condition', '7.11 reused partial never computed', {
      ...s,
      attend: {
        causal: s.attend?.causal ?? false,
        keys: segmentsOf(s).map((g) =>
          g.until ? { ...g, until: g.until.filter((a) => a.k !== 'block_start') } : g,
        ),
      },
    });

  if (f === 'select' && s.decode.onePerStep && selectionRead(s))
    add('never choose the selection', '7.12 selection read before chosen', {
      ...s,
      selects: s.selects.map((x) => ({ ...x, at: [{ k: 'false' }] })),
    });

  if (f === 'select' && s.decode.onePerStep && selectionRead(s) && onlyBlockStart(s))
    add('choose the selection after its first read', '7.12 selection read before chosen', {
      ...s,
      selects: s.selects.map((x) => ({ ...x, at: [{ k: 'bs_eq', n: 1 }] })),
    });

  // Without a refresh, the steps up to the choice are no full refreshes: only the phase filter
  // keeps the selection from being read before it is chosen.
  if (f === 'sparsed' && s.unphasedKeys !== undefined && s.refreshes.length === 0)
    add('read the selection in every phase', '7.12 selection read before chosen', {
      ...s,
      attend: { causal: s.attend?.causal ?? false, keys: s.unphasedKeys },
    });

  // Read from step c + 1 (which one commit a step reaches), chosen at its end.
  const chosen = s.selects[0]?.at[0];
  if (
    f === 'sparsed' &&
    s.decode.onePerStep &&
    chosen?.k === 'cmp' &&
    !s.refreshes.some((r) => r.when.some((a) => a.k === 'block_start'))
  )
    add('choose the selection after its first phased read', '7.12 selection read before chosen', {
      ...s,
      selects: s.selects.map((x) => ({ ...x, at: [stepCmp('==', chosen.n + 1)] })),
    });

  if (
    f === 'elastic' &&
    noDirty &&
    s.refreshes.some((r) => r.when.some((a) => a.k === 'sim' || a.k === 'drift'))
  )
    add('drop the between-layer cache', '7.13 hidden state missing between layers', {
      ...s,
      caches: [{ kinds: ['kv'], of: 'all' }],
    });

  return out;
}

export interface Generated {
  readonly spec: Spec;
  readonly text: string;
}

export const generatedArb = (o: GenOptions = {}): fc.Arbitrary<Generated> =>
  specArb(o).map((spec) => ({ spec, text: planText(spec) }));

/** Canvas geometry for running a plan: two blocks when it has blocks. */
export function geometry(s: Spec): { promptLen: number; genLen: number } {
  return { promptLen: 3, genLen: s.block === undefined ? 6 : 2 * s.block };
}

// ---------------------------------------------------------------------------------------------
// What a checked plan contains, read from its syntax tree (not from the spec it was printed from)

/** The places where a set is written, for `phaseFilterPlaces`. */
export const setPlaces = ['compute', 'attend', 'segment', 'cache', 'refresh', 'select', 'decode in'] as const;
export type SetPlace = (typeof setPlaces)[number];

/**
 * Where a checked plan filters a set by a step condition (a phase: `s[p]` with `p` a bool, not a
 * per-position predicate): `attend` for a key set, `segment` for a split's segment, `decode in`
 * for decode candidates, else the statement.
 */
export function phaseFilterPlaces(typed: TypedPlan): Set<SetPlace> {
  const places = new Set<SetPlace>();
  const scan = (place: SetPlace, e: Expr | undefined) => {
    const visit = (x: Expr) => {
      if (x.kind === 'filter' && typed.types.get(x.predicate) === 'bool') places.add(place);
      forEachChild(x, visit);
    };
    if (e) visit(e);
  };
  for (const s of typed.plan.body)
    if (s.kind === 'compute') scan('compute', s.set);
    else if (s.kind === 'attend') {
      if (s.keys.kind === 'keys') scan('attend', s.keys.set);
      else for (const g of s.keys.segments) scan('segment', g.keys);
    } else if (s.kind === 'cache') scan('cache', s.set);
    else if (s.kind === 'refresh') scan('refresh', s.set);
    else if (s.kind === 'select') scan('select', s.set);
    else if (s.kind === 'decode') scan('decode in', s.within);
  return places;
}

// ---------------------------------------------------------------------------------------------
// Running generated plans

export type CheckOutcome =
  | { readonly kind: 'accepted'; readonly plan: CheckedPlan; readonly warnings: readonly Diagnostic[] }
  | { readonly kind: 'rejected'; readonly errors: readonly Diagnostic[] }
  | { readonly kind: 'crashed'; readonly error: unknown };

/** The checker's verdict; an exception out of it is an internal error, never a rejection. */
export function checkText(text: string): CheckOutcome {
  try {
    const r = checkSource({ path: 'fuzz.kvp', text });
    const plan = r.plans[0];
    if (plan) return { kind: 'accepted', plan, warnings: r.diagnostics };
    return { kind: 'rejected', errors: r.diagnostics.filter((d) => d.severity === 'error') };
  } catch (error) {
    return { kind: 'crashed', error };
  }
}

export const configOf = (s: Spec): ModelConfig => presets[s.preset] as ModelConfig;

/** verifyCheckedPlan on one case on the plan's model; a compiled backend needs its runner factory. */
export function verifyGenerated(
  s: Spec,
  plan: CheckedPlan,
  seed: number,
  backend?: { readonly name: 'cpu' | 'webgpu'; readonly runnerFor: RunnerFactory },
): Promise<PlanVerdict> {
  return verifyCheckedPlan(plan, {
    configs: [configOf(s)],
    cases: 1,
    seed,
    ...geometry(s),
    ...(backend ? { backend: backend.name, runnerFor: backend.runnerFor } : {}),
  });
}

/**
 * Whether a verdict is what an accepted plan owes: every check passes, or the generation stalled
 * (nothing left to decode in its `in` set on this model) after the checker warned that the decode
 * candidates depend on model scores. A stall without that warning is a checker bug.
 */
export function verdictHolds(v: PlanVerdict, warnings: readonly Diagnostic[]): boolean {
  if (v.ok) return true;
  const warned = warnings.some((d) => d.message.includes('are chosen by model scores'));
  return warned && v.checks.every((c) => c.ok || c.name === 'progress');
}

export const describeVerdict = (v: PlanVerdict): string =>
  v.checks.map((c) => `${c.name} ${c.ok ? 'ok' : 'FAILED'} (${c.detail})`).join(', ');

/** What the data-dependent paths of a plan did over one generation on a random model. */
export interface Firings {
  /** Steps where no layer recomputed every row. */
  readonly cachedSteps: number;
  /** Steps, not scheduled as full refreshes, where some layer recomputed every row anyway. */
  readonly dataRefreshes: number;
  /** Steps where a reused split segment was recomputed although no full refresh was scheduled. */
  readonly partialRecomputes: number;
  /** Steps where a reused split segment was served from its stored partial. */
  readonly partialReuses: number;
}

/**
 * Runs the plan on the reference backend and reads, from the per-layer row counts and index lists
 * of each step, whether its data-dependent refresh and reuse conditions fired.
 */
export async function observeFirings(s: Spec, plan: CheckedPlan, seed: number): Promise<Firings> {
  const config = modelFor(plan, configOf(s));
  const { promptLen, genLen } = geometry(s);
  const L = promptLen + genLen;
  const { lowered } = compilePlan(plan, config, { target: 'reference' });
  const reused = segmentsOf(s)
    .filter((g) => g.until)
    .map((g) => g.name);
  let cachedSteps = 0;
  let dataRefreshes = 0;
  let partialRecomputes = 0;
  let partialReuses = 0;
  // A plan whose decode candidates run dry on this model stalls (after the checker warned):
  // what fired until then still counts.
  await simulateGeneration(plan, lowered, {
    config,
    weights: randomWeights(config, seed),
    prompt: Int32Array.from({ length: promptLen }, (_, i) => (seed + 5 * i) % (config.vocab - 1)),
    genLen,
    seed,
    compare: false,
    onStep: (info) => {
      const anyFull = info.rows.some((n) => n === L);
      const scheduled = scheduledFull(s, info.step, info.blockStep);
      if (!anyFull) cachedSteps++;
      if (anyFull && !scheduled) dataRefreshes++;
      for (const name of reused) {
        if (scheduled) continue;
        const present = [...info.sizes.keys()].some((k) => k.endsWith(`.${name}`) && k.startsWith('keys.'));
        if (present) partialRecomputes++;
        else partialReuses++;
      }
    },
  }).catch((e) => {
    if (!(e instanceof DecodeStalled)) throw e;
  });
  return { cachedSteps, dataRefreshes, partialRecomputes, partialReuses };
}
