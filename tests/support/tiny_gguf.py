"""A tiny Llama-architecture GGUF (2 layers, 64 wide, random weights) that llama.cpp loads and answers with."""
from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from . import free_port

N_EMBD = 64
N_LAYERS = 2
N_HEAD = 4
N_FF = 128
CONTEXT_LENGTH = 2048
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
FIRST_BYTE_ID = len(SPECIAL_TOKENS)


def _vocab() -> tuple[list[bytes], list[float], list[int]]:
    """SPM vocabulary: the three control tokens, then one byte token per byte value (`<0x41>` = 'A')."""
    tokens = [t.encode() for t in SPECIAL_TOKENS] + [f"<0x{b:02X}>".encode() for b in range(256)]
    scores = [0.0] * len(tokens)
    types = ([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
             + [gguf.TokenType.BYTE] * 256)
    return tokens, scores, [int(t) for t in types]


def _letter_ids() -> np.ndarray:
    letters = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return np.array([FIRST_BYTE_ID + b for b in letters])


FIM_TOKENS = {"fim_pre": "<fim_prefix>", "fim_suf": "<fim_suffix>", "fim_mid": "<fim_middle>"}


def write_tiny_gguf(path: str | Path, seed: int = 0, fim: bool = False) -> Path:
    """Write the model to `path` and return it; `fim`: with fill-in-the-middle tokens, for llama-server's /infill.

    Random weights would emit any byte (invalid UTF-8) or EOS at once. Dimension 0 of every token embedding is a
    large constant, so after RMS norm the hidden state always has a big positive component there; the output
    weights read that component as +bias for ASCII letters and -bias for everything else (EOS included), so
    greedy decoding writes letters. The model never emits EOS: always send `max_tokens`.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    fim_ids = {}
    if fim:
        for key, token in FIM_TOKENS.items():
            fim_ids[key] = len(tokens)
            tokens.append(token.encode())
            scores.append(0.0)
            types.append(int(gguf.TokenType.CONTROL))
    n_vocab = len(tokens)

    def weights(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("modelreg-tiny-llama")
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYERS)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_unk_token_id(UNK_ID)
    writer.add_add_bos_token(True)
    for key, token_id in fim_ids.items():
        writer.add_uint32(f"tokenizer.ggml.{key}_token_id", token_id)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    embeddings = weights(n_vocab, N_EMBD, scale=0.1)
    embeddings[:, 0] = 10.0
    output = weights(n_vocab, N_EMBD, scale=0.5)
    output[:, 0] = -4.0
    output[_letter_ids(), 0] = 4.0
    writer.add_tensor("token_embd.weight", embeddings)
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    for layer in range(N_LAYERS):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{block}.{name}.weight", weights(N_EMBD, N_EMBD))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"{block}.ffn_up.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"{block}.ffn_down.weight", weights(N_EMBD, N_FF))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def tiny_entry(model_path: str | Path, name: str = "tiny-llama_(F32)", port: int | None = None,
               extra_args: list[str] | None = None, **fields) -> dict:
    """A merged registry entry that serves the tiny model with llama-cpp-python's server."""
    return {"name": name, "backend": "llama-cpp-python",
            "backend_config": {"port": port or free_port(), "model_path": str(model_path),
                               "extra_args": ["--n_ctx", "512"] if extra_args is None else extra_args},
            **fields}
