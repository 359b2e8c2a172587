import type { CheckedPlan } from '../dsl/check.ts';
import {
  isBlockCausal,
  type LayerRules,
  layerRules,
  reusedSegments,
  segmentsOf,
} from '../dsl/semantics/layerRules.ts';
import type { ModelConfig } from '../model/config.ts';
import { ProgramBuilder, type StageBuilder } from './builder.ts';
import {
  type FeatureKind,
  featureKinds,
  isFeatureKind,
  layerStage,
  layerWeight,
  lists,
  resources,
} from './names.ts';
import { type Dim, index, type Resource, type StepProgram, tensor, type Value } from './types.ts';

/**
 * A plan lowered for one model: the step programs of its phases, and the per-layer rules the
 * inspector follows to build their index lists each step.
 *
 * - `refresh`: every row of every layer is recomputed over the full (structurally masked) key set;
 *   no cache is read; caches and reused partials are (re)written.
 * - `cached`: rows `rows.l` are recomputed; keys outside them come from the K/V cache; partials of
 *   reused segments are recomputed and stored.
 * - `reuse`: as `cached`, but reused segments read their stored partial instead. Lowering leaves
 *   it out; the hoisting pass (src/passes/hoist.ts) derives it from `cached` for plans that reuse
 *   a split segment. The schedule may pick `cached` or `reuse` per layer.
 */
export interface LoweredPlan {
  readonly name: string;
  readonly config: ModelConfig;
  readonly blockCausal: boolean;
  readonly layers: readonly LayerRules[];
  readonly programs: {
    readonly refresh: StepProgram;
    readonly cached: StepProgram;
    readonly reuse: StepProgram | undefined;
  };
}

type Phase = 'refresh' | 'cached';

const w = layerWeight;
const hidden = (c: ModelConfig): Dim[] => ['L', c.dModel];

/** The persistent resources of a layer: its caches by kind, and the partials of reused segments. */
function layerResources(c: ModelConfig, r: LayerRules): Resource[] {
  const out: Resource[] = [];
  const kv = (name: string): Resource => ({
    name,
    kind: 'kv',
    dtype: 'f32',
    shape: ['L', c.kvHeads, c.headDim],
  });
  if (r.kinds.has('kv')) out.push(kv(resources.kv('k', r.layer)), kv(resources.kv('v', r.layer)));
  for (const kind of featureKinds) {
    if (r.kinds.has(kind))
      out.push({ name: resources.feature(kind, r.layer), kind, dtype: 'f32', shape: hidden(c) });
  }
  for (const s of reusedSegments(r)) {
    out.push(
      {
        name: resources.partial('o', r.layer, s.name),
        kind: 'partial',
        dtype: 'f32',
        shape: ['L', c.heads, c.headDim],
      },
      {
        name: resources.partial('lse', r.layer, s.name),
        kind: 'partial',
        dtype: 'f32',
        shape: ['L', c.heads],
      },
    );
  }
  return out;
}

class Lowering {
  private readonly pb: ProgramBuilder;
  private readonly resources = new Map<string, Resource>();

  constructor(
    private readonly plan: CheckedPlan,
    private readonly c: ModelConfig,
    private readonly rules: readonly LayerRules[],
    private readonly causal: boolean,
    private readonly phase: Phase,
  ) {
    this.pb = new ProgramBuilder(`${plan.plan.name}.${phase}`);
    for (const r of rules)
      for (const res of layerResources(c, r)) this.resources.set(res.name, this.pb.resource(res));
  }

  private res(name: string): Resource {
    const r = this.resources.get(name);
    if (!r) throw new Error(`lowering: no resource ${name}`);
    return r;
  }

  lower(): StepProgram {
    const c = this.c;
    const embed = this.pb.stage('embed');
    const tokens = embed.input('tokens', 'tokens', tensor('i32', ['L']));
    const table = embed.input('model.embed_tokens.weight', 'weight', tensor('f32', [c.vocab, c.dModel]));
    embed.output('h', embed.op1('embed', [table, tokens]));
    embed.finish();
    for (const r of this.rules) this.layer(r);
    const head = this.pb.stage('head');
    const h = head.input('h', 'carried', tensor('f32', hidden(c)));
    const out = head.input('out', 'index', index('#out'));
    const norm = head.input('model.norm.weight', 'weight', tensor('f32', [c.dModel]));
    const lmName = c.tieEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    const lm = head.input(lmName, 'weight', tensor('f32', [c.vocab, c.dModel]));
    const x = head.op1('rmsnorm', [head.op1('gather', [h, out]), norm], { eps: c.normEps });
    head.output('logits', head.op1('logits', [x, lm]));
    head.finish();
    return this.pb.finish();
  }

  private weight(sb: StageBuilder, name: string, shape: number[]): Value {
    return sb.input(name, 'weight', tensor('f32', shape));
  }

  private linear(
    sb: StageBuilder,
    l: number,
    proj: string,
    x: Value,
    out: number,
    inner: number,
    bias: boolean,
  ): Value {
    const wt = this.weight(sb, w(l, `${proj}.weight`), [out, inner]);
    const args = bias ? [x, wt, this.weight(sb, w(l, `${proj}.bias`), [out])] : [x, wt];
    return sb.op1('linear', args);
  }

  private layer(r: LayerRules): void {
    const c = this.c;
    const l = r.layer;
    const full = this.phase === 'refresh';
    const sb = this.pb.stage(layerStage(l));
    let h = sb.input('h', 'carried', tensor('f32', hidden(c)));
    const rows = sb.input(lists.rows(l), 'index', index(`#${lists.rows(l)}`));
    const positions = sb.input(lists.positions(l), 'positions', index(`#${lists.rows(l)}`));
    const blocks = this.causal ? sb.input('blocks', 'blocks', tensor('i32', ['L'])) : undefined;
    const seqs = sb.input('seqs', 'seqs', tensor('i32', ['L']));
    const prev = this.rules[l - 1];
    if (!full && prev?.kinds.has('hidden')) {
      // Rows computed here but not on the layer below take that layer's output from its cache.
      const restore = sb.input(lists.restore(l), 'index', index(`#${lists.restore(l)}`));
      const cached = sb.op1('gather', [sb.cacheRead(this.res(resources.feature('hidden', l - 1))), restore]);
      h = sb.op1('scatter', [h, restore, cached]);
    }
    const x = sb.op1('gather', [h, rows]);
    const xn = sb.op1('rmsnorm', [x, this.weight(sb, w(l, 'input_layernorm.weight'), [c.dModel])], {
      eps: c.normEps,
    });
    const heads = (v: Value, n: number) => sb.op1('reshape', [v], { inner: [n, c.headDim] });
    const proj = (name: string, n: number) =>
      heads(this.linear(sb, l, `self_attn.${name}`, xn, n * c.headDim, c.dModel, c.qkvBias), n);
    // SDAR (after Qwen3) normalises each head of q and k before RoPE.
    const normed = (v: Value, name: string) =>
      c.qkNorm
        ? sb.op1('rmsnorm', [v, this.weight(sb, w(l, `self_attn.${name}.weight`), [c.headDim])], {
            eps: c.normEps,
          })
        : v;
    const q = sb.op1('rope', [normed(proj('q_proj', c.heads), 'q_norm'), positions], { theta: c.ropeTheta });
    const k = sb.op1('rope', [normed(proj('k_proj', c.kvHeads), 'k_norm'), positions], {
      theta: c.ropeTheta,
    });
    const v = proj('v_proj', c.kvHeads);
    // Keys of the whole canvas: fresh rows over the cached ones (a refresh reads no cache).
    const canvasOf = (fresh: Value, name: string) =>
      !full && r.kinds.has('kv')
        ? sb.op1('scatter', [sb.cacheRead(this.res(`kv.${name}.${l}`)), rows, fresh])
        : sb.op1('place', [fresh, rows]);
    const kAll = canvasOf(k, 'k');
    const vAll = canvasOf(v, 'v');
    const attention = (keys: Value, segment?: string, kvHead?: number) => {
      const args = [q, sb.op1('gather', [kAll, keys]), sb.op1('gather', [vAll, keys]), rows, keys];
      const mask = blocks ? 'block_causal' : 'none';
      const attrs = {
        scale: 1 / Math.sqrt(c.headDim),
        mask,
        sequences: true,
        ...(segment ? { segment } : {}),
        ...(kvHead === undefined ? {} : { kv_head: kvHead }),
      };
      return sb.op('attention', [...args, ...(blocks ? [blocks] : []), seqs], attrs);
    };
    const keyList = (name: string) => sb.input(name, 'index', index(`#${name}`));
    const merged = (parts: readonly Value[][]): [Value, Value] => {
      let [o, lse] = parts[0] as [Value, Value];
      for (const [po, plse] of parts.slice(1))
        [o, lse] = sb.op('merge', [o, lse, po as Value, plse as Value]) as [Value, Value];
      return [o, lse];
    };
    let o: Value;
    let lse: Value;
    const segments = segmentsOf(r.attend);
    if (r.perKvHead && !full) {
      // One key list per KV head: each attention computes that head's query heads and leaves the
      // others empty (LSE -inf), so that merging them gives every head over its own keys.
      [o, lse] = merged(
        Array.from({ length: c.kvHeads }, (_, g) => attention(keyList(lists.headKeys(l, g)), undefined, g)),
      );
    } else if (segments.length === 0) {
      [o, lse] = attention(keyList(lists.keys(l))) as [Value, Value];
    } else {
      const parts = segments.map((s) => {
        const oRes = s.reusedUntil ? this.res(resources.partial('o', l, s.name)) : undefined;
        const lseRes = s.reusedUntil ? this.res(resources.partial('lse', l, s.name)) : undefined;
        const keys = keyList(lists.keys(l, s.name));
        const part = attention(keys, s.name);
        if (oRes && lseRes) {
          sb.cacheWrite(oRes, rows, part[0] as Value);
          sb.cacheWrite(lseRes, rows, part[1] as Value);
        }
        return part;
      });
      [o, lse] = merged(parts);
    }
    void lse;
    const flat = sb.op1('reshape', [o], { inner: [c.heads * c.headDim] });
    const a = this.linear(sb, l, 'self_attn.o_proj', flat, c.dModel, c.heads * c.headDim, false);
    const h1 = sb.op1('add', [x, a]);
    const x2 = sb.op1('rmsnorm', [h1, this.weight(sb, w(l, 'post_attention_layernorm.weight'), [c.dModel])], {
      eps: c.normEps,
    });
    const gate = this.linear(sb, l, 'mlp.gate_proj', x2, c.dFF, c.dModel, false);
    const up = this.linear(sb, l, 'mlp.up_proj', x2, c.dFF, c.dModel, false);
    const f = this.linear(sb, l, 'mlp.down_proj', sb.op1('swiglu', [gate, up]), c.dModel, c.dFF, false);
    const h2 = sb.op1('add', [h1, f]);
    const byKind: Record<FeatureKind, () => Value> = {
      attn: () => sb.op1('place', [a, rows]),
      ffn: () => sb.op1('place', [f, rows]),
      hidden: () => sb.op1('place', [h2, rows]),
    };
    for (const { rule, id } of r.caches) {
      const writes = sb.input(lists.write(l, id), 'index', index(`#${lists.write(l, id)}`));
      for (const kind of rule.kinds.map((k) => k.name)) {
        if (kind === 'kv') {
          sb.cacheWrite(this.res(resources.kv('k', l)), writes, sb.op1('gather', [kAll, writes]));
          sb.cacheWrite(this.res(resources.kv('v', l)), writes, sb.op1('gather', [vAll, writes]));
        } else if (isFeatureKind(kind)) {
          const source = sb.op1('gather', [byKind[kind](), writes]);
          sb.cacheWrite(this.res(resources.feature(kind, l)), writes, source);
        }
      }
    }
    let hNext = sb.op1('scatter', [h, rows, h2]);
    if (!full && r.kinds.has('attn') && r.kinds.has('ffn')) {
      // Rows not recomputed here carry their residual stream on with the cached deltas.
      const delta = sb.input(lists.delta(l), 'index', index(`#${lists.delta(l)}`));
      const before = sb.op1('gather', [h, delta]);
      const attn = sb.op1('gather', [sb.cacheRead(this.res(resources.feature('attn', l))), delta]);
      const ffn = sb.op1('gather', [sb.cacheRead(this.res(resources.feature('ffn', l))), delta]);
      hNext = sb.op1('scatter', [hNext, delta, sb.op1('add', [sb.op1('add', [before, attn]), ffn])]);
    }
    sb.output('h', hNext);
    sb.finish();
  }
}

/** Lowers a checked plan for a model configuration. */
export function lowerPlan(plan: CheckedPlan, config: ModelConfig): LoweredPlan {
  const rules = layerRules(plan.typed, config.layers);
  const causal = isBlockCausal(plan.typed) || config.attention === 'block_causal';
  const lower = (phase: Phase) => new Lowering(plan, config, rules, causal, phase).lower();
  // The reuse phase is derived from the cached one by the hoisting pass (src/passes/hoist.ts).
  return {
    name: plan.plan.name,
    config,
    blockCausal: causal,
    layers: rules,
    programs: { refresh: lower('refresh'), cached: lower('cached'), reuse: undefined },
  };
}
