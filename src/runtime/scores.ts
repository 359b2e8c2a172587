import { type Mask, members, positionsOf } from '../dsl/semantics/evaluate.ts';
import type { StepScores } from '../dsl/semantics/stepper.ts';
import { float32Of, type HostTensor } from '../ir/tensor.ts';
import type { ModelConfig } from '../model/config.ts';
import { predictionRow, softmaxStats } from '../model/golden.ts';
import type { Weights } from '../model/weights.ts';
import { type CachePart, cachePartRow } from './cachePart.ts';
import { InterpretedProbe, type Probe, type ProbeOutput } from './probe.ts';
import type { PredictionStats } from './runner.ts';

function cosine(a: Float64Array, b: Float64Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  return aa === 0 && bb === 0 ? 1 : ab / Math.sqrt(aa * bb);
}

/** Column `c` of a row-major matrix of `width` columns. */
const column = (m: Float64Array, width: number, c: number): Float64Array =>
  Float64Array.from({ length: m.length / width }, (_, i) => m[i * width + c] as number);

/**
 * Scores of the current generation state: prediction statistics from the latest logits of each
 * row, and model-internal scores measured by the probe program on the hidden state entering a layer.
 */
export class ModelScores implements StepScores {
  /**
   * Latest logits of each row, [L, vocab], and the step they were computed at (-1: never). Kept in
   * the precision of the first logits stored: a float32 backend's are copied as they are (a real
   * vocabulary's rows, widened to float64 at every step, cost more than the step's head). Rows
   * stored with their statistics are kept only with `keepLogits`: nothing here reads them then,
   * and with a real vocabulary the store is the size of the model's largest weight.
   */
  get logits(): Float32Array | Float64Array {
    this.store ??= new Float64Array(this.L * this.config.vocab);
    return this.store;
  }
  private store: Float32Array | Float64Array | undefined;
  readonly logitsStep: Int32Array;
  /** The hidden state entering each layer in the current step, as the layers run. */
  readonly hiddenIn = new Map<number, HostTensor>();
  private readonly similarityRef = new Map<number, Float64Array>();
  private readonly probe: Probe;

  constructor(
    private readonly config: ModelConfig,
    weights: Weights,
    private readonly L: number,
    private readonly blocks: Int32Array,
    private readonly blockCausal: boolean,
    private readonly cachePart: (part: CachePart, layer: number) => HostTensor | undefined,
    /**
     * The layers whose entering hidden state the plan's scores read (`hiddenLayers`); runners record
     * only these. Every layer when absent.
     */
    private readonly hiddenLayers?: ReadonlySet<number>,
    /** Where probes run: a backend's compiled probe, or the reference interpreter. */
    probe?: Probe,
    /** Whether `logits` must hold every row stored (the golden comparison reads them). */
    readonly keepLogits = true,
  ) {
    this.logitsStep = new Int32Array(L).fill(-1);
    this.rowStore = new Int32Array(L);
    this.statsStore = new Int32Array(L).fill(-1);
    this.rowStats = new Float64Array(3 * L);
    this.rowArgmax = new Int32Array(L);
    this.rowStatsStore = new Int32Array(L).fill(-1);
    this.stats = {
      confidence: new Float64Array(L),
      margin: new Float64Array(L),
      entropy: new Float64Array(L),
    };
    this.probe = probe ?? new InterpretedProbe(config, weights);
  }

  /** Whether the runner records the hidden state entering `layer` for these scores. */
  readsHiddenAt(layer: number): boolean {
    return !this.hiddenLayers || this.hiddenLayers.has(layer);
  }

  /**
   * A score measured on a layer whose state is not recorded would read another layer's (or, for
   * attn_similarity, none): the plan's analysis (`hiddenLayers`) missed a use, our bug, not the
   * plan's. After the forward (past the last layer) the last state recorded stands.
   */
  private expectRead(layer: number): void {
    if (layer < this.config.layers && !this.readsHiddenAt(layer))
      throw new Error(
        `a score read the hidden state entering layer ${layer}, which the plan's analysis did not record`,
      );
  }

  /** The hidden state entering a layer this step (after the forward: entering the last one measured). */
  private hiddenAt(layer: number): HostTensor {
    this.expectRead(layer);
    const h = this.hiddenIn.get(layer) ?? this.hiddenIn.get(Math.max(...this.hiddenIn.keys()));
    if (!h) throw new Error('no hidden state measured yet in this step');
    return h;
  }

  private measure(output: ProbeOutput, layer: number, queries: Int32Array): HostTensor {
    return this.probe.measure(
      output,
      layer,
      this.hiddenAt(layer),
      queries,
      this.blockCausal ? this.blocks : undefined,
    );
  }

  /**
   * The softmax statistics of each position, kept and recomputed only where its logits row was
   * stored again since: a step asks for them more than once, and a cached step stores a few rows
   * (computing them for every row of a 256-row canvas took 2.5 ms a step, most of the host time).
   */
  private readonly stats: Readonly<Record<'confidence' | 'margin' | 'entropy', Float64Array>>;
  /** The store (storeLogits call) each logits row was written by, and each position's stats read. */
  private stored = 0;
  private readonly rowStore: Int32Array;
  private readonly statsStore: Int32Array;
  /**
   * Statistics of each row as the backend computed them with its logits ([L][3]: confidence,
   * margin, entropy), and the store they came with (-1: none; computed here from the logits then).
   */
  private readonly rowStats: Float64Array;
  private readonly rowArgmax: Int32Array;
  private readonly rowStatsStore: Int32Array;

  private statistic(name: 'confidence' | 'margin' | 'entropy'): Float64Array {
    const V = this.config.vocab;
    for (let i = 0; i < this.L; i++) {
      const row = predictionRow(this.config, i);
      const store = row < 0 ? 0 : (this.rowStore[row] as number);
      if (this.statsStore[i] === store) continue;
      this.statsStore[i] = store;
      if (row < 0 || (this.logitsStep[row] ?? -1) < 0) {
        this.stats.confidence[i] = 0;
        this.stats.margin[i] = 0;
        this.stats.entropy[i] = Math.log(V);
        continue;
      }
      if (this.rowStatsStore[row] === store) {
        this.stats.confidence[i] = this.rowStats[3 * row] as number;
        this.stats.margin[i] = this.rowStats[3 * row + 1] as number;
        this.stats.entropy[i] = this.rowStats[3 * row + 2] as number;
        continue;
      }
      const s = softmaxStats(this.logits.subarray(row * V, (row + 1) * V), this.config.maskTokenId);
      this.stats.confidence[i] = s.confidence;
      this.stats.margin[i] = s.margin;
      this.stats.entropy[i] = s.entropy;
    }
    return this.stats[name].slice();
  }

  score(name: string, queries: Mask | undefined, layer: number, kvHead?: number): Float64Array {
    switch (name) {
      case 'confidence':
      case 'margin':
      case 'entropy':
        return this.statistic(name);
      case 'attention_mass':
      case 'query_key':
      case 'rollout': {
        const perHead = name === 'attention_mass' && kvHead !== undefined;
        const key = `${perHead ? 'mass_heads' : name}:${queries ? Array.from(members(queries)).join(',') : 'all'}`;
        const v = this.onceAStep(key, () => this.attentionScore(name, queries, layer, perHead));
        return perHead ? column(v, this.config.kvHeads, kvHead) : v;
      }
      case 'value_drift':
      case 'key_drift':
      case 'hidden_drift': {
        // K or V as the layer would project them now, against its cache; the hidden state entering
        // the layer now, against what the layer below cached as its output.
        const part = name === 'key_drift' ? 'k' : name === 'value_drift' ? 'v' : 'hidden';
        const fresh = part === 'hidden' ? this.hiddenAt(layer) : this.measure(part, layer, new Int32Array(0));
        const cached =
          part === 'hidden'
            ? layer > 0
              ? this.cachePart(part, layer - 1)
              : undefined
            : this.cachePart(part, layer);
        const width = cachePartRow(part, this.config).reduce((a, b) => a * b, 1);
        // One KV head's drift compares its slice of each K or V row.
        const [from, to] =
          kvHead === undefined || part === 'hidden'
            ? [0, width]
            : [(kvHead * width) / this.config.kvHeads, ((kvHead + 1) * width) / this.config.kvHeads];
        const narrow = float32Of(fresh);
        const narrowCached = cached && float32Of(cached);
        if (narrow && narrowCached && this.probe.rowDrift)
          return this.probe.rowDrift(narrow, narrowCached, this.L, width, from, to);
        return Float64Array.from({ length: this.L }, (_, i) => {
          const a = fresh.data.subarray(i * width + from, i * width + to);
          const b = cached?.data.subarray(i * width + from, i * width + to);
          return b && !Number.isNaN(b[0] ?? Number.NaN) ? 1 - cosine(a, b) : 1;
        });
      }
      default:
        throw new Error(`no source for score '${name}'`);
    }
  }

  /**
   * Attention-based scores are measured once per step (on the hidden state entering the first
   * layer that asks) and reused by the layers above: in compute sets they stand for the latest
   * values known when the step's sets are built.
   */
  private readonly memo = new WeakMap<HostTensor, Map<string, Float64Array>>();
  private onceAStep(key: string, f: () => Float64Array): Float64Array {
    const step = this.hiddenIn.get(0);
    if (!step) return f();
    let m = this.memo.get(step);
    if (!m) {
      m = new Map();
      this.memo.set(step, m);
    }
    let v = m.get(key);
    if (!v) {
      v = f();
      m.set(key, v);
    }
    return v;
  }

  /** A score measured by the probe; `perHead`: the attention mass of each KV head, [L, KVH]. */
  private attentionScore(
    name: string,
    queries: Mask | undefined,
    layer: number,
    perHead = false,
  ): Float64Array {
    const all = Int32Array.from({ length: this.L }, (_, i) => i);
    const out = this.measure(
      name === 'query_key' ? 'query_key' : perHead ? 'mass_heads' : 'mass',
      layer,
      name === 'rollout' ? all : positionsOf(queries ?? new Uint8Array(this.L).fill(1)),
    );
    return out.data;
  }

  /**
   * Each attention row measured, by the hidden state it was measured on (each layer of each step
   * enters with a fresh tensor): `attn_similarity(l)` read on every layer above l, and the row
   * remembered after a refresh that measured it, cost one measurement.
   */
  private readonly rows = new WeakMap<HostTensor, Float64Array>();

  /** The attention row of the most-attended key, summed over heads and normalised. */
  private attentionRow(layer: number): Float64Array {
    const h = this.hiddenAt(layer);
    const known = this.rows.get(h);
    if (known) return known;
    // Measured at this very layer (not shared across layers): similarity is a per-layer quantity.
    const all = Int32Array.from({ length: this.L }, (_, i) => i);
    const row = this.measure('row', layer, all).data;
    this.rows.set(h, row);
    return row;
  }

  attnSimilarity(layer: number): number {
    this.expectRead(layer);
    const ref = this.similarityRef.get(layer);
    if (!ref || !this.hiddenIn.has(layer)) return 1;
    return cosine(this.attentionRow(layer), ref);
  }

  /** After a full refresh: the attention rows later similarity is measured against. */
  rememberAttention(layers: readonly number[]): void {
    for (const l of layers) if (this.hiddenIn.has(l)) this.similarityRef.set(l, this.attentionRow(l));
  }

  /** The token the latest logits predict at canvas position i (the mask where no row predicts it). */
  predicted(i: number): number {
    const row = predictionRow(this.config, i);
    if (row < 0) return this.config.maskTokenId;
    if (this.rowStatsStore[row] === this.rowStore[row]) return this.rowArgmax[row] as number;
    const V = this.config.vocab;
    return softmaxStats(this.logits.subarray(row * V, (row + 1) * V), this.config.maskTokenId).argmax;
  }

  /** Keeps a step's logits of `rows`, with their statistics when the backend computed them. */
  storeLogits(rows: Int32Array, logits: HostTensor | undefined, step: number, stats?: PredictionStats): void {
    const V = this.config.vocab;
    this.stored++;
    rows.forEach((r, i) => {
      this.logitsStep[r] = step;
      this.rowStore[r] = this.stored;
      if (!stats) return;
      this.rowStats.set(stats.stats.subarray(3 * i, 3 * i + 3), 3 * r);
      this.rowArgmax[r] = stats.argmax[i] as number;
      this.rowStatsStore[r] = this.stored;
    });
    if (stats && !this.keepLogits) return;
    if (!logits)
      throw new Error(
        'a step stored without its logits needs their statistics, and scores that do not keep logits',
      );
    const data = float32Of(logits) ?? logits.data;
    this.store ??= data instanceof Float32Array ? new Float32Array(this.L * V) : new Float64Array(this.L * V);
    // Float64 logits after float32 ones (no runner mixes them today) widen the store, never round.
    if (this.store instanceof Float32Array && !(data instanceof Float32Array))
      this.store = new Float64Array(this.store);
    const store = this.store;
    rows.forEach((r, i) => {
      store.set(data.subarray(i * V, (i + 1) * V), r * V);
    });
  }
}
