#!/usr/bin/env python3
"""Foreign ONNX fixtures for kvplan (issue 16): plain `torch.onnx.export` files of tiny LLaMA-family
models, as a user would bring them, with PyTorch's logits.

Usage: /usr/bin/python3 test/oracle/export_foreign.py test/fixtures/onnx-foreign
       npx biome format --write test/fixtures/onnx-foreign   # the JSON in the repository's style
(Debian's python3-torch 1.13 only: no transformers, no onnx package, no numpy. Deterministic:
a second run writes the same bytes.)

The modules below are written from the published Hugging Face LLaMA / Qwen2 model code
(transformers models/llama/modeling_llama.py and models/qwen2/modeling_qwen2.py: LlamaRMSNorm,
LlamaRotaryEmbedding with its default rope init, rotate_half, apply_rotary_pos_emb, repeat_kv,
LlamaAttention's eager path, LlamaMLP, LlamaDecoderLayer, LlamaModel, LlamaForCausalLM), not from
kvplan, with one change: the attention is bidirectional (no causal mask), as in a diffusion LM,
unless the variant asks for the causal mask, which kvplan must refuse.

Each model is exported with the legacy TorchScript exporter, do_constant_folding=True and a
dynamic sequence length, so the file has what such exports have: projections folded into
anonymous transposed `onnx::MatMul_*` initializers, the rotary frequencies as a constant, and no
kvplan metadata. Next to each bidirectional one goes its sidecar `<name>.kvplan.json` with the
mask token id (vocab - 1), which no graph records. The reference logits are PyTorch's forward in float64 over the float32 weights
stored in the file (rotary frequencies recomputed in float64 from rope_theta).
"""

import copy
import json
import math
import os
import platform
import sys

try:
    import torch
    from torch import nn

    # The same transcriptions of HF's rotate_half, apply_rotary_pos_emb and repeat_kv as the
    # checkpoint oracle's (this directory is on sys.path when a script in it runs).
    from hf_reference import hf_apply_rotary, repeat_kv
except ImportError:
    raise SystemExit("export_foreign.py needs PyTorch: apt-get install -y --no-install-recommends "
                     "python3-torch, then run it with /usr/bin/python3")

SCRIPT_VERSION = 1
SEED = 20250216
OPSET = 14
SEQUENCES = [[3, 17, 5, 40, 40, 40, 40, 40], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [47, 0, 23]]

# name -> shape. qwen2: GQA with q/k/v bias (Qwen2Attention); llama: multi-head, no bias, and
# head_dim (16) not hidden / heads (8), as a LlamaConfig with an explicit head_dim allows.
VARIANTS = {
    "qwen2-tiny": dict(layers=2, d=32, heads=4, kv=2, hd=8, ff=64, vocab=48, theta=1000000.0,
                       eps=1e-6, bias=True, causal=False),
    "llama-tiny": dict(layers=2, d=32, heads=2, kv=2, hd=16, ff=48, vocab=48, theta=10000.0,
                       eps=1e-5, bias=False, causal=False),
    # The same architecture with LLaMA's causal mask: an autoregressive model kvplan must refuse.
    "llama-causal": dict(layers=1, d=16, heads=2, kv=1, hd=8, ff=32, vocab=24, theta=10000.0,
                         eps=1e-5, bias=False, causal=True),
}


class RMSNorm(nn.Module):  # LlamaRMSNorm / Qwen2RMSNorm
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        # HF upcasts to float32 here; the float64 reference run must not be downcast.
        hidden_states = hidden_states.to(torch.float32) if input_dtype == torch.float32 else hidden_states
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class RotaryEmbedding(nn.Module):  # LlamaRotaryEmbedding, rope_type "default"
    def __init__(self, dim, base):
        super().__init__()
        self.dim, self.base = dim, base
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x, position_ids):
        # HF takes the float32 buffer (.float()); the float64 reference run keeps its float64 one.
        inv_freq_expanded = self.inv_freq[None, :, None].to(self.inv_freq.dtype).expand(position_ids.shape[0], -1, 1)
        position_ids_expanded = position_ids[:, None, :].to(inv_freq_expanded.dtype)
        freqs = (inv_freq_expanded @ position_ids_expanded).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def in_float64(self):
        # The reference run: frequencies from rope_theta in float64, not the float32 buffer.
        d = self.dim
        self.inv_freq = 1.0 / (self.base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))


class Attention(nn.Module):  # LlamaAttention (eager) / Qwen2Attention (bias on q, k, v)
    def __init__(self, s):
        super().__init__()
        self.heads, self.kv, self.hd, self.causal = s["heads"], s["kv"], s["hd"], s["causal"]
        self.scaling = self.hd ** -0.5
        self.q_proj = nn.Linear(s["d"], s["heads"] * s["hd"], bias=s["bias"])
        self.k_proj = nn.Linear(s["d"], s["kv"] * s["hd"], bias=s["bias"])
        self.v_proj = nn.Linear(s["d"], s["kv"] * s["hd"], bias=s["bias"])
        self.o_proj = nn.Linear(s["heads"] * s["hd"], s["d"], bias=False)

    def forward(self, hidden_states, cos, sin):
        bsz, q_len, _ = hidden_states.size()
        q = self.q_proj(hidden_states).view(bsz, q_len, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(hidden_states).view(bsz, q_len, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(hidden_states).view(bsz, q_len, self.kv, self.hd).transpose(1, 2)
        q, k = hf_apply_rotary(q, k, cos, sin)
        k = repeat_kv(k, self.heads // self.kv)
        v = repeat_kv(v, self.heads // self.kv)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        if self.causal:
            # LlamaModel's causal mask: min-value above the diagonal.
            mask = torch.full((q_len, q_len), torch.finfo(scores.dtype).min, dtype=scores.dtype)
            scores = scores + torch.triu(mask, diagonal=1)
        upcast = torch.float32 if q.dtype == torch.float32 else q.dtype  # as above
        probs = nn.functional.softmax(scores, dim=-1, dtype=upcast).to(q.dtype)
        out = torch.matmul(probs, v).transpose(1, 2).contiguous()
        return self.o_proj(out.reshape(bsz, q_len, -1))


class MLP(nn.Module):  # LlamaMLP, hidden_act "silu"
    def __init__(self, s):
        super().__init__()
        self.gate_proj = nn.Linear(s["d"], s["ff"], bias=False)
        self.up_proj = nn.Linear(s["d"], s["ff"], bias=False)
        self.down_proj = nn.Linear(s["ff"], s["d"], bias=False)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.self_attn = Attention(s)
        self.mlp = MLP(s)
        self.input_layernorm = RMSNorm(s["d"], s["eps"])
        self.post_attention_layernorm = RMSNorm(s["d"], s["eps"])

    def forward(self, h, cos, sin):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class Model(nn.Module):  # LlamaModel
    def __init__(self, s):
        super().__init__()
        self.embed_tokens = nn.Embedding(s["vocab"], s["d"])
        self.layers = nn.ModuleList([DecoderLayer(s) for _ in range(s["layers"])])
        self.norm = RMSNorm(s["d"], s["eps"])
        self.rotary_emb = RotaryEmbedding(s["hd"], s["theta"])

    def forward(self, input_ids):
        h = self.embed_tokens(input_ids)
        position_ids = torch.arange(0, h.shape[1], device=h.device).unsqueeze(0)
        cos, sin = self.rotary_emb(h, position_ids)
        for layer in self.layers:
            h = layer(h, cos, sin)
        return self.norm(h)


class ForCausalLM(nn.Module):  # LlamaForCausalLM
    def __init__(self, s):
        super().__init__()
        self.model = Model(s)
        self.lm_head = nn.Linear(s["d"], s["vocab"], bias=False)

    def forward(self, input_ids):
        return self.lm_head(self.model(input_ids))


def build(name, s):
    torch.manual_seed(SEED + list(VARIANTS).index(name))
    m = ForCausalLM(s).eval()
    with torch.no_grad():
        for pname, p in m.named_parameters():
            # N(0, 0.2^2), norms 1 + N(0, 0.2^2): logits of order 1, far from float32 round-off.
            p.copy_(torch.randn(p.shape) * 0.2 + (1.0 if pname.endswith("norm.weight") else 0.0))
    return m


def reference_logits(m, tokens):
    m64 = copy.deepcopy(m).double()
    m64.model.rotary_emb.in_float64()
    with torch.no_grad():
        out = m64(torch.tensor([tokens]))[0]
    return out


def main(outdir):
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(2)
    meta = {
        "script": "test/oracle/export_foreign.py",
        "script_version": SCRIPT_VERSION,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "opset": OPSET,
        "seed": SEED,
    }
    for name, s in VARIANTS.items():
        m = build(name, s)
        path = os.path.join(outdir, name + ".onnx")
        seqs = [[t % s["vocab"] for t in seq] for seq in SEQUENCES]
        ids = torch.tensor([seqs[0]])
        torch.onnx.export(
            m, (ids,), path, input_names=["input_ids"], output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "L"}, "logits": {0: "batch", 1: "L"}},
            opset_version=OPSET, do_constant_folding=True,
        )
        with torch.no_grad():
            f32 = [m(torch.tensor([t]))[0] for t in seqs]
        f64 = [reference_logits(m, t) for t in seqs]
        gap = max((a.double() - b).abs().max().item() for a, b in zip(f32, f64))
        ref = dict(meta)
        ref.update({
            "model": {"layers": s["layers"], "d_model": s["d"], "heads": s["heads"], "kv_heads": s["kv"],
                      "head_dim": s["hd"], "d_ff": s["ff"], "vocab": s["vocab"], "rope_theta": s["theta"],
                      "norm_eps": s["eps"], "qkv_bias": s["bias"], "causal": s["causal"]},
            "float32_vs_float64": gap,
            "sequences": [{"tokens": t, "logits": [[float(x) for x in row] for row in l.tolist()]}
                          for t, l in zip(seqs, f64)],
        })
        with open(os.path.join(outdir, name + ".json"), "w") as f:
            json.dump(ref, f, indent=1)
            f.write("\n")
        if not s["causal"]:
            # The sidecar: what a plain export does not record (docs/model.md, "Foreign ONNX files").
            with open(os.path.join(outdir, name + ".kvplan.json"), "w") as f:
                json.dump({"mask_token_id": s["vocab"] - 1}, f)
                f.write("\n")
        print(f"{name}: {os.path.getsize(path)} bytes, float32 vs float64 {gap:.2e}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/onnx-foreign")
