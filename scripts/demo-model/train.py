"""Step 2 of the demo-model recipe: trains the decoder on the encoded synthetic data (answer tokens
only), then exports ONNX and a parity fixture. Run with Debian's torch: see README.md here.

  /usr/bin/python3 scripts/demo-model/train.py --steps 5200 [--seed 0] [--threads 2]
"""
import argparse, json, math, os, sys, time
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model import LlamaForCausalLM  # noqa: E402

ROOT = os.path.normpath(os.path.join(HERE, "../.."))
MODEL_DIR = os.path.join(ROOT, "models/tiny-math-llama")
WORK = os.path.join(HERE, "work")


def config(vocab_size):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "intermediate_size": 352,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 32,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "torch_dtype": "float32",
    }


def load_data():
    tokens = np.fromfile(os.path.join(WORK, "train.tokens.u16"), dtype=np.uint16).astype(np.int64)
    offsets = np.fromfile(os.path.join(WORK, "train.offsets.i32"), dtype=np.int32)
    prompt_lens = np.fromfile(os.path.join(WORK, "train.prompt_lens.i32"), dtype=np.int32)
    return tokens, offsets, prompt_lens


def length_bucketed_batches(offsets, n, size, rng, pool=50):
    """One epoch of batches: random pools of `pool` batches, sorted by length inside each pool, so a
    batch pads little; batch order is shuffled again so lengths do not drift through the epoch."""
    lens = offsets[1:] - offsets[:-1]
    order = rng.permutation(n)
    out = []
    for start in range(0, n - size + 1, size * pool):
        chunk = order[start:start + size * pool]
        chunk = chunk[np.argsort(lens[chunk], kind="stable")]
        out += [chunk[i:i + size] for i in range(0, len(chunk) - size + 1, size)]
    return [out[i] for i in rng.permutation(len(out))]


def batch(tokens, offsets, prompt_lens, idx):
    lens = offsets[idx + 1] - offsets[idx]
    width = int(lens.max())
    ids = np.zeros((len(idx), width), dtype=np.int64)
    target = np.full((len(idx), width), -100, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    for r, i in enumerate(idx):
        seq = tokens[offsets[i]:offsets[i + 1]]
        ids[r, :len(seq)] = seq
        mask[r, :len(seq)] = 1
        # Predict token t+1 from position t, only inside the completion (solution lines and EOS).
        p = prompt_lens[i]
        target[r, p - 1:len(seq) - 1] = seq[p:]
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(target)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    meta = json.load(open(os.path.join(WORK, "meta.json")))
    cfg = config(meta["vocab_size"])
    model = LlamaForCausalLM(cfg)
    for name, p in model.named_parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.02)
    tokens, offsets, prompt_lens = load_data()
    n = len(prompt_lens)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    warmup = 200

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        t = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    batches = length_bucketed_batches(offsets, n, args.batch, rng)
    cursor = 0
    start = time.time()
    log = open(os.path.join(WORK, "train_log.jsonl"), "w")
    for step in range(args.steps):
        if cursor == len(batches):
            batches, cursor = length_bucketed_batches(offsets, n, args.batch, rng), 0
        idx = batches[cursor]
        cursor += 1
        ids, mask, target = batch(tokens, offsets, prompt_lens, idx)
        pos = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
        out = model(ids, mask, pos, *model.empty_past(ids.shape[0]))
        loss = F.cross_entropy(out[0].reshape(-1, cfg["vocab_size"]), target.reshape(-1), ignore_index=-100)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            rec = {"step": step, "loss": round(loss.item(), 4), "lr": lr_at(step), "seconds": round(time.time() - start, 1)}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
    train_seconds = time.time() - start
    torch.save(model.state_dict(), os.path.join(WORK, "model.pt"))
    export(model, cfg)
    with open(os.path.join(WORK, "train_summary.json"), "w") as f:
        json.dump({"steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                   "threads": args.threads, "train_seconds": round(train_seconds, 1),
                   "sequences_seen": args.steps * args.batch,
                   "parameters": sum(p.numel() for p in model.parameters())}, f, indent=2)


def export(model, cfg):
    from export import export_onnx, write_parity_fixture
    model.eval()
    export_onnx(model, cfg, MODEL_DIR)
    write_parity_fixture(model, os.path.join(ROOT, "test/fixtures/tiny-math-llama.parity.json"))


if __name__ == "__main__":
    main()
