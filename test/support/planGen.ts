/**
 * Random plans that nobody wrote: fast-check arbitraries producing plan text that is meant to be
 * meaningful (well-typed, built from the patterns of section 6 of docs/language.md), plus
 * near-miss mutations that break exactly one well-formedness rule. Unlike the syntactic AST
 * arbitrary of `arbitraries.ts`, these plans are checked and then run against full attention.
 *
 * A plan is first a `Spec` (structured, so that mutations can target one rule), then text.
 */
import fc from 'fast-check';
import { type CheckedPlan, checkSource } from '../../src/dsl/check.ts';
import type { Diagnostic } from '../../src/dsl/diagnostics.ts';
import type { ModelConfig } from '../../src/model/config.ts';
import { presets } from '../../src/model/presets.ts';
import { randomWeights } from '../../src/model/weights.ts';
import { compilePlan } from '../../src/passes/compile.ts';
import { modelFor } from '../../src/runtime/modelFor.ts';
import { DecodeStalled, simulateGeneration } from '../../src/runtime/simulate.ts';
import { type PlanVerdict, type RunnerFactory, verifyCheckedPlan } from '../../src/runtime/verify.ts';

/** One disjunct of a condition: static atoms can be evaluated from the step counters alone. */
export type Atom =
  | { readonly k: 'block_start' }
  | { readonly k: 'every'; readonly n: number }
  | { readonly k: 'step0' }
  | { readonly k: 'bs_lt'; readonly n: number }
  | { readonly k: 'bs_eq'; readonly n: number }
  | { readonly k: 'false' }
  | { readonly k: 'dirty'; readonly set: string; readonly r: number }
  | { readonly k: 'sim'; readonly layer: number; readonly gamma: number };

export type Scope =
  | { readonly k: 'eq'; readonly l: number }
  | { readonly k: 'cmp'; readonly op: '<' | '<=' | '>' | '>='; readonly l: number }
  | { readonly k: 'range'; readonly a: number; readonly b: number };

export interface Refresh {
  readonly set: string;
  readonly when: readonly Atom[];
  readonly scope?: Scope;
}
export interface Compute {
  readonly set: string;
  readonly scope?: Scope;
}
export interface Cache {
  readonly kinds: readonly ('kv' | 'attn' | 'ffn' | 'hidden')[];
  readonly of: string;
  readonly delay?: number;
  readonly scope?: Scope;
}
export interface Segment {
  readonly name: string;
  readonly keys: string;
  readonly until?: readonly Atom[];
}
export interface Attend {
  readonly keys: string | readonly Segment[];
  readonly causal: boolean;
}
export interface Select {
  readonly name: string;
  readonly set: string;
  readonly at: readonly Atom[];
}
export interface Decode {
  readonly rule: string;
  readonly by?: string;
  readonly in?: string;
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
}

/** Every feature: what the long campaign runs by default. */
export const allFeatures: GenOptions = {
  scoreArithmetic: true,
  dataDependentDecode: true,
  stepsWithoutBlocks: true,
  randomDecodeIn: true,
  wild: true,
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
    case 'dirty':
      return `dirty(${a.set}) >= ${a.r}`;
    case 'sim':
      return `attn_similarity(${a.layer}) < ${num(a.gamma)}`;
  }
}

const condText = (c: readonly Atom[]) => (c.length === 0 ? 'false' : c.map(atomText).join(' or '));

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
  for (const r of s.refreshes) lines.push(`  refresh ${r.set} when ${condText(r.when)}${scopeText(r.scope)}`);
  for (const x of s.selects) lines.push(`  select ${x.name} = ${x.set} at ${condText(x.at)}`);
  for (const c of s.computes) lines.push(`  compute ${c.set}${scopeText(c.scope)}`);
  for (const c of s.caches) {
    const delay = c.delay === undefined ? '' : ` delay ${c.delay}`;
    lines.push(`  cache ${c.kinds.join(', ')} of ${c.of}${delay}${scopeText(c.scope)}`);
  }
  if (s.attend) {
    const mask = s.attend.causal ? ' mask block_causal' : '';
    const k = s.attend.keys;
    if (typeof k === 'string') lines.push(`  attend ${k}${mask}`);
    else {
      const segs = k.map(
        (g) => `    ${g.name} = ${g.keys}${g.until ? ` reused until ${condText(g.until)}` : ''}`,
      );
      lines.push(`  attend split {\n${segs.join(',\n')}\n  } merge lse${mask}`);
    }
  }
  const d = s.decode;
  lines.push(
    `  decode ${d.rule}${d.by ? ` by ${d.by}` : ''}${d.in ? ` in ${d.in}` : ''}${d.arShift ? ' ar_shift' : ''}`,
  );
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
    default:
      return undefined;
  }
}

/** Whether a refresh of `all` on every layer is scheduled at this step, ignoring data-dependent atoms. */
export function scheduledFull(s: Spec, step: number, blockStep: number): boolean {
  return s.refreshes.some(
    (r) => r.set === 'all' && !r.scope && r.when.some((a) => staticAtom(a, step, blockStep)),
  );
}

export const hasDataRefresh = (s: Spec): boolean =>
  s.refreshes.some((r) => r.when.some((a) => a.k === 'dirty' || a.k === 'sim'));

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

/** Decode rules; `onePerStep` ones keep the checker's schedule predictable for near-misses. */
function decodeArb(block: number | undefined, o: GenOptions, inSet?: string): fc.Arbitrary<Decode> {
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

/** Random set expressions over the builtin sets, for wild edits. */
const setExprArb: fc.Arbitrary<string> = fc.letrec<{ set: string }>((tie) => ({
  set: fc.oneof(
    { depthSize: 'small', maxDepth: 3 },
    fc.constantFrom(
      'all',
      'none',
      'prompt',
      'generated',
      'masked',
      'decoded',
      'newly_decoded',
      'current_block',
      'before_block',
      'after_block',
    ),
    fc.tuple(tie('set'), fc.constantFrom('|', '&', '-'), tie('set')).map(([a, op, b]) => `(${a} ${op} ${b})`),
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
      decodeArb(r.block, o).map(
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
      decodeArb(r.block, o).map((decode): Spec => {
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
      rules: fc.constantFrom('sim', 'dirty', 'both'),
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
      if (r.rules !== 'dirty')
        refreshes.push({
          set: 'all',
          when: [{ k: 'sim', layer: probe, gamma: r.gamma }],
          scope: { k: 'cmp', op: '>', l: probe },
        });
      if (r.rules !== 'sim')
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
      score: fc.constantFrom('value_drift', 'key_drift', 'confidence'),
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
            { set: 'all', scope: { k: 'eq', l: 0 } },
            {
              set: `keep(generated, ${r.score}, ${num(r.rho)}) | newly_decoded`,
              scope: { k: 'cmp', op: '>=', l: 1 },
            },
          ],
          caches: [{ kinds: ['kv', 'attn', 'ffn'], of: 'all' }],
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

/** Plans built from the patterns of docs/language.md section 6, meant to be accepted. */
export const familySpecArb = (o: GenOptions = {}): fc.Arbitrary<Spec> =>
  fc.oneof(
    fullFamily(o),
    blockFamily(o),
    dkvFamily(o),
    elasticFamily(),
    flashFamily(o),
    selectFamily(o),
    dllmCacheFamily(o),
    scoredFamily(o),
  );

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
  return fc.oneof(
    setExprArb.map((set): [string, Edit] => [`compute ${set}`, (x) => ({ ...x, computes: [{ set }] })]),
    fc
      .tuple(setExprArb, scopeArb(L))
      .map(([set, scope]): [string, Edit] => [
        `compute scoped`,
        (x) => ({ ...x, computes: [...x.computes.filter((c) => c.scope), { set, scope }] }),
      ]),
    fc
      .tuple(
        fc.constantFrom('all', 'prompt', 'generated', 'current_block', 'masked'),
        staticCondArb(s.block),
        fc.option(scopeArb(L), { nil: undefined }),
      )
      .map(([set, when, scope]): [string, Edit] => [
        'add refresh',
        (x) => ({ ...x, refreshes: [...x.refreshes, { set, when, ...(scope ? { scope } : {}) }] }),
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
        setExprArb,
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
      .tuple(setExprArb, fc.boolean())
      .map(([keys, causal]): [string, Edit] => ['attend', (x) => ({ ...x, attend: { keys, causal } })]),
    decodeArb(s.block, o, undefined).chain((d) =>
      (o.randomDecodeIn ? fc.option(setExprArb, { nil: undefined }) : fc.constant(undefined)).map(
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

/** Every near miss that applies to a family plan (without wild edits). */
export function nearMisses(s: Spec): NearMiss[] {
  const out: NearMiss[] = [];
  const f = s.family;
  const add = (mutation: string, rule: string, spec: Spec) => out.push({ mutation, rule, spec });
  const noDirty = !s.refreshes.some((r) => r.when.some((a) => a.k === 'dirty'));

  // Nothing is cached before step 0, and every one of these families reads prompt keys it does not compute.
  if (f !== 'full' && f !== 'd2cache')
    add('drop every refresh', '7.10 no refresh at step 0', { ...s, refreshes: [] });

  // A cached step reads prompt keys outside R; the schedule guarantees such a step.
  if (f !== 'full' && s.decode.onePerStep && noDirty && hasCachedStep(s))
    add('drop the kv cache', '7.10 reads not covered', {
      ...s,
      caches: s.caches
        .map((c) => ({ ...c, kinds: c.kinds.filter((k) => k !== 'kv') }))
        .filter((c) => c.kinds.length > 0),
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

  if (f === 'select' && s.decode.onePerStep)
    add('never choose the selection', '7.12 selection read before chosen', {
      ...s,
      selects: s.selects.map((x) => ({ ...x, at: [{ k: 'false' }] })),
    });

  if (f === 'select' && s.decode.onePerStep && onlyBlockStart(s))
    add('choose the selection after its first read', '7.12 selection read before chosen', {
      ...s,
      selects: s.selects.map((x) => ({ ...x, at: [{ k: 'bs_eq', n: 1 }] })),
    });

  if (f === 'elastic' && noDirty && s.refreshes.some((r) => r.when.some((a) => a.k === 'sim')))
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
