#!/usr/bin/env python3
"""Independent PyTorch reference for kvplan's Hugging Face checkpoint families (issue 16).

Usage: /usr/bin/python3 test/oracle/hf_reference.py <outdir>
(Debian's python3-torch; nothing else: no transformers, no safetensors, no numpy.)

For each family (LLaDA, Dream, SDAR, Fast-dLLM v2) this writes two tiny random checkpoints in the
family's published layout (config.json keys, tensor names, safetensors; the bf16 one sharded with
a model.safetensors.index.json), and reference.json: float64 logits of a fixed 12-token sequence,
computed from the weights exactly as stored (bf16: the bf16 values widened to float64).

The forward passes are written from the families' published model code, not from kvplan:
  LLaDA        NVlabs/Fast-dLLM llada/model/modeling_llada.py (LLaDALlamaBlock, LLaDABlock.attention,
               RotaryEmbedding, RMSLayerNorm, LLaDAModel.forward), configuration_llada.py
  Dream        NVlabs/Fast-dLLM dream/model/modeling_dream.py (DreamAttention/DreamSdpaAttention,
               DreamMLP, DreamRMSNorm, DreamRotaryEmbedding, DreamModel), generation_utils.py (shift)
  SDAR         JetAstra/SDAR training/model/SDAR-8B-Chat/modeling_sdar.py (SDARAttention with q_norm /
               k_norm before RoPE), config.json, model.safetensors.index.json; generate.py (block mask)
  Fast-dLLM v2 Efficient-Large-Model/Fast_dLLM_v2_7B modeling.py (copy in Satgoy152/DualDiffusion
               FastDLLM_inferencing/Fast_dLLM_v2_7B/modeling.py): Fast_dLLM_QwenAttention,
               eval_block_diff_mask (q//bs >= kv//bs), generate() (shift)
Two implementations are compared before anything is written: a transcription of the modules
(tensor ops, [batch, heads, time, dim] layouts as in the sources) and a plain scalar one written
from the math; plus block-causal / full-attention dependence checks, a block-by-block KV-cache
run for the block-diffusion families, and a read-back of every safetensors file written.
"""

import hashlib
import json
import math
import os
import platform
import struct
import sys

try:
    import torch
except ImportError:
    raise SystemExit("hf_reference.py needs PyTorch: apt-get install -y --no-install-recommends "
                     "python3-torch, then run it with /usr/bin/python3")

SCRIPT_VERSION = 1
SEED = 20240916
TOKENS = [12, 5, 33, 47, 8, 47, 47, 21, 47, 2, 47, 47]  # 47 = vocab - 1 = mask_token_id
STD = 0.2  # every weight N(0, 0.2^2); norm weights 1 + N(0, 0.2^2)

# Tiny shapes. SDAR's head_dim (16) is not hidden/heads (8), as in SDAR-4B (Qwen3-4B: 2560/32 = 80,
# head_dim 128): SDAR reads head_dim from config.json. Fast-dLLM v2 ties its embeddings, as its
# base Qwen2.5-1.5B-Instruct does (the output head is embed_tokens; no lm_head is stored).
SPECS = {
    "llada": dict(layers=2, d=32, heads=4, kv=2, hd=8, ff=64, vocab=48, theta=500000.0, eps=1e-5,
                  mask=47, qkv_bias=False, qk_norm=False, attention="full", block=None,
                  ar_shift=False, tie=False),
    "dream": dict(layers=2, d=32, heads=4, kv=2, hd=8, ff=64, vocab=48, theta=1000000.0, eps=1e-6,
                  mask=47, qkv_bias=True, qk_norm=False, attention="full", block=None,
                  ar_shift=True, tie=False),
    "sdar": dict(layers=2, d=32, heads=4, kv=2, hd=16, ff=64, vocab=48, theta=1000000.0, eps=1e-6,
                 mask=47, qkv_bias=False, qk_norm=True, attention="block_causal", block=4,
                 ar_shift=False, tie=False),
    "fast-dllm-v2": dict(layers=2, d=32, heads=4, kv=2, hd=8, ff=64, vocab=48, theta=1000000.0,
                         eps=1e-6, mask=47, qkv_bias=True, qk_norm=False, attention="block_causal",
                         block=4, ar_shift=True, tie=True),
}
FAMILY_ORDER = ["llada", "dream", "sdar", "fast-dllm-v2"]


# --------------------------------------------------------------------------------------------
# config.json, with the keys of each family's published checkpoints
# --------------------------------------------------------------------------------------------

def config_json(family, s, torch_dtype):
    if family == "llada":
        # GSAI-ML/LLaDA-8B-Instruct config.json, shapes and ids replaced.
        return {
            "activation_type": "silu",
            "alibi": False,
            "alibi_bias_max": 8.0,
            "architectures": ["LLaDAModelLM"],
            "attention_dropout": 0.0,
            "attention_layer_norm": False,
            "attention_layer_norm_with_affine": True,
            "auto_map": {
                "AutoConfig": "configuration_llada.LLaDAConfig",
                "AutoModel": "modeling_llada.LLaDAModelLM",
                "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
            },
            "bias_for_layer_norm": False,
            "block_group_size": 1,
            "block_type": "llama",
            "d_model": s["d"],
            "embedding_dropout": 0.0,
            "embedding_size": s["vocab"],
            "eos_token_id": s["vocab"] - 2,
            "flash_attention": False,
            "include_bias": False,
            "include_qkv_bias": s["qkv_bias"],
            "init_cutoff_factor": None,
            "init_device": "meta",
            "init_fn": "mitchell",
            "init_std": 0.02,
            "input_emb_norm": False,
            "layer_norm_type": "rms",
            "layer_norm_with_affine": True,
            "mask_token_id": s["mask"],
            "max_sequence_length": 4096,
            "mlp_hidden_size": s["ff"],
            "mlp_ratio": 4,
            "model_type": "llada",
            "multi_query_attention": None,
            "n_heads": s["heads"],
            "n_kv_heads": s["kv"],
            "n_layers": s["layers"],
            "pad_token_id": s["vocab"] - 2,
            "precision": "amp_bf16",
            "residual_dropout": 0.0,
            "rms_norm_eps": s["eps"],
            "rope": True,
            "rope_full_precision": True,
            "rope_theta": s["theta"],
            "scale_logits": False,
            "torch_dtype": torch_dtype,
            "transformers_version": "4.51.2",
            "use_cache": False,
            "vocab_size": s["vocab"],
            "weight_tying": s["tie"],
        }
    if family == "dream":
        # DreamConfig's keys (configuration_dream.py) as save_pretrained writes them.
        return {
            "architectures": ["DreamModel"],
            "attention_dropout": 0.0,
            "auto_map": {
                "AutoConfig": "configuration_dream.DreamConfig",
                "AutoModel": "modeling_dream.DreamModel",
            },
            "bos_token_id": s["vocab"] - 3,
            "eos_token_id": s["vocab"] - 3,
            "hidden_act": "silu",
            "hidden_size": s["d"],
            "initializer_range": 0.02,
            "intermediate_size": s["ff"],
            "mask_token_id": s["mask"],
            "max_position_embeddings": 131072,
            "max_window_layers": s["layers"],
            "model_type": "Dream",
            "num_attention_heads": s["heads"],
            "num_hidden_layers": s["layers"],
            "num_key_value_heads": s["kv"],
            "pad_token_id": s["vocab"] - 3,
            "rms_norm_eps": s["eps"],
            "rope_scaling": None,
            "rope_theta": s["theta"],
            "sliding_window": None,
            "tie_word_embeddings": s["tie"],
            "torch_dtype": torch_dtype,
            "transformers_version": "4.46.2",
            "use_cache": False,
            "use_sliding_window": False,
            "vocab_size": s["vocab"],
        }
    if family == "sdar":
        # JetLM/SDAR-1.7B-Chat config.json, shapes and ids replaced.
        return {
            "architectures": ["SDARForCausalLM"],
            "auto_map": {
                "AutoConfig": "configuration_sdar.SDARConfig",
                "AutoModel": "modeling_sdar.SDARModel",
                "AutoModelForCausalLM": "modeling_sdar.SDARForCausalLM",
            },
            "attention_bias": False,
            "attention_dropout": 0.0,
            "attn_implementation": "flex_attention",
            "bos_token_id": s["vocab"] - 2,
            "debug": False,
            "eos_token_id": s["vocab"] - 2,
            "block_size": s["block"],
            "mask_token_id": s["mask"],
            "ep_size": 1,
            "fuse_cross_entropy": True,
            "head_dim": s["hd"],
            "hidden_act": "silu",
            "hidden_size": s["d"],
            "initializer_range": 0.02,
            "intermediate_size": s["ff"],
            "max_position_embeddings": 32768,
            "max_window_layers": s["layers"],
            "micro_forward": False,
            "model_type": "sdar",
            "num_attention_heads": s["heads"],
            "num_hidden_layers": s["layers"],
            "num_key_value_heads": s["kv"],
            "rms_norm_eps": s["eps"],
            "rope_scaling": None,
            "rope_theta": s["theta"],
            "skip_checkpoint": False,
            "sliding_window": None,
            "tie_word_embeddings": s["tie"],
            "torch_dtype": torch_dtype,
            "transformers_version": "4.52.4",
            "use_cache": False,
            "use_deepep": False,
            "use_sliding_window": False,
            "vocab_size": s["vocab"],
        }
    if family == "fast-dllm-v2":
        # Fast_dLLM_QwenConfig's keys (Qwen2Config's plus bd_size). mask_token_id is not a key of
        # the published checkpoints (the code's default is 151665, outside this vocabulary); the
        # config class keeps extra keys, and kvplan reads it when present.
        return {
            "architectures": ["Fast_dLLM_QwenForCausalLM"],
            "attention_dropout": 0.0,
            "auto_map": {
                "AutoConfig": "configuration.Fast_dLLM_QwenConfig",
                "AutoModel": "modeling.Fast_dLLM_QwenModel",
                "AutoModelForCausalLM": "modeling.Fast_dLLM_QwenForCausalLM",
            },
            "bd_size": s["block"],
            "bos_token_id": s["vocab"] - 3,
            "eos_token_id": s["vocab"] - 2,
            "hidden_act": "silu",
            "hidden_size": s["d"],
            "initializer_range": 0.02,
            "intermediate_size": s["ff"],
            "mask_token_id": s["mask"],
            "max_position_embeddings": 32768,
            "max_window_layers": s["layers"],
            "model_type": "Fast_dLLM_Qwen",
            "num_attention_heads": s["heads"],
            "num_hidden_layers": s["layers"],
            "num_key_value_heads": s["kv"],
            "rms_norm_eps": s["eps"],
            "rope_scaling": None,
            "rope_theta": s["theta"],
            "sliding_window": None,
            "tie_word_embeddings": s["tie"],
            "torch_dtype": torch_dtype,
            "transformers_version": "4.53.1",
            "use_cache": True,
            "use_sliding_window": False,
            "vocab_size": s["vocab"],
        }
    raise ValueError(family)


# --------------------------------------------------------------------------------------------
# Weights, under each family's own tensor names, in module registration order
# --------------------------------------------------------------------------------------------

def tensor_layout(family, s):
    """[(name, shape, kind)] with kind in {"linear", "bias", "norm", "embed"}."""
    d, hd, ff, V = s["d"], s["hd"], s["ff"], s["vocab"]
    q, kv = s["heads"] * hd, s["kv"] * hd
    out = []
    if family == "llada":
        # LLaDAModelLM.model (LLaDAModel).transformer = ModuleDict(wte, emb_drop, ln_f, blocks, ff_out);
        # LLaDALlamaBlock: attn_out, ff_out (LLaDABlock), attn_norm, ff_norm, q/k/v_proj, ff_proj, up_proj.
        assert q == d  # LLaDA: q_proj is d_model -> d_model, head_dim = d_model // n_heads
        out.append(("model.transformer.wte.weight", [V, d], "embed"))
        out.append(("model.transformer.ln_f.weight", [d], "norm"))
        for i in range(s["layers"]):
            p = f"model.transformer.blocks.{i}."
            out.append((p + "attn_out.weight", [d, d], "linear"))
            out.append((p + "ff_out.weight", [d, ff], "linear"))
            out.append((p + "attn_norm.weight", [d], "norm"))
            out.append((p + "ff_norm.weight", [d], "norm"))
            for proj, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
                out.append((p + proj + ".weight", [rows, d], "linear"))
                if s["qkv_bias"]:
                    out.append((p + proj + ".bias", [rows], "bias"))
            out.append((p + "ff_proj.weight", [ff, d], "linear"))
            out.append((p + "up_proj.weight", [ff, d], "linear"))
        if not s["tie"]:
            out.append(("model.transformer.ff_out.weight", [V, d], "linear"))
        return out
    # Qwen2 (Dream, Fast-dLLM v2) / Qwen3 (SDAR): model.{embed_tokens, layers, norm}, lm_head.
    out.append(("model.embed_tokens.weight", [V, d], "embed"))
    for i in range(s["layers"]):
        p = f"model.layers.{i}."
        for proj, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            out.append((p + "self_attn." + proj + ".weight", [rows, d], "linear"))
            if s["qkv_bias"]:
                out.append((p + "self_attn." + proj + ".bias", [rows], "bias"))
        out.append((p + "self_attn.o_proj.weight", [d, q], "linear"))
        if s["qk_norm"]:
            out.append((p + "self_attn.q_norm.weight", [hd], "norm"))
            out.append((p + "self_attn.k_norm.weight", [hd], "norm"))
        out.append((p + "mlp.gate_proj.weight", [ff, d], "linear"))
        out.append((p + "mlp.up_proj.weight", [ff, d], "linear"))
        out.append((p + "mlp.down_proj.weight", [d, ff], "linear"))
        out.append((p + "input_layernorm.weight", [d], "norm"))
        out.append((p + "post_attention_layernorm.weight", [d], "norm"))
    out.append(("model.norm.weight", [d], "norm"))
    if not s["tie"]:
        out.append(("lm_head.weight", [V, d], "linear"))
    return out


def make_weights(family, s):
    """float32 master weights, deterministic per family."""
    g = torch.Generator().manual_seed(SEED + FAMILY_ORDER.index(family))
    w = {}
    for name, shape, kind in tensor_layout(family, s):
        x = torch.randn(shape, generator=g, dtype=torch.float32) * STD
        w[name] = (x + 1.0) if kind == "norm" else x
    return w


# --------------------------------------------------------------------------------------------
# Implementation A: transcription of the published modules (float64, batch 1)
# --------------------------------------------------------------------------------------------

def rms_norm(x, weight, eps):
    # RMSLayerNorm (LLaDA) / DreamRMSNorm / SDARRMSNorm / Fast_dLLM_QwenRMSNorm:
    # x * rsqrt(mean(x^2) + eps), then times the weight.
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def hf_rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def hf_rope_cos_sin(theta, dim, T):
    # transformers' default rope init: inv_freq = 1 / theta^(arange(0, dim, 2) / dim), dim = head_dim
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float64) / dim))
    position_ids = torch.arange(T, dtype=torch.float64)[None, :]
    freqs = (inv_freq[None, :, None] @ position_ids[:, None, :]).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()  # [1, T, dim]


def hf_apply_rotary(q, k, cos, sin):
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return (q * cos) + (hf_rotate_half(q) * sin), (k * cos) + (hf_rotate_half(k) * sin)


def repeat_kv(h, n_rep):
    b, nkv, slen, hd = h.shape
    if n_rep == 1:
        return h
    return h[:, :, None, :, :].expand(b, nkv, n_rep, slen, hd).reshape(b, nkv * n_rep, slen, hd)


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def attention_probs(scores, allowed):
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1)


def block_mask_sdar(T, block_length):
    # SDAR generate.py: block_mask = tril(ones(num_blocks, num_blocks)), repeat_interleave'd by
    # block_length on both axes, over the canvas padded to whole blocks from position 0.
    num_blocks = (T + block_length - 1) // block_length
    m = torch.tril(torch.ones(num_blocks, num_blocks))
    m = m.repeat_interleave(block_length, dim=0).repeat_interleave(block_length, dim=1)
    return m[:T, :T].bool()


def block_mask_fast_dllm(T, block_size, cache_seq_len=0):
    # Fast_dLLM_QwenModel.eval_mask / eval_block_diff_mask: q_idx // bs >= kv_idx // bs.
    q_idx = torch.arange(T) + cache_seq_len
    kv_idx = torch.arange(T + cache_seq_len)
    return (q_idx[:, None] // block_size) >= (kv_idx[None, :] // block_size)


def llada_forward(s, W, tokens):
    """LLaDAModel.forward with LLaDALlamaBlock, no cache, no attention mask (fully bidirectional:
    LLaDABlock.attention calls _scaled_dot_product_attention with attn_mask=None)."""
    d, nh, nkv = s["d"], s["heads"], s["kv"]
    x = W["model.transformer.wte.weight"][torch.tensor(tokens)][None]  # [1, T, d]
    B, T, _ = x.shape
    hs = d // nh
    # RotaryEmbedding.get_rotary_embedding: dim = d_model // n_heads
    inv_freq = 1.0 / (s["theta"] ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    seq = torch.arange(T, dtype=torch.float64)
    freqs = torch.einsum("i , j -> i j", seq, inv_freq)
    positions = torch.cat((freqs, freqs), dim=-1)
    pos_sin = positions.sin()[None, None].to(x.dtype)
    pos_cos = positions.cos()[None, None].to(x.dtype)

    def rotate_half(t):  # RotaryEmbedding.rotate_half
        b_, h_, t_, hs_ = t.size()
        t = t.view(b_, h_, t_, 2, hs_ // 2)
        x1, x2 = t.unbind(dim=-2)
        return torch.cat((-x2, x1), dim=-1)

    def rope(t):
        return (t * pos_cos) + (rotate_half(t) * pos_sin)

    for i in range(s["layers"]):
        p = f"model.transformer.blocks.{i}."
        bias = (lambda n: W[p + n + ".bias"]) if s["qkv_bias"] else (lambda n: None)
        x_normed = rms_norm(x, W[p + "attn_norm.weight"], s["eps"])
        q = linear(x_normed, W[p + "q_proj.weight"], bias("q_proj"))
        k = linear(x_normed, W[p + "k_proj.weight"], bias("k_proj"))
        v = linear(x_normed, W[p + "v_proj.weight"], bias("v_proj"))
        C = q.size(-1)
        q = q.view(B, T, nh, C // nh).transpose(1, 2)
        k = k.view(B, T, nkv, C // nh).transpose(1, 2)
        v = v.view(B, T, nkv, C // nh).transpose(1, 2)
        q, k = rope(q), rope(k)
        if nh != nkv:  # _scaled_dot_product_attention
            k = k.repeat_interleave(nh // nkv, dim=1, output_size=nh)
            v = v.repeat_interleave(nh // nkv, dim=1, output_size=nh)
        att = attention_probs(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), None) @ v
        att = att.transpose(1, 2).contiguous().view(B, T, C)
        x = x + linear(att, W[p + "attn_out.weight"])
        og_x = x
        h = rms_norm(x, W[p + "ff_norm.weight"], s["eps"])
        h, h_up = linear(h, W[p + "ff_proj.weight"]), linear(h, W[p + "up_proj.weight"])
        h = torch.nn.functional.silu(h)  # act: SiLU (activation_type "silu")
        h = h * h_up
        h = linear(h, W[p + "ff_out.weight"])
        x = og_x + h
    x = rms_norm(x, W["model.transformer.ln_f.weight"], s["eps"])
    head = W["model.transformer.wte.weight"] if s["tie"] else W["model.transformer.ff_out.weight"]
    return linear(x, head)[0]


def qwen_layer(family, s, W, i, h, cos, sin, allowed, past=None):
    """One decoder layer of Dream / SDAR / Fast-dLLM v2. `past` = (k, v) of earlier rows (already
    roped), for the block-by-block run; returns the new hidden states and this call's (k, v)."""
    p = f"model.layers.{i}."
    B, T, _ = h.shape
    hd = s["hd"]
    bias = (lambda n: W[p + "self_attn." + n + ".bias"]) if s["qkv_bias"] else (lambda n: None)
    residual = h
    x = rms_norm(h, W[p + "input_layernorm.weight"], s["eps"])
    hidden_shape = (B, T, -1, hd)
    q = linear(x, W[p + "self_attn.q_proj.weight"], bias("q_proj")).view(hidden_shape)
    k = linear(x, W[p + "self_attn.k_proj.weight"], bias("k_proj")).view(hidden_shape)
    v = linear(x, W[p + "self_attn.v_proj.weight"], bias("v_proj")).view(hidden_shape)
    if family == "sdar":  # SDARAttention: q_norm / k_norm over head_dim, before RoPE
        q = rms_norm(q, W[p + "self_attn.q_norm.weight"], s["eps"])
        k = rms_norm(k, W[p + "self_attn.k_norm.weight"], s["eps"])
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    q, k = hf_apply_rotary(q, k, cos, sin)
    new_kv = (k, v)
    if past is not None:
        k = torch.cat([past[0], k], dim=-2)
        v = torch.cat([past[1], v], dim=-2)
    n_rep = s["heads"] // s["kv"]
    k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)
    scores = (q @ k.transpose(2, 3)) * (hd ** -0.5)
    att = attention_probs(scores, allowed) @ v
    att = att.transpose(1, 2).reshape(B, T, -1)
    h = residual + linear(att, W[p + "self_attn.o_proj.weight"])
    residual = h
    x = rms_norm(h, W[p + "post_attention_layernorm.weight"], s["eps"])
    x = linear(torch.nn.functional.silu(linear(x, W[p + "mlp.gate_proj.weight"]))
               * linear(x, W[p + "mlp.up_proj.weight"]), W[p + "mlp.down_proj.weight"])
    return residual + x, new_kv


def qwen_head(s, W, h):
    h = rms_norm(h, W["model.norm.weight"], s["eps"])
    head = W["model.embed_tokens.weight"] if s["tie"] else W["lm_head.weight"]
    return linear(h, head)


def qwen_forward(family, s, W, tokens):
    """DreamModel / SDARForCausalLM / Fast_dLLM_QwenForCausalLM over the whole canvas."""
    T = len(tokens)
    h = W["model.embed_tokens.weight"][torch.tensor(tokens)][None]
    cos, sin = (c.to(h.dtype) for c in hf_rope_cos_sin(s["theta"], s["hd"], T))
    if s["attention"] == "full":
        allowed = None  # Dream: is_causal=False, no mask
    elif family == "sdar":
        allowed = block_mask_sdar(T, s["block"])
    else:
        allowed = block_mask_fast_dllm(T, s["block"])
    for i in range(s["layers"]):
        h, _ = qwen_layer(family, s, W, i, h, cos, sin, allowed)
    return qwen_head(s, W, h)[0]


def qwen_forward_blockwise(family, s, W, tokens):
    """The block-diffusion families as their generate() runs them: block by block from position 0,
    each block attending to the cached keys/values of the blocks before it and to itself."""
    T, bs = len(tokens), s["block"]
    cos_all, sin_all = hf_rope_cos_sin(s["theta"], s["hd"], T)
    cache = [None] * s["layers"]
    rows = []
    for start in range(0, T, bs):
        end = min(start + bs, T)
        h = W["model.embed_tokens.weight"][torch.tensor(tokens[start:end])][None]
        cos, sin = cos_all[:, start:end], sin_all[:, start:end]
        if family == "sdar":
            allowed = block_mask_sdar(T, bs)[start:end, :end]
        else:
            allowed = block_mask_fast_dllm(end - start, bs, cache_seq_len=start)
        for i in range(s["layers"]):
            h, kv = qwen_layer(family, s, W, i, h, cos, sin, allowed, past=cache[i])
            cache[i] = kv if cache[i] is None else (torch.cat([cache[i][0], kv[0]], dim=-2),
                                                    torch.cat([cache[i][1], kv[1]], dim=-2))
        rows.append(qwen_head(s, W, h)[0])
    return torch.cat(rows, dim=0)


def forward_modules(family, s, W, tokens):
    return llada_forward(s, W, tokens) if family == "llada" else qwen_forward(family, s, W, tokens)


# --------------------------------------------------------------------------------------------
# Implementation B: plain scalar Python from the math (lists of floats), for the self-check
# --------------------------------------------------------------------------------------------

def scalar_forward(family, s, W, tokens):
    L = lambda name: W[name].tolist()  # noqa: E731
    ll = family == "llada"
    d, H, KV, hd, V, eps = s["d"], s["heads"], s["kv"], s["hd"], s["vocab"], s["eps"]
    T = len(tokens)
    names = {}
    if ll:
        top = "model.transformer."
        names.update(embed=top + "wte.weight", norm=top + "ln_f.weight",
                     head=top + ("wte.weight" if s["tie"] else "ff_out.weight"))
        lay = lambda i, r: top + f"blocks.{i}." + {  # noqa: E731
            "in": "attn_norm.weight", "q": "q_proj", "k": "k_proj", "v": "v_proj",
            "o": "attn_out.weight", "post": "ff_norm.weight", "gate": "ff_proj.weight",
            "up": "up_proj.weight", "down": "ff_out.weight"}[r]
    else:
        names.update(embed="model.embed_tokens.weight", norm="model.norm.weight",
                     head="model.embed_tokens.weight" if s["tie"] else "lm_head.weight")
        lay = lambda i, r: f"model.layers.{i}." + {  # noqa: E731
            "in": "input_layernorm.weight", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
            "v": "self_attn.v_proj", "o": "self_attn.o_proj.weight",
            "post": "post_attention_layernorm.weight", "gate": "mlp.gate_proj.weight",
            "up": "mlp.up_proj.weight", "down": "mlp.down_proj.weight",
            "qn": "self_attn.q_norm.weight", "kn": "self_attn.k_norm.weight"}[r]

    def rms(vec, w):
        inv = 1.0 / math.sqrt(sum(a * a for a in vec) / len(vec) + eps)
        return [a * inv * b for a, b in zip(vec, w)]

    def lin(vec, Wm, b=None):
        return [sum(a * c for a, c in zip(vec, row)) + (b[o] if b else 0.0) for o, row in enumerate(Wm)]

    def rope(vec, pos):
        half = hd // 2
        out = list(vec)
        for j in range(half):
            ang = pos * s["theta"] ** (-(2 * j) / hd)
            c, sn = math.cos(ang), math.sin(ang)
            a, b = vec[j], vec[j + half]
            out[j], out[j + half] = a * c - b * sn, b * c + a * sn
        return out

    def visible(i, j):
        if s["attention"] == "full":
            return True
        return j // s["block"] <= i // s["block"]  # blocks counted from position 0

    emb = L(names["embed"])
    h = [list(emb[t]) for t in tokens]
    for layer in range(s["layers"]):
        x = [rms(r, L(lay(layer, "in"))) for r in h]
        proj = {}
        for r in ("q", "k", "v"):
            b = L(lay(layer, r) + ".bias") if s["qkv_bias"] else None
            proj[r] = [lin(row, L(lay(layer, r) + ".weight"), b) for row in x]
        heads_q = [[proj["q"][t][a * hd:(a + 1) * hd] for a in range(H)] for t in range(T)]
        heads_k = [[proj["k"][t][g * hd:(g + 1) * hd] for g in range(KV)] for t in range(T)]
        heads_v = [[proj["v"][t][g * hd:(g + 1) * hd] for g in range(KV)] for t in range(T)]
        if s["qk_norm"]:
            qn, kn = L(lay(layer, "qn")), L(lay(layer, "kn"))
            heads_q = [[rms(v, qn) for v in row] for row in heads_q]
            heads_k = [[rms(v, kn) for v in row] for row in heads_k]
        heads_q = [[rope(v, t) for v in heads_q[t]] for t in range(T)]
        heads_k = [[rope(v, t) for v in heads_k[t]] for t in range(T)]
        att = [[0.0] * (H * hd) for _ in range(T)]
        for a in range(H):
            g = a // (H // KV)  # query head a reads KV head floor(a / group)
            for i in range(T):
                js = [j for j in range(T) if visible(i, j)]
                sc = [sum(u * w for u, w in zip(heads_q[i][a], heads_k[j][g])) / math.sqrt(hd) for j in js]
                m = max(sc)
                e = [math.exp(z - m) for z in sc]
                tot = sum(e)
                for j, ej in zip(js, e):
                    for c in range(hd):
                        att[i][a * hd + c] += ej / tot * heads_v[j][g][c]
        o = [lin(row, L(lay(layer, "o"))) for row in att]
        h = [[a + b for a, b in zip(hr, orow)] for hr, orow in zip(h, o)]
        x = [rms(r, L(lay(layer, "post"))) for r in h]
        gate = [lin(row, L(lay(layer, "gate"))) for row in x]
        up = [lin(row, L(lay(layer, "up"))) for row in x]
        act = [[gv / (1.0 + math.exp(-gv)) * uv for gv, uv in zip(gr, ur)] for gr, ur in zip(gate, up)]
        down = [lin(row, L(lay(layer, "down"))) for row in act]
        h = [[a + b for a, b in zip(hr, dr)] for hr, dr in zip(h, down)]
    xf = [rms(r, L(names["norm"])) for r in h]
    head = L(names["head"])
    return torch.tensor([lin(row, head) for row in xf], dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# safetensors writer and an independent reader for the read-back check
# --------------------------------------------------------------------------------------------

DTYPE_NAME = {torch.float32: "F32", torch.bfloat16: "BF16"}


def tensor_bytes(t):
    t = t.contiguous()
    n = t.numel()
    if t.dtype == torch.float32:
        return struct.pack("<%df" % n, *t.flatten().tolist())
    if t.dtype == torch.bfloat16:  # raw bit patterns, little-endian
        return struct.pack("<%dh" % n, *t.view(torch.int16).flatten().tolist())
    raise ValueError(t.dtype)


def write_safetensors(path, tensors):
    """8-byte LE header length, JSON header (padded with spaces to 8 bytes, as the reference writer
    does), then the tensors back to back in name order."""
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPE_NAME[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    return offset


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    out = {}
    spans = []
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        spans.append((a, b))
        count = math.prod(e["shape"])
        if e["dtype"] == "F32":
            vals = struct.unpack("<%df" % count, data[a:b])
            t = torch.tensor(vals, dtype=torch.float32)
        elif e["dtype"] == "BF16":
            bits = struct.unpack("<%dH" % count, data[a:b])
            # bf16 -> f32: the 16 bits are the top half of the float32
            t = torch.tensor([struct.unpack("<f", struct.pack("<I", u << 16))[0] for u in bits],
                             dtype=torch.float32)
        else:
            raise ValueError(e["dtype"])
        out[name] = t.view(e["shape"])
    spans.sort()
    pos = 0
    for a, b in spans:
        assert a == pos, f"{path}: hole or overlap at {a}"
        pos = b
    assert pos == len(data), f"{path}: trailing bytes"
    return out


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# --------------------------------------------------------------------------------------------
# Checks and output
# --------------------------------------------------------------------------------------------

def check(cond, msg):
    if not cond:
        raise SystemExit(f"hf_reference.py: self-check failed: {msg}")


def self_checks(family, s, W64, logits):
    """Returns a dict of what was checked (written to reference.json)."""
    out = {}
    scalar = scalar_forward(family, s, W64, TOKENS)
    diff = (scalar - logits).abs().max().item()
    check(diff < 1e-11, f"{family}: module transcription vs scalar implementation differ by {diff}")
    out["modules_vs_scalar_max_abs_diff"] = diff

    T = len(TOKENS)
    if s["attention"] == "block_causal":
        bs = s["block"]
        bw = qwen_forward_blockwise(family, s, W64, TOKENS)
        diff = (bw - logits).abs().max().item()
        check(diff < 1e-11, f"{family}: block-by-block KV-cache run differs from the full canvas by {diff}")
        out["blockwise_kv_cache_vs_full_canvas_max_abs_diff"] = diff
        for pos in (T - 1, bs):  # a token in the last block; the first token of block 1
            toks = list(TOKENS)
            toks[pos] = (toks[pos] + 7) % s["vocab"]
            other = forward_modules(family, s, W64, toks)
            first = (pos // bs) * bs
            check(torch.equal(other[:first], logits[:first]),
                  f"{family}: rows before block {pos // bs} changed when position {pos} changed")
            check((other[first:] - logits[first:]).abs().max().item() > 1e-6,
                  f"{family}: rows from block {pos // bs} on did not change when position {pos} changed")
        out["block_causal"] = (f"changing position {T - 1} or {bs} leaves every row of the earlier "
                               "blocks bitwise unchanged and changes the rows from its block on")
    else:
        toks = list(TOKENS)
        toks[T - 1] = (toks[T - 1] + 7) % s["vocab"]
        other = forward_modules(family, s, W64, toks)
        check((other[0] - logits[0]).abs().max().item() > 1e-6,
              f"{family}: row 0 did not change when the last token changed (attention not full?)")
        out["full_attention"] = f"changing position {T - 1} changes row 0"

    # The same forward in float32 (informational: the size of float32 rounding here).
    W32 = {k: v.to(torch.float32) for k, v in W64.items()}
    l32 = forward_modules(family, s, W32, TOKENS).to(torch.float64)
    out["float32_forward_max_abs_diff"] = (l32 - logits).abs().max().item()
    return out


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: python3 test/oracle/hf_reference.py <outdir>")
    outdir = sys.argv[1]
    torch.manual_seed(SEED)
    torch.set_num_threads(1)  # deterministic reductions

    # Convention checks that do not depend on a family.
    x = torch.randn(1, 3, 5, 8, dtype=torch.float64)
    b_, h_, t_, hs_ = x.size()
    x1, x2 = x.view(b_, h_, t_, 2, hs_ // 2).unbind(dim=-2)
    check(torch.equal(torch.cat((-x2, x1), dim=-1), hf_rotate_half(x)),
          "LLaDA's rotate_half differs from transformers' rotate_half")
    kv = torch.randn(1, 2, 5, 8, dtype=torch.float64)
    check(torch.equal(kv.repeat_interleave(2, dim=1), repeat_kv(kv, 2)),
          "LLaDA's repeat_interleave GQA differs from transformers' repeat_kv")
    check(torch.equal(block_mask_sdar(12, 4), block_mask_fast_dllm(12, 4)),
          "SDAR's and Fast-dLLM v2's block masks differ")

    for family in FAMILY_ORDER:
        s = SPECS[family]
        check(all(0 <= t < s["vocab"] for t in TOKENS) and s["mask"] in TOKENS, "tokens")
        master = make_weights(family, s)
        for variant, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
            d = os.path.join(outdir, f"{family}-{variant}")
            os.makedirs(d, exist_ok=True)
            for f in os.listdir(d):
                os.remove(os.path.join(d, f))
            stored = {k: v.to(dtype) for k, v in master.items()}  # bf16: round to nearest even
            torch_dtype = "float32" if variant == "f32" else "bfloat16"
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(config_json(family, s, torch_dtype), f, indent=2)
                f.write("\n")
            if variant == "f32":
                files = ["model.safetensors"]
                write_safetensors(os.path.join(d, files[0]), stored)
            else:
                # Sharded as save_pretrained does: modules in order, the first layer (and the
                # embeddings) in shard 1, the rest in shard 2; plus the index.
                files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
                layer0 = ("model.transformer.blocks.0." if family == "llada" else "model.layers.0.")
                first = {k for k in stored if k.startswith(layer0) or k in (
                    "model.transformer.wte.weight", "model.embed_tokens.weight")}
                shards = [{k: stored[k] for k in stored if k in first},
                          {k: stored[k] for k in stored if k not in first}]
                total = sum(write_safetensors(os.path.join(d, fn), sh) for fn, sh in zip(files, shards))
                index = {"metadata": {"total_size": total},
                         "weight_map": {k: files[0] if k in first else files[1] for k in sorted(stored)}}
                with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                    json.dump(index, f, indent=2)
                    f.write("\n")

            # Read back what was written; the reference runs on exactly those values.
            back = {}
            for fn in files:
                back.update(read_safetensors(os.path.join(d, fn)))
            check(set(back) == set(stored), f"{d}: read-back names differ")
            for k, v in stored.items():
                check(torch.equal(back[k], v.to(torch.float32)), f"{d}: read-back of {k} differs")
            W64 = {k: v.to(torch.float64) for k, v in back.items()}

            logits = forward_modules(family, s, W64, TOKENS)
            checks = self_checks(family, s, W64, logits)
            std = logits.std().item()
            check(std > 0.5, f"{family}: logits too flat (std {std})")

            ref = {
                "script": "test/oracle/hf_reference.py",
                "script_version": SCRIPT_VERSION,
                "torch_version": torch.__version__,
                "python_version": platform.python_version(),
                "seed": SEED + FAMILY_ORDER.index(family),
                "family": family,
                "dtype": DTYPE_NAME[dtype],
                "files": {fn: sha256(os.path.join(d, fn)) for fn in files},
                "model": {
                    "layers": s["layers"], "d_model": s["d"], "heads": s["heads"],
                    "kv_heads": s["kv"], "head_dim": s["hd"], "d_ff": s["ff"], "vocab": s["vocab"],
                    "rope_theta": s["theta"], "norm_eps": s["eps"], "mask_token_id": s["mask"],
                    "qkv_bias": s["qkv_bias"], "qk_norm": s["qk_norm"], "tie_embeddings": s["tie"],
                    "attention": s["attention"], "block_size": s["block"], "ar_shift": s["ar_shift"],
                },
                "semantics": (
                    "logits[i] is what the model computes at row i (position i), in float64 from the "
                    "stored weights widened to float64; no AR shift is applied. "
                    + ("AR shift: the token at position p is predicted by row p - 1. "
                       if s["ar_shift"] else "The token at position p is predicted by row p. ")
                    + (f"Block-causal attention: row i sees row j iff j // {s['block']} <= i // "
                       f"{s['block']}, blocks counted from position 0 and the prompt block-causal "
                       "too (the published generate() prefills the prompt with the same mask). "
                       f"kvplan's golden layout {{promptLen: 0 or {s['block']}, blockLen: "
                       f"{s['block']}}} is the same; a longer golden prompt is one bidirectional "
                       "block and is not."
                       if s["attention"] == "block_causal" else "Full bidirectional attention.")
                ),
                "checks": checks,
                "tokens": TOKENS,
                "logits": logits.tolist(),
            }
            with open(os.path.join(d, "reference.json"), "w") as f:
                json.dump(ref, f, indent=2)
                f.write("\n")
            print(f"{family}-{variant}: {len(back)} tensors, logits std {std:.3f}, "
                  f"scalar diff {checks['modules_vs_scalar_max_abs_diff']:.2e}, "
                  f"float32 diff {checks['float32_forward_max_abs_diff']:.2e}")


if __name__ == "__main__":
    main()
