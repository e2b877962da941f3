"""A small PyTorch Llama in the Hugging Face module layout.

:func:`load_llama` reads a model directory in the Hugging Face layout
(``config.json`` and every ``*.safetensors`` shard, as ``catq
import-llama2c`` or a Hugging Face checkpoint has them) into a float32
``LlamaForCausalLM`` in eval mode whose modules are named as Hugging Face
names them (``model.layers[i].self_attn.q_proj``, ``mlp.down_proj``,
``input_layernorm``, ...), so catq_client.collect_statistics can hook it
where ``transformers`` is not installed::

    from catq_client import collect_statistics
    from catq_client.torch_llama import load_llama

    model = load_llama("models/stories260K")
    collect_statistics(model, [[1, 403, 407, 261]], "stats.safetensors")

It is the Llama catq runs: RMSNorm (the mean square taken in float64, as
catq takes it), rotate-half RoPE with ``rope_theta``, grouped-query attention
(``num_key_value_heads``), a SwiGLU MLP, ``tie_word_embeddings``. Calling the
model with token ids ``[batch, tokens]`` returns the logits; an
``attention_mask`` may only mark right padding (causal attention keeps the
real tokens from seeing it). Configurations it does not implement
(``rope_scaling``, biases, another activation) are refused, never
approximated. Importing this module imports PyTorch; catq_client itself does
not.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import types

import torch
import torch.nn.functional as F
from torch import nn

from catq_client.safetensors_file import read_header

_TORCH_DTYPES = {"F64": torch.float64, "F32": torch.float32,
                 "F16": torch.float16, "BF16": torch.bfloat16}


def read_config(model_dir: str) -> types.SimpleNamespace:
    """``config.json`` of ``model_dir`` as attributes, with Hugging Face's
    Llama defaults for the optional fields.

    Raises:
        ValueError: a field this module does not implement.
    """
    path = os.path.join(model_dir, "config.json")
    with open(path) as f:
        raw = json.load(f)
    c = dict(raw)
    c.setdefault("num_key_value_heads", c["num_attention_heads"])
    c.setdefault("head_dim", c["hidden_size"] // c["num_attention_heads"])
    c.setdefault("rms_norm_eps", 1e-6)
    c.setdefault("rope_theta", 10000.0)
    c.setdefault("tie_word_embeddings", False)
    for field, supported in (("hidden_act", "silu"), ("rope_scaling", None),
                             ("attention_bias", False), ("mlp_bias", False)):
        if c.get(field, supported) != supported:
            raise ValueError(f"{path}: {field} {c[field]!r} is not "
                             f"implemented here (only {supported!r})")
    if c["num_attention_heads"] % c["num_key_value_heads"]:
        raise ValueError(f"{path}: {c['num_attention_heads']} attention "
                         f"heads in groups of {c['num_key_value_heads']} "
                         "key-value heads")
    return types.SimpleNamespace(**c)


class RMSNorm(nn.Module):
    def __init__(self, size, eps, device=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(size, device=device))
        self.eps = eps

    def forward(self, x):
        # The mean square in float64, as catq takes it.
        inv = torch.rsqrt(x.double().pow(2).mean(-1, keepdim=True) + self.eps)
        return x * inv.to(x.dtype) * self.weight


def rotate_half_rope(x, cos, sin):
    """x [batch, heads, tokens, head_dim]; (a, b) halves turn by the angle."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, c, device=None):
        super().__init__()
        self.heads = c.num_attention_heads
        self.kv_heads = c.num_key_value_heads
        self.head_dim = c.head_dim
        d, q = c.hidden_size, self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        self.q_proj = nn.Linear(d, q, bias=False, device=device)
        self.k_proj = nn.Linear(d, kv, bias=False, device=device)
        self.v_proj = nn.Linear(d, kv, bias=False, device=device)
        self.o_proj = nn.Linear(q, d, bias=False, device=device)

    def forward(self, x, cos, sin):
        batch, tokens, _ = x.shape

        def heads(y, n):
            return y.view(batch, tokens, n, self.head_dim).transpose(1, 2)

        q = rotate_half_rope(heads(self.q_proj(x), self.heads), cos, sin)
        k = rotate_half_rope(heads(self.k_proj(x), self.kv_heads), cos, sin)
        v = heads(self.v_proj(x), self.kv_heads)
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = q @ k.transpose(-1, -2) / self.head_dim ** 0.5
        causal = torch.ones(tokens, tokens, dtype=torch.bool,
                            device=x.device).triu(1)
        weights = scores.masked_fill(causal, float("-inf")).softmax(-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, tokens, -1)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, c, device=None):
        super().__init__()
        d, h = c.hidden_size, c.intermediate_size
        self.gate_proj = nn.Linear(d, h, bias=False, device=device)
        self.up_proj = nn.Linear(d, h, bias=False, device=device)
        self.down_proj = nn.Linear(h, d, bias=False, device=device)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c, device=None):
        super().__init__()
        d, eps = c.hidden_size, c.rms_norm_eps
        self.input_layernorm = RMSNorm(d, eps, device)
        self.self_attn = Attention(c, device)
        self.post_attention_layernorm = RMSNorm(d, eps, device)
        self.mlp = MLP(c, device)

    def forward(self, h, cos, sin):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaModel(nn.Module):
    """The decoder: embeddings, layers, final norm; returns hidden states."""

    def __init__(self, c, device=None):
        super().__init__()
        self.config = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size,
                                         device=device)
        self.layers = nn.ModuleList(DecoderLayer(c, device)
                                    for _ in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps, device)

    def forward(self, input_ids, attention_mask=None):
        input_ids = torch.as_tensor(input_ids)
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        if attention_mask is not None:
            mask = torch.as_tensor(attention_mask).bool()
            if not bool((mask.int().cummin(dim=-1).values.bool()
                         == mask).all()):
                raise ValueError("attention_mask: only right padding "
                                 "(ones, then zeros) is supported")
        tokens = input_ids.shape[1]
        head_dim = self.config.head_dim
        i = torch.arange(head_dim // 2, dtype=torch.float64)
        angle = (torch.arange(tokens, dtype=torch.float64)[:, None]
                 * self.config.rope_theta ** (-2 * i / head_dim))
        device = self.embed_tokens.weight.device
        cos = angle.cos().float().to(device)
        sin = angle.sin().float().to(device)
        h = self.embed_tokens(input_ids.to(device))
        for layer in self.layers:
            h = layer(h, cos, sin)
        return self.norm(h)


class LlamaForCausalLM(nn.Module):
    """``model`` (:class:`LlamaModel`) and ``lm_head``; returns logits."""

    def __init__(self, c, device=None):
        super().__init__()
        self.config = c
        self.model = LlamaModel(c, device)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False,
                                 device=device)

    def forward(self, input_ids, attention_mask=None):
        return self.lm_head(self.model(input_ids, attention_mask))


def load_llama(model_dir: str) -> LlamaForCausalLM:
    """The Llama of a Hugging Face layout directory: float32, eval mode, on
    the CPU. Every ``*.safetensors`` file of the directory is read (F32, F16,
    BF16 or F64 tensors, converted to float32); with ``tie_word_embeddings``
    ``lm_head`` shares ``model.embed_tokens``' weight.

    Raises:
        FileNotFoundError: no config.json or no safetensors file.
        ValueError: a configuration not implemented here (read_config), or a
            tensor missing, unexpected, of another shape or dtype.
    """
    if sys.byteorder != "little":  # pragma: no cover
        raise ValueError("safetensors data is little-endian; this host "
                         "is not")
    config = read_config(model_dir)
    files = sorted(glob.glob(os.path.join(model_dir, "*.safetensors")))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors file")
    # Built without initializing (every weight is read below).
    model = LlamaForCausalLM(config, device="meta").to_empty(device="cpu")
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    params = dict(model.named_parameters())  # tied: one name
    loaded = set()
    for path in files:
        header, data_start = read_header(path)
        with open(path, "rb") as f:
            for name, info in header.items():
                if name not in params:
                    if name.endswith(".rotary_emb.inv_freq") or (
                            name == "lm_head.weight" and
                            config.tie_word_embeddings):
                        continue  # recomputed, or the tied embeddings
                    raise ValueError(f"{path}: unexpected tensor {name}")
                dtype = _TORCH_DTYPES.get(info["dtype"])
                param = params[name]
                if dtype is None:
                    raise ValueError(f"{path}: {name} is {info['dtype']}, "
                                     f"not one of {sorted(_TORCH_DTYPES)}")
                if list(info["shape"]) != list(param.shape):
                    raise ValueError(f"{path}: {name} has shape "
                                     f"{info['shape']}, the config gives "
                                     f"{list(param.shape)}")
                begin, end = info["data_offsets"]
                data = bytearray(end - begin)
                f.seek(data_start + begin)
                if f.readinto(data) != len(data):
                    raise ValueError(f"{path}: {name} is cut short")
                if data:
                    with torch.no_grad():
                        param.copy_(torch.frombuffer(data, dtype=dtype)
                                    .reshape(param.shape))
                loaded.add(name)
    missing = sorted(set(params) - loaded)
    if missing:
        raise ValueError(f"{model_dir}: no tensor {missing[0]} in its "
                         f"safetensors files ({len(missing)} missing)")
    return model.eval()
