"""PyTorch CPU eager reference for `npm run bench`: the same weights (model.safetensors), the same
decode loop (K rows, shared prompt prefilled once and broadcast, KV cache, one sampled token per row per
step), timed the same way. Prints one JSON object.

  /usr/bin/python3 scripts/bench/torch_reference.py MODEL_DIR PROMPT_IDS_JSON K STEPS THREADS"""
import json, os, sys, time
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "../demo-model"))
from model import LlamaForCausalLM  # noqa: E402


def load_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            f.seek(base + start)
            arr = np.frombuffer(f.read(end - start), dtype="<f4").reshape(info["shape"])
            out[name] = torch.from_numpy(arr.copy())
    return out


def main():
    model_dir, prompt_json, k, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    model = LlamaForCausalLM(cfg)
    model.load_state_dict(load_safetensors(os.path.join(model_dir, "model.safetensors")))
    model.eval()
    prompt = torch.tensor([json.loads(prompt_json)])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        t0 = time.perf_counter()
        n = prompt.shape[1]
        out = model(prompt, torch.ones(1, n, dtype=torch.int64), torch.arange(n).unsqueeze(0), *model.empty_past(1))
        past = [p.expand(k, -1, -1, -1).contiguous() for p in out[1:-1]]
        logits = out[0][:, -1, :].expand(k, -1)
        prefill = time.perf_counter() - t0
        t1 = time.perf_counter()
        for step in range(steps):
            tok = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
            length = n + step + 1
            out = model(tok, torch.ones(k, length, dtype=torch.int64), torch.full((k, 1), length - 1), *past)
            logits, past = out[0][:, -1, :], list(out[1:-1])
        decode = time.perf_counter() - t1
    print(json.dumps({"K": k, "steps": steps, "prefillMs": prefill * 1000, "msPerStep": decode * 1000 / steps,
                      "tokensPerSecond": k * steps / decode, "torch": torch.__version__, "threads": threads}))


if __name__ == "__main__":
    main()
