#!/usr/bin/env python3
"""A Llama model folder in the shipped model's layout as a GGUF for llama.cpp's llama-server.

Runs inside the Debian unstable root scripts/llama-server/setup.sh builds (python3-gguf, python3-numpy);
the packaged convert_hf_to_gguf.py needs torch and transformers, which are not there. Reads
config.json, tokenizer.json, tokenizer_config.json, generation_config.json (when present) and
model.safetensors (float32), and writes an all-float32 GGUF:

- general.architecture "llama" with the llama.* hyperparameters from config.json;
- Q and K projections permuted into llama.cpp's rotary layout, as llama.cpp's own converter does
  (without it the model's output is garbage);
- the tokenizer as "gpt2" BPE with pre-tokenizer "gpt-2" (llama.cpp rejects "gpt2"): the tokens
  byte-level encoded, special tokens as control tokens, and merges that rebuild every vocabulary word
  (the shipped tokenizer has none: HF's ignore_merges keeps whole vocabulary words, llama.cpp only
  keeps what its merges build). The merges are checked here: each word must come out as itself.
  Text outside the vocabulary is not always split as tokenizer.json splits it: a word after a space
  that no token holds (" Tom") can lose its space (llama.cpp falls back to the raw bytes of a merged
  piece it does not know, and the space is "Ġ" in the vocabulary). The engine sends token ids it
  encoded itself, so only a prompt the server tokenizes (its own chat formatting) meets this.
- the chat template: tokenizer_config.json's, else PLAIN_PROMPT_TEMPLATE, the plain Question/Answer
  prompt the shipped model was trained on (src/engine/math/prompt.ts). Without one llama.cpp formats
  chats as ChatML, a format this model has never seen, and a client asking for the server's own
  formatting would get gibberish.

Usage: python3 to_gguf.py MODEL_DIR OUT.gguf
"""
import json
import struct
import sys
from pathlib import Path

import gguf
import numpy as np


# The shipped model's prompt (formatPrompt in src/engine/math/prompt.ts) as a chat template. The trailing
# line break is written as an expression: a literal one after the tag would be trimmed by the template
# engine's whitespace rules in some renderers.
PLAIN_PROMPT_TEMPLATE = "{{ bos_token }}Question: {{ messages[-1]['content'] | trim }}\nAnswer:{{ '\\n' }}"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: every byte as a printable character (space as Ġ, newline as Ċ)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


BYTE_CHARS = bytes_to_unicode()


def byte_level(text: str) -> str:
    return "".join(BYTE_CHARS[b] for b in text.encode("utf-8"))


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = memoryview(raw)[8 + n :]
    dtypes = {"F32": np.float32, "F16": np.float16}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in dtypes:
            sys.exit(f"to_gguf: {path}: tensor {name} is {info['dtype']}; only F32 and F16 are read")
        start, end = info["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
        tensors[name] = array.astype(np.float32)
    return tensors


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotary halves → llama.cpp's interleaved pairs, per head (llama.cpp's LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def merges_for(words: list[str]) -> list[tuple[str, str]]:
    """
    Merges that build each word left to right (prefix + next character). Words that start with a
    space (Ġ) come first: inside a pre-token a Ġ only ever stands first, so their merges cannot be
    pre-empted by another word's merge of the same characters ("Ġ A" before "A n" keeps " Another"
    from becoming " " + "An" + …).
    """
    ordered = sorted(words, key=lambda w: not w.startswith("Ġ"))
    merges: list[tuple[str, str]] = []
    seen = set()
    for w in ordered:
        for i in range(1, len(w)):
            pair = (w[:i], w[i])
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
    return merges


def bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one pre-token as llama.cpp applies merges: the lowest-ranked pair first."""
    parts = list(word)
    while len(parts) > 1:
        best = min(range(len(parts) - 1), key=lambda i: ranks.get((parts[i], parts[i + 1]), 1 << 30))
        if (parts[best], parts[best + 1]) not in ranks:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: to_gguf.py MODEL_DIR OUT.gguf")
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    config = json.loads((src / "config.json").read_text())
    tok = json.loads((src / "tokenizer.json").read_text())
    tok_config = json.loads((src / "tokenizer_config.json").read_text()) if (src / "tokenizer_config.json").exists() else {}
    gen_path = src / "generation_config.json"
    generation = json.loads(gen_path.read_text()) if gen_path.exists() else {}
    if config.get("model_type") != "llama":
        sys.exit(f"to_gguf: {src}: model_type {config.get('model_type')!r}; only llama is converted")
    if tok["model"]["type"] != "BPE" or tok["model"].get("merges"):
        sys.exit(f"to_gguf: {src}: expected a BPE tokenizer without merges (the shipped model's layout)")

    n_head = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads", n_head)
    hidden = config["hidden_size"]
    head_dim = config.get("head_dim", hidden // n_head)
    n_layer = config["num_hidden_layers"]

    # The vocabulary, by id; the added (special) tokens are control tokens.
    vocab = tok["model"]["vocab"]
    special = {t["content"]: t["id"] for t in tok.get("added_tokens", []) if t.get("special")}
    size = max(max(vocab.values()), *special.values()) + 1 if special else max(vocab.values()) + 1
    if size != config["vocab_size"]:
        sys.exit(f"to_gguf: {src}: tokenizer has {size} ids, config.json says vocab_size {config['vocab_size']}")
    tokens = [""] * size
    types = [gguf.TokenType.UNUSED] * size
    for text, i in vocab.items():
        tokens[i] = text if text in special else byte_level(text)
        types[i] = gguf.TokenType.CONTROL if text in special else gguf.TokenType.NORMAL
    for text, i in special.items():
        tokens[i], types[i] = text, gguf.TokenType.CONTROL
    if "" in tokens:
        sys.exit(f"to_gguf: {src}: token ids {[i for i, t in enumerate(tokens) if not t]} have no text")

    words = [t for t, ty in zip(tokens, types) if ty == gguf.TokenType.NORMAL and len(t) > 1]
    merges = merges_for(words)
    ranks = {m: r for r, m in enumerate(merges)}
    broken = [w for w in words if bpe(w, ranks) != [w]]
    if broken:
        sys.exit(f"to_gguf: the merges do not rebuild {len(broken)} vocabulary words, e.g. {broken[:5]}")

    def token_id(key: str) -> int | None:
        v = tok_config.get(key)
        v = v.get("content") if isinstance(v, dict) else v
        return vocab.get(v, special.get(v)) if isinstance(v, str) else None

    bos = config.get("bos_token_id", token_id("bos_token"))
    eos = generation.get("eos_token_id", config.get("eos_token_id", token_id("eos_token")))
    eos = eos[0] if isinstance(eos, list) else eos
    pad = config.get("pad_token_id", token_id("pad_token"))
    unk = token_id("unk_token")

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(src.name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(size)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(hidden)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != hidden // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    if config.get("rope_scaling"):
        sys.exit(f"to_gguf: {src}: rope_scaling is not converted")

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    writer.add_token_merges([f"{a} {b}" for a, b in merges])
    for add, value in ((writer.add_bos_token_id, bos), (writer.add_eos_token_id, eos), (writer.add_pad_token_id, pad), (writer.add_unk_token_id, unk)):
        if value is not None:
            add(int(value))
    writer.add_add_bos_token(bool(tok_config.get("add_bos_token", True)))
    writer.add_add_eos_token(bool(tok_config.get("add_eos_token", False)))
    template = tok_config.get("chat_template")
    writer.add_chat_template(template if isinstance(template, str) and template else PLAIN_PROMPT_TEMPLATE)

    weights = read_safetensors(src / "model.safetensors")
    if config.get("tie_word_embeddings") and "lm_head.weight" not in weights:
        weights["lm_head.weight"] = weights["model.embed_tokens.weight"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layer)
    for name, w in weights.items():
        if name.endswith("self_attn.q_proj.weight"):
            w = permute(w, n_head)
        elif name.endswith("self_attn.k_proj.weight"):
            w = permute(w, n_kv)
        if name.endswith("rotary_emb.inv_freq"):
            continue
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            sys.exit(f"to_gguf: {src}: no GGUF name for tensor {name}")
        writer.add_tensor(new, np.ascontiguousarray(w, dtype=np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"to_gguf: {out}: {len(weights)} tensors, {size} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()
