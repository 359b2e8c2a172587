"""Trains kvplan's bundled masked-diffusion LM (models/tiny-dllm) on the synthetic tasks of
src/eval/tasks.ts, evaluates it with the decoding of examples/baseline.kvp, and writes what
examples/train/export.ts turns into the ONNX file.

    /usr/bin/python3 examples/train/train.py            # the full run (fixed seeds)
    npx tsx examples/train/export.ts                    # -> models/tiny-dllm/model.onnx

The network is exactly kvplan's golden forward (src/model/golden.ts): LLaMA blocks (RMSNorm,
rotate-half RoPE, GQA attention without bias, SwiGLU), bidirectional attention, no AR shift,
untied lm_head. The objective is LLaDA's SFT loss: per sequence t ~ U(eps, 1), each response
token masked with probability t (prompt tokens never), cross-entropy on masked positions
weighted by 1/t, normalised by the response length (the 64-token canvas: answer + EOS padding).
One change: half of the sequences mask the same ratio t as a suffix of the response instead of
independently (see llada_loss), so that the model sees the decoded-left / masked-right states
that block decoding produces; with independent masks only, this small model never learned
where an answer ends (0% exact match at 4000 steps, every failure a missing stop).

Issue 17 additions (examples/train/README.md): the multi-step tasks (--mix fib=1,lcg=1,bub=1,
--terms), the block-diffusion objective for an SDAR-style model (--attention block_causal
--block-size B: aligned block-causal attention, q/k norm; block_diffusion_loss), evaluation of the
baseline and of threshold decoding with tokens per step, and export-hf.ts, which writes the result
as a Hugging Face checkpoint (LLaDA, SDAR or Fast-dLLM v2 layout) with the character tokenizer as
tokenizer.json; --ar-shift and --qkv-bias for a Fast-dLLM v2-style model (row p - 1 predicts p).
"""

import argparse
import csv
import json
import math
import os
import sys
import struct
import time

# Without this, libgomp's spinning threads fight OpenBLAS's (and any other process) for the 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks as T  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))

STOI = {c: i for i, c in enumerate(T.CHARS)}
EOS_ID = STOI[T.EOS]
MASK_ID = len(T.CHARS)
VOCAB = len(T.CHARS) + 1

CONFIG = {
    "name": "tiny-dllm",
    "layers": 4,
    "d_model": 128,
    "heads": 4,
    "kv_heads": 2,
    "head_dim": 32,
    "d_ff": 384,
    "vocab": VOCAB,
    "rope_theta": 10000.0,
    "qkv_bias": False,
    "norm_eps": 1e-5,
    "mask_token_id": MASK_ID,
    "ar_shift": False,
    "attention": "full",
    "tie_embeddings": False,
}
TOKENIZER = {"kind": "chars", "chars": T.CHARS, "eos": T.EOS}
MIX = [("count", 0.8), ("sort", 0.1), ("add", 0.1)]  # training mixture
BLOCK = 32  # examples/baseline.kvp: blocks of 32, one token per step
EVAL_TASKS = []  # evaluated and pinned tasks: those of the mixture unless --eval-tasks says otherwise
# Decoding for evaluation in bfloat16 autocast: on this machine Debian's torch runs float32 matmuls
# through OpenBLAS at ~0.5 GFLOP/s (a 20 x 76 canvas forward: 2.4 s) and bfloat16 ones through
# oneDNN ~50x faster. Set by --eval-bf16; kvplan's float32 backends give the exact numbers.
EVAL_BF16 = [True]


def encode(text):
    return [STOI[c] for c in text]


# ---------------------------------------------------------------------------------------------
# The model: kvplan's golden forward in PyTorch.


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.kv, self.hd = c["heads"], c["kv_heads"], c["head_dim"]
        d = c["d_model"]
        self.q_proj = nn.Linear(d, self.h * self.hd, bias=c["qkv_bias"])
        self.k_proj = nn.Linear(d, self.kv * self.hd, bias=c["qkv_bias"])
        self.v_proj = nn.Linear(d, self.kv * self.hd, bias=c["qkv_bias"])
        self.o_proj = nn.Linear(self.h * self.hd, d, bias=False)

        if c.get("qk_norm"):  # SDAR (after Qwen3): per-head RMSNorm of q and k before RoPE
            self.q_norm = RMSNorm(self.hd, c["norm_eps"])
            self.k_norm = RMSNorm(self.hd, c["norm_eps"])

    def forward(self, x, cos, sin, bias):
        B, L, _ = x.shape
        q = self.q_proj(x).view(B, L, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, L, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, L, self.kv, self.hd).transpose(1, 2)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        g = self.h // self.kv  # query head h reads KV head h // g
        k = k.repeat_interleave(g, dim=1)
        v = v.repeat_interleave(g, dim=1)
        s = (q * (1.0 / math.sqrt(self.hd))) @ k.transpose(-1, -2)
        if bias is not None:
            s = s + bias
        o = torch.softmax(s, dim=-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(B, L, self.h * self.hd))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["d_model"], c["d_ff"]
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c["d_model"], c["norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["d_model"], c["norm_eps"])
        self.mlp = MLP(c)

    def forward(self, h, cos, sin, bias):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, bias)
        return h + self.mlp(self.post_attention_layernorm(h))


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["d_model"])
        self.layers = nn.ModuleList([Layer(c) for _ in range(c["layers"])])
        self.norm = RMSNorm(c["d_model"], c["norm_eps"])


def rope_tables(L, hd, theta, positions=None):
    """cos, sin [L, hd/2]: position p, pair i rotated by p * theta^(-2i/hd) (angles in float64).
    Row r is at position r, or at positions[r] when given (the clean copy of block diffusion)."""
    i = torch.arange(hd // 2, dtype=torch.float64)
    p = torch.arange(L, dtype=torch.float64) if positions is None else positions.to(torch.float64)
    a = p[:, None] * theta ** (-(2 * i) / hd)[None, :]
    return torch.cos(a).float(), torch.sin(a).float()


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def block_mask(L, size):
    """kvplan's block_causal attention with aligned blocks (src/model/golden.ts `attends`, layout
    aligned: SDAR, Fast-dLLM v2): blocks of `size` counted from position 0, the prompt split into
    them; row i attends to row j iff block(j) <= block(i). [L, L] bool."""
    blk = torch.arange(L) // size
    return blk[None, :] <= blk[:, None]


class DiffusionLM(nn.Module):
    """Hugging Face LLaMA names: model.embed_tokens, model.layers.N.self_attn.q_proj, lm_head, ..."""

    def __init__(self, c, block_size=None):
        super().__init__()
        self.c = c
        self.block_size = block_size  # the block of a block_causal model (not a kvplan config field)
        if c["attention"] == "block_causal":
            assert c.get("aligned_blocks") and block_size, "block_causal models here have aligned blocks"
        self.model = Inner(c)
        self.lm_head = nn.Linear(c["d_model"], c["vocab"], bias=False)
        std = 0.02
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):  # RMSNorm weights (layer norms, q/k norms) start at 1
                continue
            s = std / math.sqrt(2 * c["layers"]) if name.endswith(("o_proj.weight", "down_proj.weight")) else std
            nn.init.normal_(p, 0.0, s)

    def forward(self, ids, valid=None, positions=None, allowed=None):
        """ids [B, L]; valid [B, L] bool (False = padding, never attended to). Logits [B, L, V].
        `allowed` [L, L] bool (query row, key row): which keys a row may attend to; by default all
        (full attention) or, for a block-causal model, kvplan's structural mask (block_mask)."""
        L = ids.shape[1]
        cos, sin = rope_tables(L, self.c["head_dim"], self.c["rope_theta"], positions)
        if allowed is None and self.c["attention"] == "block_causal":
            allowed = block_mask(L, self.block_size)
        bias = None
        if valid is not None and not bool(valid.all()):
            bias = torch.zeros(valid.shape, dtype=torch.float32).masked_fill(~valid, float("-inf"))
            bias = bias[:, None, None, :]
        if allowed is not None:
            a = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, float("-inf"))
            bias = a[None, None] if bias is None else bias + a[None, None]
        h = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            h = layer(h, cos, sin, bias)
        return self.lm_head(self.model.norm(h))


# ---------------------------------------------------------------------------------------------
# Data.


def canvas(p):
    """Prompt tokens, then the 64-token response: the answer and EOS up to the end."""
    prompt, ans = encode(p["prompt"]), encode(p["answer"])
    assert len(ans) < T.GEN_LENGTH, p
    return prompt, ans + [EOS_ID] * (T.GEN_LENGTH - len(ans))


def collate(problems):
    """ids [B, Lmax] (padded with EOS), valid [B, Lmax], response [B, Lmax] bool."""
    rows = [canvas(p) for p in problems]
    Lmax = max(len(a) + len(b) for a, b in rows)
    B = len(rows)
    ids = torch.full((B, Lmax), EOS_ID, dtype=torch.long)
    valid = torch.zeros((B, Lmax), dtype=torch.bool)
    resp = torch.zeros((B, Lmax), dtype=torch.bool)
    for b, (pr, rs) in enumerate(rows):
        ids[b, : len(pr) + len(rs)] = torch.tensor(pr + rs)
        valid[b, : len(pr) + len(rs)] = True
        resp[b, len(pr) : len(pr) + len(rs)] = True
    return ids, valid, resp


def training_problems(rng, n):
    """n problems of the training mixture (no held-out prompt among them)."""
    names = [name for name, _ in MIX]
    cum, acc = [], 0.0
    for _, w in MIX:
        acc += w
        cum.append(acc)
    out = []
    for _ in range(n):
        u = rng() * acc
        task = names[next(i for i, c in enumerate(cum) if u < c)]
        out.append(T.training_problem(task, rng))
    return out


def training_batches(rng, batch, pool=4):
    """Batches of the mixture, grouped by prompt length to save padding: `pool` batches' worth of
    problems is drawn, sorted by prompt length, cut into batches, and the batches shuffled."""
    while True:
        probs = sorted(training_problems(rng, batch * pool), key=lambda p: len(p["prompt"]))
        chunks = [probs[i : i + batch] for i in range(0, len(probs), batch)]
        for i in range(len(chunks) - 1, 0, -1):  # Fisher-Yates with the data rng
            j = int(rng() * (i + 1))
            chunks[i], chunks[j] = chunks[j], chunks[i]
        yield from chunks


def shifted(logits):
    """An AR-shift model (Dream, Fast-dLLM v2: config ar_shift) predicts position p from row p - 1:
    the prediction for p is logits[p - 1]; position 0 has none (it is never in a response)."""
    if not CONFIG["ar_shift"]:
        return logits
    return torch.cat([torch.zeros_like(logits[:, :1]), logits[:, :-1]], dim=1)


def llada_loss(model, ids, valid, resp, gen, eps=0.05, bf16=False, suffix=0.5, frontier=0, far=1.0):
    B = ids.shape[0]
    # t ~ U(eps, 1), stratified over the batch (one draw per 1/B slice) for a steadier gradient.
    u = (torch.rand(1, generator=gen) + torch.arange(B)) / B
    t = eps + (1 - eps) * u[torch.randperm(B, generator=gen)]
    # LLaDA: each response token masked with probability t. For a fraction `suffix` of the
    # sequences the same ratio is masked as a suffix instead (the last ceil(t * 64) tokens): the
    # state semi-autoregressive block decoding creates (decoded left, masked right), which iid
    # masks almost never show a small model (it then never learns where an answer ends).
    iid = torch.rand(ids.shape, generator=gen) < t[:, None]
    rel = torch.cumsum(resp.long(), dim=1) - 1  # index within the response (-1 before it)
    cut = T.GEN_LENGTH - torch.ceil(t * T.GEN_LENGTH).long()
    tail = rel >= cut[:, None]
    use_tail = (torch.rand(B, generator=gen) < suffix)[:, None]
    masked = torch.where(use_tail, tail, iid) & resp
    noisy = torch.where(masked, torch.full_like(ids, MASK_ID), ids)
    with torch.cpu.amp.autocast(enabled=bool(bf16), dtype=torch.bfloat16):
        logits = model(noisy, valid)
    logits = shifted(logits.float())
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1), reduction="none").view(B, -1)
    weight = masked.float()
    if frontier:
        # A suffix-masked sequence has one frontier (decoded left, masked right): its first
        # `frontier` masked positions are what semi-autoregressive decoding commits next, and what
        # a small model can learn; the far ones are mostly unpredictable and weigh `far` (they
        # still teach the model to be unsure there, so that it does not commit them early).
        near = tail & (rel < (cut + frontier)[:, None])
        weight = torch.where(use_tail & tail & ~near, far * weight, weight)
    per_seq = (ce * weight).sum(-1) / t / T.GEN_LENGTH
    # For the log: per sequence, masked answer characters (EOS excluded) and how many are right.
    chars = masked & (ids != EOS_ID)
    right = (chars & (logits.argmax(-1) == ids)).sum(-1)
    return per_seq.mean(), chars.sum(-1), right


def block_diffusion_loss(model, ids, valid, resp, gen, size, eps=0.05, bf16=False, suffix=0.5):
    """The block-diffusion objective (BD3-LM; SDAR, Fast-dLLM v2): blocks of `size` counted from
    position 0; every block gets its own ratio t ~ U(eps, 1) and its response tokens are masked with
    it (independently, or for a share `suffix` of the blocks as a suffix of the block's response).
    The model reads [noisy canvas | clean canvas] (2L rows, the clean copy at the same positions):
    a noisy row attends to the noisy rows of its own block and to the clean rows of earlier blocks,
    a clean row to the clean rows of its block and earlier ones (block_mask). So every masked row
    sees exactly what kvplan's golden forward shows it during decoding: its block, partly masked,
    bidirectionally, and the decoded blocks before it; later blocks are invisible in both. Loss:
    cross-entropy on masked rows weighted by 1/t of their block, normalised by the 64-token
    response, as llada_loss."""
    Bt, L = ids.shape
    blk = torch.arange(L) // size
    nblk = int(blk[-1]) + 1
    t = eps + (1 - eps) * torch.rand((Bt, nblk), generator=gen)
    tpos = t[:, blk]
    iid = torch.rand(ids.shape, generator=gen) < tpos
    tail = torch.zeros_like(iid)
    for b in range(nblk):
        inb = resp & (blk == b)[None, :]
        n = inb.sum(-1)  # response rows of this block, per sequence
        k = torch.ceil(t[:, b] * n).long()  # how many to mask
        rank = torch.cumsum(inb.long(), dim=1)  # 1-based index within the block's response rows
        tail |= inb & (rank > (n - k)[:, None])
    use_tail = torch.rand((Bt, nblk), generator=gen)[:, blk] < suffix
    masked = torch.where(use_tail, tail, iid) & resp
    noisy = torch.where(masked, torch.full_like(ids, MASK_ID), ids)
    x = torch.cat([noisy, ids], dim=1)
    positions = torch.cat([torch.arange(L), torch.arange(L)])
    bq = torch.cat([blk, blk])
    is_noisy = torch.cat([torch.ones(L, dtype=torch.bool), torch.zeros(L, dtype=torch.bool)])
    nq, nk = is_noisy[:, None], is_noisy[None, :]
    same, before = bq[None, :] == bq[:, None], bq[None, :] < bq[:, None]
    allowed = (nq & nk & same) | (nq & ~nk & before) | (~nq & ~nk & (same | before))
    with torch.cpu.amp.autocast(enabled=bool(bf16), dtype=torch.bfloat16):
        both = model(x, torch.cat([valid, valid], dim=1), positions, allowed).float()
    logits = both[:, :L]
    if CONFIG["ar_shift"]:
        # Row p - 1 predicts p: its noisy copy inside p's block; across a block boundary its clean
        # copy, which is what decoding shows the first row of a block (the finished block before).
        inside = (blk[1:] == blk[:-1])[None, :, None]
        prev = torch.where(inside, logits[:, :-1], both[:, L:][:, :-1])
        logits = torch.cat([torch.zeros_like(logits[:, :1]), prev], dim=1)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids.reshape(-1), reduction="none").view(Bt, -1)
    per_seq = (ce * masked.float() / tpos).sum(-1) / T.GEN_LENGTH
    chars = masked & (ids != EOS_ID)
    right = (chars & (logits.argmax(-1) == ids)).sum(-1)
    return per_seq.mean(), chars.sum(-1), right


# ---------------------------------------------------------------------------------------------
# Decoding, as kvplan's plans do it without a cache: blocks of `block` (counted from the end of
# the prompt, or from position 0 for a model with aligned blocks, as Canvas.origin), the current
# block decoded by confidence (softmax max) with
#   rule "steps":     one token per step, the most confident masked position of the block
#                     (examples/baseline.kvp with steps_per_block = block; ties: lowest position);
#   rule "threshold": every masked position of the block whose confidence reaches tau, and always
#                     the most confident one (the no-cache twin of fast-dllm-*.kvp: threshold(0.9)).
# A sequence stops once it has committed an EOS and everything before it (docs/runtime.md); its
# steps and its generated tokens (up to and including the first EOS) are counted as kvplan eval does.


@torch.no_grad()
def generate(model, problems, rule="steps", tau=0.9, block=None):
    model.eval()
    block = block or BLOCK
    aligned = bool(CONFIG.get("aligned_blocks"))
    rows = [encode(p["prompt"]) for p in problems]
    B = len(rows)
    P = torch.tensor([len(r) for r in rows])
    Lmax = int(P.max()) + T.GEN_LENGTH
    ids = torch.full((B, Lmax), EOS_ID, dtype=torch.long)
    valid = torch.zeros((B, Lmax), dtype=torch.bool)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
        ids[b, len(r) : len(r) + T.GEN_LENGTH] = MASK_ID
        valid[b, : len(r) + T.GEN_LENGTH] = True
    pos = torch.arange(Lmax)[None, :]
    rel = pos - P[:, None]  # position within the response
    gen_rows = (rel >= 0) & (rel < T.GEN_LENGTH)
    bid = (pos // block - (P // block)[:, None]) if aligned else torch.div(rel, block, rounding_mode="floor")
    steps = torch.zeros(B, dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool)
    for blk in range(int(bid[gen_rows].max()) + 1):
        in_block = gen_rows & (bid == blk)
        while True:
            cand = in_block & (ids == MASK_ID) & ~done[:, None]
            active = cand.any(-1)
            if not bool(active.any()):
                break
            with torch.cpu.amp.autocast(enabled=EVAL_BF16[0], dtype=torch.bfloat16):
                logits = model(ids, valid)
            conf, tok = torch.softmax(shifted(logits.float()), dim=-1).max(-1)
            conf = torch.where(cand, conf, torch.full_like(conf, -1.0))
            best = torch.zeros_like(cand)
            best[torch.arange(B), conf.argmax(-1)] = True
            commit = (best & cand) | ((conf >= tau) & cand if rule == "threshold" else torch.zeros_like(cand))
            ids = torch.where(commit, tok, ids)
            steps += active.long()
            # Stop rule: an EOS committed, and every position before the first one decoded.
            is_eos = (ids == EOS_ID) & gen_rows
            first = torch.where(is_eos.any(-1), torch.where(is_eos, pos, Lmax).min(-1).values, Lmax)
            masked_before = (gen_rows & (ids == MASK_ID) & (pos < first[:, None])).any(-1)
            done |= is_eos.any(-1) & ~masked_before
    outs, tokens = [], []
    for b in range(B):
        gen = ids[b, int(P[b]) : int(P[b]) + T.GEN_LENGTH].tolist()
        text = "".join("_" if i == MASK_ID else T.CHARS[i] for i in gen)
        outs.append(text.split(T.EOS, 1)[0])
        tokens.append(min(len(outs[-1]) + 1, T.GEN_LENGTH))
    return outs, steps.tolist(), tokens


def evaluate(model, n, chunk=120, tasks=None, rules=(("steps", None),)):
    """Exact-match accuracy per task on held_out_problems(task, n, seed=1), per decoding rule:
    ("steps", None) = the one-token-per-step baseline, ("threshold", tau) = its threshold twin.
    The tasks' problems are decoded together, `chunk` at a time (fewer, larger forwards)."""
    tasks = tasks or EVAL_TASKS
    probs = [p for task in tasks for p in T.held_out_problems(task, n, 1)]
    res = {}
    for task in tasks:
        res[task] = {"n": n, "mean_answer_tokens": sum(len(p["answer"]) for p in probs if p["task"] == task) / n}
    for rule, tau in rules:
        outs, steps, toks = [], [], []
        for i in range(0, len(probs), chunk):
            o, s_, t_ = generate(model, probs[i : i + chunk], rule, tau or 0.9)
            outs, steps, toks = outs + o, steps + s_, toks + t_
        key = "baseline" if rule == "steps" else f"threshold_{tau}"
        for task in tasks:
            rows = [(o, p, s_, t_) for o, p, s_, t_ in zip(outs, probs, steps, toks) if p["task"] == task]
            ok = [o == p["answer"] for o, p, _, _ in rows]
            res[task][key] = {
                "accuracy": sum(ok) / n,
                "steps_per_problem": sum(r[2] for r in rows) / n,
                "tokens_per_step": sum(r[3] for r in rows) / max(1, sum(r[2] for r in rows)),
                "examples": [{"prompt": p["prompt"], "answer": p["answer"], "output": o} for o, p, _, _ in rows[:3]],
            }
            if rule == "steps":
                res[task]["accuracy"] = sum(ok) / n  # the baseline's, as before
    model.train()
    return res


def brief(res):
    """{task: 'acc / tau-acc @ tokens/step'} for the log."""
    out = {}
    for task, r in res.items():
        parts = [f"{r['baseline']['accuracy']:.2f}"]
        for k, v in r.items():
            if k.startswith("threshold_"):
                parts.append(f"thr {v['accuracy']:.2f} @ {v['tokens_per_step']:.2f} tok/step")
        out[task] = ", ".join(parts)
    return out


# ---------------------------------------------------------------------------------------------
# Outputs.


def write_weights(model, out_dir):
    """weights.bin (float32 little-endian, concatenated) + weights.json (config, tokenizer, index)."""
    os.makedirs(out_dir, exist_ok=True)
    index, offset = [], 0
    with open(os.path.join(out_dir, "weights.bin"), "wb") as f:
        for name, t in model.state_dict().items():
            data = t.detach().float().contiguous().numpy().astype("<f4").tobytes()
            f.write(data)
            index.append({"name": name, "shape": list(t.shape), "offset": offset})
            offset += len(data)
    with open(os.path.join(out_dir, "weights.json"), "w") as f:
        manifest = {"config": CONFIG, "tokenizer": TOKENIZER, "tensors": index}
        if CONFIG["attention"] == "block_causal":
            manifest["block_size"] = BLOCK
        json.dump(manifest, f, indent=1)


@torch.no_grad()
def write_reference(model, path, seed):
    """Logits of the float32 PyTorch model on three fixed, partly masked canvases (parity test),
    hashes of a few prompts, and the first held-out problems of each task (tasks.py == tasks.ts)."""
    model.eval()
    cases = []
    for k, task in enumerate(EVAL_TASKS):
        p = T.held_out_problems(task, 1, 1)[0]
        prompt, resp = canvas(p)
        # Mask a fixed pattern of the response: every position i with (i * 5 + k) % 3 != 0.
        resp = [MASK_ID if (i * 5 + k) % 3 != 0 else t for i, t in enumerate(resp)]
        tokens = prompt + resp
        logits = model(torch.tensor([tokens]))[0]
        rows = [len(prompt) - 1] + list(range(len(prompt), len(prompt) + 6)) + [len(tokens) - 1]
        cases.append(
            {
                "task": task,
                "prompt": p["prompt"],
                "tokens": tokens,
                "prompt_len": len(prompt),
                "rows": rows,
                "logits": [[round(float(x), 6) for x in logits[r]] for r in rows],
            }
        )
    prompts = ["", "rev:abc=", "sort:3917=", "12+345=", "7+5="]
    rng = T.create_rng(99)
    for task in EVAL_TASKS:
        prompts += [T.TASKS[task](rng)["prompt"] for _ in range(5)]
    hashes = [{"prompt": s, "fnv1a32": T.fnv1a32(s), "held_out": T.is_held_out(s)} for s in prompts]
    held = {task: T.held_out_problems(task, 5, 1) for task in EVAL_TASKS}
    # The first problems of the training stream (training_problems with the training seed).
    sample = training_problems(T.create_rng(seed), 150)
    with open(path, "w") as f:
        ref = {"cases": cases, "hashes": hashes, "held_out": held, "training_sample": sample}
        if CONFIG["attention"] == "block_causal":
            ref["block_size"] = BLOCK  # the layout of the cases: aligned blocks of this size
        json.dump(ref, f, indent=1)
    model.train()


# ---------------------------------------------------------------------------------------------


def lr_at(step, steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    q = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * q)))


# LLaDA checkpoints (kvplan writes the full-attention models in LLaDA's layout) use OLMo's names;
# the model here uses the Hugging Face LLaMA ones (src/model/hf/families.ts holds the same map).
LLADA_NAMES = {
    "model.transformer.wte.weight": "model.embed_tokens.weight",
    "model.transformer.ln_f.weight": "model.norm.weight",
    "model.transformer.ff_out.weight": "lm_head.weight",
}
LLADA_BLOCK = {
    "attn_norm": "input_layernorm",
    "q_proj": "self_attn.q_proj",
    "k_proj": "self_attn.k_proj",
    "v_proj": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj",
    "ff_norm": "post_attention_layernorm",
    "ff_proj": "mlp.gate_proj",
    "up_proj": "mlp.up_proj",
    "ff_out": "mlp.down_proj",
}


def llada_block_name(stored):
    parts = stored.split(".")
    if len(parts) != 6 or parts[:3] != ["model", "transformer", "blocks"] or parts[4] not in LLADA_BLOCK:
        return None
    return f"model.layers.{parts[3]}.{LLADA_BLOCK[parts[4]]}.{parts[5]}"


def read_init(path, names):
    """The tensors under `names` of a kvplan model: an ONNX file, or a checkpoint (a directory or
    its .safetensors file) that kvplan wrote. Both use the Hugging Face names of the state dict,
    with nn.Linear weights as [out, in]; an ONNX graph's other constants are not parameters."""
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    if path.endswith(".safetensors"):
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
            data = f.read()
        dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
        out = {}
        for stored, t in header.items():
            name = LLADA_NAMES.get(stored) or llada_block_name(stored) or stored
            if name not in names:
                continue
            a, b = t["data_offsets"]
            raw = torch.frombuffer(bytearray(data[a:b]), dtype=dtypes[t["dtype"]])
            out[name] = raw.reshape(t["shape"]).float()
        return out
    import onnx
    import onnx.numpy_helper as nh

    return {
        i.name: torch.from_numpy(nh.to_array(i).copy())
        for i in onnx.load(path).graph.initializer
        if i.name in names
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=9000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eps", type=float, default=0.05, help="t ~ U(eps, 1)")
    ap.add_argument("--suffix", type=float, default=0.5, help="share of sequences masked as a suffix")
    ap.add_argument("--bf16", type=int, default=1, help="bfloat16 autocast for training (eval is float32)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=2000, help="quick held-out eval (0 = never)")
    ap.add_argument("--quick-n", type=int, default=20, help="held-out problems per task, quick eval")
    ap.add_argument("--eval-n", type=int, default=200, help="held-out problems per task, final eval")
    ap.add_argument("--out", default=os.path.join(HERE, "out"), help="intermediate weights + checkpoint")
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "tiny-dllm"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=INT", help="config override (pilots)")
    ap.add_argument("--mix", default=None, help="task mixture, e.g. fib=1,lcg=1 (default count=.8,sort=.1,add=.1)")
    ap.add_argument("--name", default=None, help="model name (config) and default --model-dir models/<name>")
    ap.add_argument("--terms", default=None, help="answer length per task for pilots, e.g. fib=8 (terms or passes)")
    ap.add_argument("--eval-tasks", default=None, help="tasks to evaluate and pin (default: the mixture's)")
    ap.add_argument("--tau", type=float, default=0.9, help="also evaluate threshold decoding at tau (0 = no)")
    ap.add_argument(
        "--attention",
        default="full",
        choices=["full", "block_causal"],
        help="block_causal: SDAR-style aligned block-causal attention, block-diffusion objective",
    )
    ap.add_argument("--block-size", type=int, default=None, help="block of a block_causal model (default 4)")
    ap.add_argument("--qk-norm", type=int, default=None, help="per-head q/k RMSNorm (default: 1 if block_causal)")
    ap.add_argument("--frontier", type=int, default=0, help="full attention: weigh the first N masked positions of a suffix 1, the rest --far (0 = LLaDA's loss)")
    ap.add_argument("--far", type=float, default=1.0, help="weight of the masked positions beyond --frontier")
    ap.add_argument("--init", default=None, help="start from the weights of a kvplan model of the same shape: ONNX file or checkpoint directory (e.g. models/step-v2)")
    ap.add_argument("--ar-shift", type=int, default=0, help="row i predicts position i + 1 (Dream, Fast-dLLM v2)")
    ap.add_argument("--qkv-bias", type=int, default=0, help="biases on q/k/v projections (Qwen2: Fast-dLLM v2)")
    ap.add_argument("--eval-bf16", type=int, default=1, help="evaluate in bfloat16 autocast (see EVAL_BF16)")
    ap.add_argument("--time-limit", type=float, default=0, help="stop training after this many seconds (pilots)")
    args = ap.parse_args()
    for kv in args.set:
        k, v = kv.split("=")
        CONFIG[k] = int(v)
    if args.mix:
        MIX[:] = [(k, float(v)) for k, v in (x.split("=") for x in args.mix.split(","))]
    for task, _ in MIX:
        assert task in T.TASKS, f"unknown task {task}"
    if args.terms:
        T.TERMS.update({k: int(v) for k, v in (x.split("=") for x in args.terms.split(","))})
    EVAL_TASKS[:] = args.eval_tasks.split(",") if args.eval_tasks else [t for t, _ in MIX]
    if args.name:
        CONFIG["name"] = args.name
        if args.model_dir == ap.get_default("model_dir"):
            args.model_dir = os.path.join(ROOT, "models", args.name)
    if args.attention == "block_causal":
        global BLOCK
        BLOCK = args.block_size or 4
        CONFIG.update(attention="block_causal", aligned_blocks=True)
        if args.qk_norm is None or args.qk_norm:
            CONFIG["qk_norm"] = True
    elif args.qk_norm:
        CONFIG["qk_norm"] = True
    CONFIG.update(ar_shift=bool(args.ar_shift), qkv_bias=bool(args.qkv_bias))
    EVAL_BF16[0] = bool(args.eval_bf16)
    rules = (("steps", None),) + ((("threshold", args.tau),) if args.tau else ())

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    data_rng = T.create_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.model_dir, exist_ok=True)

    model = DiffusionLM(CONFIG, BLOCK if CONFIG["attention"] == "block_causal" else None)
    if args.init:
        state = model.state_dict()
        given = read_init(args.init, set(state))
        assert set(given) == set(state), f"{args.init} lacks {sorted(set(state) - set(given))}"
        model.load_state_dict(given)
        print(f"initialised from {args.init}", flush=True)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"model {CONFIG['name']}: {nparams:,} parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )

    log_path = os.path.join(args.model_dir, "loss.csv")
    log = open(log_path, "w", newline="")
    writer = csv.writer(log)
    writer.writerow(["step", "loss", "lr", "elapsed_s"] + [f"{t}_char_acc" for t, _ in MIX])
    t0 = time.time()
    running, count = 0.0, 0
    tok_acc = {task: [0, 0] for task, _ in MIX}
    evals = []
    batches = training_batches(data_rng, args.batch)
    done_steps = 0
    for step in range(args.steps):
        if args.time_limit and time.time() - t0 > args.time_limit:
            print(f"time limit: stopped after {step} steps", flush=True)
            break
        done_steps = step + 1
        lr = lr_at(step, args.steps, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = next(batches)
        ids, valid, resp = collate(batch)
        if CONFIG["attention"] == "block_causal":
            loss, n_chars, n_right = block_diffusion_loss(
                model, ids, valid, resp, gen, BLOCK, args.eps, args.bf16, args.suffix
            )
        else:
            loss, n_chars, n_right = llada_loss(
                model, ids, valid, resp, gen, args.eps, args.bf16, args.suffix, args.frontier, args.far
            )
        for p, a, b in zip(batch, n_chars.tolist(), n_right.tolist()):
            tok_acc[p["task"]][0] += a
            tok_acc[p["task"]][1] += b
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running += loss.item()
        count += 1
        if (step + 1) % 25 == 0 or step + 1 == args.steps:
            el = time.time() - t0
            accs = [f"{b / a:.4f}" if a else "" for a, b in tok_acc.values()]
            writer.writerow([step + 1, f"{running / count:.5f}", f"{lr:.6g}", f"{el:.1f}"] + accs)
            log.flush()
            print(f"step {step + 1} loss {running / count:.4f} lr {lr:.2e} {el:.0f}s acc {accs}", flush=True)
            running, count = 0.0, 0
            tok_acc = {task: [0, 0] for task, _ in MIX}
        if args.eval_every and (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
            te = time.time()
            r = evaluate(model, args.quick_n, rules=rules)
            acc = {k: v["accuracy"] for k, v in r.items()}
            entry = {"step": step + 1, "n": args.quick_n, "accuracy": acc}
            if args.tau:
                key = f"threshold_{args.tau}"
                entry["threshold"] = {
                    k: [v[key]["accuracy"], round(v[key]["tokens_per_step"], 3)] for k, v in r.items()
                }
            evals.append(entry)
            print(f"eval step {step + 1} ({time.time() - t0:.0f}s): {brief(r)}", flush=True)
            torch.save(model.state_dict(), os.path.join(args.out, "checkpoint.pt"))
            t0 += time.time() - te  # elapsed_s counts training only
    log.close()
    train_s = time.time() - t0
    print(f"trained {done_steps} steps in {train_s:.0f}s", flush=True)

    write_weights(model, args.out)
    write_reference(model, os.path.join(args.model_dir, "reference.json"), args.seed)
    t1 = time.time()
    final = evaluate(model, args.eval_n, rules=rules)
    for k, v in final.items():
        print(f"final {k}: {brief({k: v})[k]} on {v['n']} ({v['mean_answer_tokens']:.1f} answer tokens)")
    summary = {
        "command": " ".join(["/usr/bin/python3", "examples/train/train.py"] + sys.argv[1:]),
        "config": CONFIG,
        "parameters": nparams,
        "steps": done_steps,
        "steps_planned": args.steps,
        "mix": MIX,
        "terms": T.TERMS,
        "block": BLOCK,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "threads": args.threads,
        "train_wall_s": round(train_s, 1),
        "eval_wall_s": round(time.time() - t1, 1),
        "torch": torch.__version__,
        "evals_during_training": evals,
        "final": final,
    }
    with open(os.path.join(args.model_dir, "eval.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
