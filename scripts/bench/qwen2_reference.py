"""PyTorch CPU eager reference for `npm run bench:real` (scripts/bench/realShape.ts): a Qwen2 decoder in
plain torch (no transformers), written as transformers' eager Qwen2 computes it, on the weights the ONNX
files were written from (DIR/weights.safetensors, projections stored input x output), then the decode
loop of plain batched sampling: K rows, the prompt prefilled once and broadcast, a KV cache grown by
concatenation each step, one sampled token per row per step, EOS ignored.

First the forward is checked against the fp32 ONNX graph: the logits over DIR/check.json's ids must
match DIR/check_logits.f32 (onnxruntime-node's) within --tolerance, else it exits 3 before any timing.
Each step (sampling + forward) is timed; prints one JSON object with each run's median ms per step
(msPerStepMedianRuns), their best and median, and the mean.

  PYTHON scripts/bench/qwen2_reference.py --dir DIR --config DIR/fp32/config.json --k 16 --steps 32 \\
      --prompt 64 --threads 2 --repeats 2 [--tolerance 1e-3]

On a GPU (scripts/gpu/real.sh, issue #19): `--device cuda --dtype float16 --ks 16,64,256` runs the same
loop in half precision on the card for each K in turn (one JSON line each, after the check's), the
check against DIR/check_logits.f32 as the fp16 graph computed them (a looser --tolerance; the
agreement of the top token is reported too). CUDA work is synchronized before each time is read."""
import argparse, json, os, statistics, sys, time
import numpy as np
import torch
import torch.nn.functional as F


def load_safetensors(path):
    """name -> float32 tensor, from a safetensors file of F32 tensors (memory-mapped, then copied)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype="<f4").reshape(info["shape"])
    return out


class Qwen2:
    def __init__(self, cfg, w, device="cpu", dtype=torch.float32):
        self.layers = cfg["num_hidden_layers"]
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg["num_key_value_heads"]
        self.hidden = cfg["hidden_size"]
        self.head_dim = cfg.get("head_dim") or self.hidden // self.heads
        self.eps = cfg["rms_norm_eps"]
        self.device, self.dtype = device, dtype
        t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32)).to(device, dtype)
        # nn.Linear's layout (output x input), as transformers holds them.
        lin = lambda a: torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float32).T)).to(device, dtype)
        self.embed = t(w["embed"])  # tied head: logits = h @ embed^T
        self.final_norm = t(w["final_norm"])
        self.L = []
        for i in range(self.layers):
            p = f"layers.{i}."
            self.L.append({
                "in_norm": t(w[p + "input_norm"]), "post_norm": t(w[p + "post_attention_norm"]),
                "q": lin(w[p + "q"]), "k": lin(w[p + "k"]), "v": lin(w[p + "v"]),
                "qb": t(w[p + "q_bias"]), "kb": t(w[p + "k_bias"]), "vb": t(w[p + "v_bias"]),
                "o": lin(w[p + "o"]), "gate": lin(w[p + "gate"]), "up": lin(w[p + "up"]), "down": lin(w[p + "down"]),
            })
        theta = cfg["rope_theta"]
        inv = 1.0 / theta ** (np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim)
        self.inv_freq = torch.from_numpy(inv.astype(np.float32)).to(device)

    def rms(self, x, w):
        # In float32, as transformers' Qwen2RMSNorm computes it, then back to the weights' precision.
        x32 = x.float()
        return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(w.dtype)

    def rotary(self, positions):
        freqs = positions.to(self.device, torch.float32)[:, :, None] * self.inv_freq  # [b, s, hd/2]
        emb = torch.cat((freqs, freqs), -1)
        return emb.cos()[:, None].to(self.dtype), emb.sin()[:, None].to(self.dtype)  # [b, 1, s, hd]

    @staticmethod
    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), -1)

    def forward(self, ids, positions, past):
        """ids, positions [b, s]; past: a list of (key, value) [b, kv, t, hd] or None. Returns logits of the last position
        (all positions with all_logits), and the new cache."""
        ids = ids.to(self.device)
        b, s = ids.shape
        x = F.embedding(ids, self.embed)
        cos, sin = self.rotary(positions)
        present = []
        for i, L in enumerate(self.L):
            h = self.rms(x, L["in_norm"])
            q = F.linear(h, L["q"], L["qb"]).view(b, s, self.heads, self.head_dim).transpose(1, 2)
            k = F.linear(h, L["k"], L["kb"]).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            v = F.linear(h, L["v"], L["vb"]).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            if past is not None:
                k = torch.cat((past[i][0], k), 2)
                v = torch.cat((past[i][1], v), 2)
            present.append((k, v))
            # A causal mask only when the queries are more than one (the prefill); one new token sees the whole cache.
            a = F.scaled_dot_product_attention(q, k, v, is_causal=s > 1, enable_gqa=True)
            x = x + F.linear(a.transpose(1, 2).reshape(b, s, self.heads * self.head_dim), L["o"])
            h = self.rms(x, L["post_norm"])
            x = x + F.linear(F.silu(F.linear(h, L["gate"])) * F.linear(h, L["up"]), L["down"])
        return self.rms(x, self.final_norm), present

    def logits(self, h):
        return F.linear(h, self.embed)


def sync(model):
    """Waits for the card's queued work, so that a time read after it includes it."""
    if model.device != "cpu":
        torch.cuda.synchronize()


def decode_run(model, prompt, k, steps, seed):
    """One run of plain batched sampling; returns (prefill ms, per-step ms list)."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    n = prompt.shape[1]
    sync(model)
    t0 = time.perf_counter()
    h, past = model.forward(prompt, torch.arange(n)[None], None)
    logits = model.logits(h[:, -1]).expand(k, -1)
    past = [(kk.expand(k, -1, -1, -1).contiguous(), vv.expand(k, -1, -1, -1).contiguous()) for kk, vv in past]
    sync(model)
    prefill = (time.perf_counter() - t0) * 1000
    times = []
    for step in range(steps):
        t = time.perf_counter()
        # Sampled in float32, as the engine draws from float32 probabilities.
        tok = torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=gen)
        h, past = model.forward(tok, torch.full((k, 1), n + step), past)
        logits = model.logits(h[:, -1])
        sync(model)
        times.append((time.perf_counter() - t) * 1000)
    return prefill, times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--ks", default=None, help="several K, one JSON line each (overrides --k)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = json.load(open(a.config))
    t0 = time.perf_counter()
    dtype = torch.float16 if a.dtype == "float16" else torch.float32
    model = Qwen2(cfg, load_safetensors(os.path.join(a.dir, "weights.safetensors")), a.device, dtype)
    sync(model)
    load_s = time.perf_counter() - t0
    check = json.load(open(os.path.join(a.dir, "check.json")))
    want = np.fromfile(os.path.join(a.dir, "check_logits.f32"), dtype="<f4").reshape(len(check["ids"]), check["vocab"])
    with torch.inference_mode():
        ids = torch.tensor([check["ids"]])
        h, _ = model.forward(ids, torch.arange(ids.shape[1])[None], None)
        got = model.logits(h)[0].float().cpu().numpy()
    diff = float(np.abs(got - want).max())
    top1 = float((got.argmax(-1) == want.argmax(-1)).mean())
    card = torch.cuda.get_device_name() if a.device != "cpu" else None
    result = {"torch": torch.__version__, "device": card or "cpu", "dtype": a.dtype, "threads": a.threads, "loadS": round(load_s, 1),
              "check": {"tokens": len(check["ids"]), "maxAbsDiff": diff, "maxAbsLogit": float(np.abs(want).max()), "top1Agreement": top1}}
    if not diff <= a.tolerance:
        print(json.dumps(result))
        print(f"qwen2_reference: the PyTorch forward does not match the fp32 ONNX graph: max |logit diff| {diff:.3g} > {a.tolerance}",
              file=sys.stderr)
        sys.exit(3)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, check["vocab"], (1, a.prompt), generator=gen)
    blas = [line.strip() for line in torch.__config__.show().splitlines() if "BLAS" in line or "LAPACK" in line or "MKL" in line]
    for k in [int(x) for x in a.ks.split(",")] if a.ks else [a.k]:
        steps_ms, prefills, means = [], [], []
        with torch.inference_mode():
            decode_run(model, prompt, k, 3, 99)  # warm-up
            for r in range(a.repeats):
                prefill, times = decode_run(model, prompt, k, a.steps, r)
                prefills.append(prefill)
                means.append(statistics.mean(times))
                steps_ms.append(statistics.median(times))
        med = statistics.median(steps_ms)
        result.update({
            "K": k, "steps": a.steps, "prompt": a.prompt, "repeats": a.repeats,
            "msPerStepBest": round(min(steps_ms), 2), "msPerStepMedian": round(med, 2), "msPerStepMedianRuns": [round(x, 2) for x in steps_ms],
            "msPerStepMean": round(statistics.median(means), 2), "prefillMs": round(statistics.median(prefills), 1),
            "tokensPerSecond": round(k * 1000 / med, 1), "blas": blas,
            "mkl": torch.backends.mkl.is_available(), "mkldnn": torch.backends.mkldnn.is_available(),
        })
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
