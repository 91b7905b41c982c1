"""A Llama-style decoder (RMSNorm, rotary positions, SwiGLU, grouped-query attention) whose forward pass
has the Optimum / transformers.js decoder interface, so the same module trains and exports to ONNX.

Parameter names follow Hugging Face's LlamaForCausalLM, and config.json is a real Llama config."""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F

MASKED = -1e9  # not -inf: a row that is all padding would otherwise become NaN


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.h = cfg["num_attention_heads"]
        self.kv = cfg["num_key_value_heads"]
        self.d = cfg["hidden_size"] // self.h
        hid = cfg["hidden_size"]
        self.q_proj = nn.Linear(hid, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(hid, self.kv * self.d, bias=False)
        self.v_proj = nn.Linear(hid, self.kv * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, hid, bias=False)

    def forward(self, x, cos, sin, mask, past_k, past_v):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.kv, self.d).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        present_k, present_v = k, v
        if self.kv != self.h:
            # Each KV head serves h/kv query heads; expand + reshape exports with dynamic shapes
            # (repeat_interleave does not, in torch 1.13).
            rep = self.h // self.kv
            t = k.shape[2]
            k = k.unsqueeze(2).expand(b, self.kv, rep, t, self.d).reshape(b, self.h, t, self.d)
            v = v.unsqueeze(2).expand(b, self.kv, rep, t, self.d).reshape(b, self.h, t, self.d)
        scores = q @ k.transpose(2, 3) / math.sqrt(self.d) + mask
        out = F.softmax(scores, dim=-1) @ v
        return self.o_proj(out.transpose(1, 2).reshape(b, s, self.h * self.d)), present_k, present_v


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hid, inter = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(hid, inter, bias=False)
        self.up_proj = nn.Linear(hid, inter, bias=False)
        self.down_proj = nn.Linear(inter, hid, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, past_k, past_v):
        a, pk, pv = self.self_attn(self.input_layernorm(x), cos, sin, mask, past_k, past_v)
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x)), pk, pv


class Inner(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Inner(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        d = cfg["hidden_size"] // cfg["num_attention_heads"]
        inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, d, 2).float() / d))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, input_ids, attention_mask, position_ids, *past):
        """Returns logits, present.{i}.key, present.{i}.value for each layer, last_hidden_state."""
        s = input_ids.shape[1]
        total = attention_mask.shape[1]
        past_len = total - s
        freqs = position_ids.unsqueeze(-1).float() * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1).unsqueeze(1)
        cos, sin = emb.cos(), emb.sin()
        # Causal by index within the row, so left padding works: query i sits at index past_len + i.
        key_idx = torch.arange(total, device=input_ids.device).unsqueeze(0)
        query_idx = (torch.arange(s, device=input_ids.device) + past_len).unsqueeze(1)
        allowed = (key_idx <= query_idx).unsqueeze(0).unsqueeze(0) & (attention_mask.unsqueeze(1).unsqueeze(2) > 0)
        mask = torch.where(allowed, torch.zeros((), dtype=torch.float32), torch.full((), MASKED, dtype=torch.float32))
        x = self.model.embed_tokens(input_ids)
        presents = []
        for i, layer in enumerate(self.model.layers):
            x, pk, pv = layer(x, cos, sin, mask, past[2 * i], past[2 * i + 1])
            presents += [pk, pv]
        hidden = self.model.norm(x)
        return (self.lm_head(hidden), *presents, hidden)

    def empty_past(self, batch):
        h = self.cfg["num_key_value_heads"]
        d = self.cfg["hidden_size"] // self.cfg["num_attention_heads"]
        return [torch.zeros(batch, h, 0, d) for _ in range(2 * self.cfg["num_hidden_layers"])]
