/**
 * THE GOLDEN: a plain float64 forward pass of a LLaMA-family bidirectional transformer, written
 * without the IR. Every backend and every cache plan is judged against it, so it is kept simple:
 * every row runs every layer, attention is computed in full (with the structural block-causal
 * mask where the model has one), nothing is cached. Exact semantics: docs/model.md.
 */
import { blockIndex } from '../dsl/semantics/canvas.ts';
import type { ModelConfig } from './config.ts';
import { expectShape, type FloatTensor, floatsOf, type Weights } from './weights.ts';

export interface Layout {
  /** Rows [0, promptLen) are the prompt. */
  promptLen: number;
  /** Generated rows are split into blocks of this many rows, starting at promptLen. */
  blockLen: number;
  /** Blocks counted from position 0, the prompt split into them (see Canvas.origin). */
  aligned?: boolean;
}

export interface GoldenResult {
  /** [L, vocab], row-major. Row i holds the logits computed at row i (no AR shift applied). */
  logits: Float64Array;
  /** Per layer, the residual stream after that layer, [L, dModel]. */
  hidden: Float64Array[];
}

/**
 * Block index of a position: -1 for the prompt, floor((p - promptLen) / blockLen) after it; aligned,
 * floor(p / blockLen) shifted so that the block holding the first generated position is 0.
 */
export const blockOf = (position: number, layout: Layout): number => blockIndex(position, layout);

/** Whether query row i may attend to key row j under the model's attention structure. */
export const attends = (config: ModelConfig, layout: Layout, i: number, j: number): boolean =>
  config.attention === 'full' || blockOf(j, layout) <= blockOf(i, layout);

/** The row whose logits predict the token at `position`. -1 (none) for position 0 under AR shift. */
export const predictionRow = (config: ModelConfig, position: number): number =>
  config.arShift ? position - 1 : position;

/**
 * Rotates one head vector `v[off .. off + headDim)` in place by RoPE at `position`, Hugging Face
 * LLaMA "rotate_half" convention: dimension i is paired with i + headDim/2 and the pair is rotated
 * by the angle position * theta^(-2i / headDim). Negative positions rotate backwards.
 */
export function applyRope(
  v: Float64Array,
  off: number,
  headDim: number,
  position: number,
  theta: number,
): void {
  const half = headDim / 2;
  for (let i = 0; i < half; i++) {
    const angle = position * theta ** (-(2 * i) / headDim);
    const c = Math.cos(angle);
    const s = Math.sin(angle);
    const x1 = v[off + i] as number;
    const x2 = v[off + i + half] as number;
    v[off + i] = x1 * c - x2 * s;
    v[off + i + half] = x2 * c + x1 * s;
  }
}

/** out[r, :] = x[r, :] * w / sqrt(mean(x[r, :]^2) + eps). */
function rmsNorm(
  x: Float64Array,
  rows: number,
  d: number,
  w: FloatTensor['data'],
  eps: number,
): Float64Array {
  const out = new Float64Array(rows * d);
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let ss = 0;
    for (let k = 0; k < d; k++) {
      const xv = x[o + k] as number;
      ss += xv * xv;
    }
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let k = 0; k < d; k++) out[o + k] = (x[o + k] as number) * inv * (w[k] as number);
  }
  return out;
}

/** y[r, o] = sum_k x[r, k] W[o, k] (+ b[o]); W is [outDim, inDim] (PyTorch nn.Linear layout). */
function linear(x: Float64Array, rows: number, W: FloatTensor, bias?: FloatTensor): Float64Array {
  const [outDim, inDim] = W.shape as [number, number];
  const w = W.data;
  const y = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    const xo = r * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let acc = bias ? (bias.data[o] as number) : 0;
      for (let k = 0; k < inDim; k++) acc += (x[xo + k] as number) * (w[wo + k] as number);
      y[r * outDim + o] = acc;
    }
  }
  return y;
}

function checkInputs(config: ModelConfig, tokens: Int32Array, layout: Layout): void {
  const L = tokens.length;
  if (L === 0) throw new RangeError('goldenForward: empty token sequence');
  for (let i = 0; i < L; i++) {
    const t = tokens[i] as number;
    if (t < 0 || t >= config.vocab)
      throw new RangeError(
        `goldenForward: token ${t} at row ${i} is outside the vocabulary [0, ${config.vocab})`,
      );
  }
  if (!Number.isInteger(layout.promptLen) || layout.promptLen < 0 || layout.promptLen > L)
    throw new RangeError(
      `goldenForward: promptLen must be an integer in [0, ${L}] (got ${layout.promptLen})`,
    );
  if (!Number.isInteger(layout.blockLen) || layout.blockLen < 1)
    throw new RangeError(`goldenForward: blockLen must be a positive integer (got ${layout.blockLen})`);
}

/**
 * The reference forward pass over the whole canvas `tokens` (row i is at position i).
 * Per layer: x = RMSNorm(h); q, k, v = linear(x) (+ bias); RoPE on q and k; attention per query
 * head with GQA (query head h reads KV head floor(h / (heads / kvHeads))), scale 1/sqrt(headDim),
 * numerically stable softmax over the keys the row may attend to; h += o_proj(concat heads);
 * x = RMSNorm(h); h += down(silu(gate(x)) * up(x)). Then logits = RMSNorm(h) · lm_head^T
 * (embed_tokens^T when tied).
 */
export function goldenForward(
  config: ModelConfig,
  weights: Weights,
  tokens: Int32Array,
  layout: Layout,
): GoldenResult {
  checkInputs(config, tokens, layout);
  const { dModel: d, heads, kvHeads, headDim: hd, dFF, vocab, normEps: eps } = config;
  const L = tokens.length;
  const qDim = heads * hd;
  const kvDim = kvHeads * hd;
  const group = heads / kvHeads;
  const scale = 1 / Math.sqrt(hd);

  // Each tensor as floats (a 16-bit one widened as it is read).
  const tensor = (name: string, shape: number[]): FloatTensor => {
    const t = expectShape(weights, name, shape);
    return { shape: t.shape, data: floatsOf(t) };
  };
  const embed = tensor('model.embed_tokens.weight', [vocab, d]);
  let h = new Float64Array(L * d);
  for (let r = 0; r < L; r++)
    h.set(embed.data.subarray((tokens[r] as number) * d, ((tokens[r] as number) + 1) * d), r * d);

  // Visibility is the same in every layer and head.
  const visible: Uint8Array = new Uint8Array(L * L);
  for (let i = 0; i < L; i++)
    for (let j = 0; j < L; j++) visible[i * L + j] = attends(config, layout, i, j) ? 1 : 0;

  const hidden: Float64Array[] = [];
  const scores = new Float64Array(L);
  for (let layer = 0; layer < config.layers; layer++) {
    const p = `model.layers.${layer}`;
    const w = (name: string, shape: number[]) => tensor(`${p}.${name}`, shape);
    const b = (name: string, shape: number[]) => (config.qkvBias ? w(name, shape) : undefined);

    // Attention.
    const x = rmsNorm(h, L, d, w('input_layernorm.weight', [d]).data, eps);
    const q = linear(x, L, w('self_attn.q_proj.weight', [qDim, d]), b('self_attn.q_proj.bias', [qDim]));
    const k = linear(x, L, w('self_attn.k_proj.weight', [kvDim, d]), b('self_attn.k_proj.bias', [kvDim]));
    const v = linear(x, L, w('self_attn.v_proj.weight', [kvDim, d]), b('self_attn.v_proj.bias', [kvDim]));
    if (config.qkNorm) {
      // Each head of q and k normalised by its own RMS (SDAR, after Qwen3), before RoPE.
      q.set(rmsNorm(q, L * heads, hd, w('self_attn.q_norm.weight', [hd]).data, eps));
      k.set(rmsNorm(k, L * kvHeads, hd, w('self_attn.k_norm.weight', [hd]).data, eps));
    }
    for (let r = 0; r < L; r++) {
      for (let hh = 0; hh < heads; hh++) applyRope(q, r * qDim + hh * hd, hd, r, config.ropeTheta);
      for (let g = 0; g < kvHeads; g++) applyRope(k, r * kvDim + g * hd, hd, r, config.ropeTheta);
    }
    const attn = new Float64Array(L * qDim);
    for (let hh = 0; hh < heads; hh++) {
      const g = Math.floor(hh / group);
      for (let i = 0; i < L; i++) {
        const qo = i * qDim + hh * hd;
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < L; j++) {
          if (!visible[i * L + j]) continue;
          const ko = j * kvDim + g * hd;
          let s = 0;
          for (let c = 0; c < hd; c++) s += (q[qo + c] as number) * (k[ko + c] as number);
          s *= scale;
          scores[j] = s;
          if (s > max) max = s;
        }
        let sum = 0;
        for (let j = 0; j < L; j++) {
          if (!visible[i * L + j]) continue;
          const e = Math.exp((scores[j] as number) - max);
          scores[j] = e;
          sum += e;
        }
        for (let j = 0; j < L; j++) {
          if (!visible[i * L + j]) continue;
          const pr = (scores[j] as number) / sum;
          const vo = j * kvDim + g * hd;
          for (let c = 0; c < hd; c++) attn[qo + c] = (attn[qo + c] as number) + pr * (v[vo + c] as number);
        }
      }
    }
    const o = linear(attn, L, w('self_attn.o_proj.weight', [d, qDim]));
    for (let t = 0; t < h.length; t++) h[t] = (h[t] as number) + (o[t] as number);

    // Feed-forward (SwiGLU).
    const x2 = rmsNorm(h, L, d, w('post_attention_layernorm.weight', [d]).data, eps);
    const gate = linear(x2, L, w('mlp.gate_proj.weight', [dFF, d]));
    const up = linear(x2, L, w('mlp.up_proj.weight', [dFF, d]));
    for (let t = 0; t < gate.length; t++) {
      const gv = gate[t] as number;
      gate[t] = (gv / (1 + Math.exp(-gv))) * (up[t] as number);
    }
    const down = linear(gate, L, w('mlp.down_proj.weight', [d, dFF]));
    for (let t = 0; t < h.length; t++) h[t] = (h[t] as number) + (down[t] as number);
    hidden.push(h);
    h = h.slice();
  }

  const xf = rmsNorm(h, L, d, tensor('model.norm.weight', [d]).data, eps);
  const head = config.tieEmbeddings ? embed : tensor('lm_head.weight', [vocab, d]);
  return { logits: linear(xf, L, head), hidden };
}

export interface SoftmaxStats {
  /** Largest probability. */
  confidence: number;
  /** Largest minus second largest probability (the largest when there is one entry). */
  margin: number;
  /** Shannon entropy in nats (natural log). */
  entropy: number;
  /** Index of the largest logit; the lowest such index on ties. */
  argmax: number;
}

/**
 * Statistics of softmax(logitsRow), computed stably (shifted by the maximum). Entries may be
 * -Infinity (probability 0); NaN, +Infinity or an empty/all -Infinity row is an error. The entry
 * `exclude` (the mask token: a prediction is never the mask itself) counts as -Infinity.
 */
export function softmaxStats(logitsRow: ArrayLike<number>, exclude = -1): SoftmaxStats {
  const n = logitsRow.length;
  if (n === 0) throw new RangeError('softmaxStats: empty row');
  const logit = (i: number) => (i === exclude ? Number.NEGATIVE_INFINITY : (logitsRow[i] as number));
  let argmax = -1;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const l = logit(i);
    if (Number.isNaN(l) || l === Number.POSITIVE_INFINITY)
      throw new RangeError(`softmaxStats: logit ${i} is ${l}`);
    if (l > max) {
      max = l;
      argmax = i;
    }
  }
  if (argmax < 0) throw new RangeError('softmaxStats: every logit is -Infinity');
  let sum = 0;
  let second = 0; // exp(second largest - max)
  let weighted = 0; // sum of exp(l - max) * (l - max)
  for (let i = 0; i < n; i++) {
    const z = logit(i) - max;
    const e = Math.exp(z);
    if (e === 0) continue;
    sum += e;
    weighted += e * z;
    if (i !== argmax && e > second) second = e;
  }
  const confidence = 1 / sum;
  return {
    confidence,
    margin: confidence - second / sum,
    entropy: Math.log(sum) - weighted / sum,
    argmax,
  };
}
