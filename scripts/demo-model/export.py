"""Exports the decoder to ONNX with the Optimum / transformers.js interface and writes a parity fixture
(PyTorch logits for a fixed prefill + decode step) that the engine's tests compare against.

  /usr/bin/python3 scripts/demo-model/export.py   # re-export from scripts/demo-model/work/model.pt"""
import json, os, sys
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model import LlamaForCausalLM  # noqa: E402


def names(cfg):
    n = cfg["num_hidden_layers"]
    past = [f"past_key_values.{i}.{kv}" for i in range(n) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(n) for kv in ("key", "value")]
    return past, present


def export_onnx(model, cfg, model_dir):
    past_names, present_names = names(cfg)
    os.makedirs(os.path.join(model_dir, "onnx"), exist_ok=True)
    b, s, p = 2, 3, 4
    ids = torch.randint(3, cfg["vocab_size"], (b, s))
    mask = torch.ones(b, p + s, dtype=torch.int64)
    pos = torch.arange(p, p + s).unsqueeze(0).expand(b, s)
    d = cfg["hidden_size"] // cfg["num_attention_heads"]
    past = [torch.randn(b, cfg["num_key_value_heads"], p, d) for _ in past_names]
    dyn = {"input_ids": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"},
           "logits": {0: "batch_size", 1: "sequence_length"},
           "last_hidden_state": {0: "batch_size", 1: "sequence_length"}}
    for nme in past_names:
        dyn[nme] = {0: "batch_size", 2: "past_sequence_length"}
    for nme in present_names:
        dyn[nme] = {0: "batch_size", 2: "total_sequence_length"}
    path = os.path.join(model_dir, "onnx", "model.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask, pos, *past), path, opset_version=14,
                          input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                          output_names=["logits", *present_names, "last_hidden_state"],
                          dynamic_axes=dyn, do_constant_folding=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"],
           "pad_token_id": cfg["pad_token_id"], "do_sample": True, "temperature": 1.0, "max_new_tokens": 96}
    with open(os.path.join(model_dir, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")
    write_safetensors(model, os.path.join(model_dir, "model.safetensors"))
    import onnx
    onnx.checker.check_model(path)
    print("exported", path, os.path.getsize(path), "bytes")


def write_safetensors(model, path):
    """The weights in the safetensors layout (8-byte header size, JSON header, raw little-endian data),
    written by hand because Debian has no safetensors package. PyTorch references load these."""
    tensors = {k: v.detach().contiguous().float() for k, v in model.state_dict().items()}
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        data = tensors[name].numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for b in blobs:
            f.write(b)
    print("wrote", path, os.path.getsize(path), "bytes")


def write_parity_fixture(model, path):
    """Prefill a 2-row batch (the second left-padded), then one decode step through the cache."""
    torch.manual_seed(123)
    v = model.cfg["vocab_size"]
    ids = torch.randint(3, v, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.int64)
    mask[1, :2] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(ids, mask, pos, *model.empty_past(2))
        nxt = torch.randint(3, v, (2, 1))
        mask2 = torch.cat([mask, torch.ones(2, 1, dtype=torch.int64)], dim=1)
        pos2 = pos[:, -1:] + 1
        out2 = model(nxt, mask2, pos2, *out[1:-1])
    fixture = {
        "prefill": {"input_ids": ids.tolist(), "attention_mask": mask.tolist(), "position_ids": pos.tolist(),
                    "last_logits": out[0][:, -1, :].tolist(), "last_hidden": out[-1][:, -1, :].tolist()},
        "decode": {"input_ids": nxt.tolist(), "attention_mask": mask2.tolist(), "position_ids": pos2.tolist(),
                   "logits": out2[0][:, -1, :].tolist()},
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(fixture, f)
    print("wrote", path)


if __name__ == "__main__":
    root = os.path.normpath(os.path.join(HERE, "../.."))
    cfg = json.load(open(os.path.join(root, "models/tiny-math-llama/config.json")))
    model = LlamaForCausalLM(cfg)
    model.load_state_dict(torch.load(os.path.join(HERE, "work/model.pt")))
    model.eval()
    export_onnx(model, cfg, os.path.join(root, "models/tiny-math-llama"))
    write_parity_fixture(model, os.path.join(root, "test/fixtures/tiny-math-llama.parity.json"))
