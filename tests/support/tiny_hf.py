"""A tiny Llama Hugging Face model folder (2 layers, 64 wide, head size 32, random weights) that real vLLM serves."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from .tiny_gguf import BOS_ID, CHAT_TEMPLATE, CONTEXT_LENGTH, EOS_ID, N_EMBD, N_FF, N_LAYERS, SPECIAL_TOKENS, UNK_ID

# vLLM's CPU attention kernel needs a head size of at least 32 (with 16 every request answers 500).
N_HEAD = 2
HEAD_DIM = N_EMBD // N_HEAD
FIRST_BYTE_ID = len(SPECIAL_TOKENS)
LETTERS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _byte_chars() -> list[str]:
    """GPT-2's byte-level alphabet in byte order: printable bytes stand for themselves, the others for chr(256+n)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(others)) for b in range(256)]


def _tokenizer() -> Tokenizer:
    """Byte-level BPE with no merges: the control tokens, then one token per byte value (ids 3..258, in byte order)."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({char: FIRST_BYTE_ID + byte for byte, char in enumerate(_byte_chars())})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=SPECIAL_TOKENS[UNK_ID]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def write_tiny_hf(folder: str | Path, seed: int = 0, max_position_embeddings: int = CONTEXT_LENGTH) -> Path:
    """Write config.json, model.safetensors, tokenizer.json and tokenizer_config.json (with a chat template).

    As in the tiny GGUF, dimension 0 of every embedding is a large constant that the output head reads as +bias for
    ASCII letters and -bias for everything else (EOS included), so greedy decoding writes letters and never stops
    early: always send `max_tokens`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokenizer = _tokenizer()
    n_vocab = tokenizer.get_vocab_size()

    def weights(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    embeddings = weights(n_vocab, N_EMBD, scale=0.1)
    embeddings[:, 0] = 10.0
    head = weights(n_vocab, N_EMBD, scale=0.5)
    head[:, 0] = -4.0
    head[[FIRST_BYTE_ID + b for b in LETTERS], 0] = 4.0
    tensors = {"model.embed_tokens.weight": embeddings, "model.norm.weight": np.ones(N_EMBD, np.float32),
               "lm_head.weight": head}
    for layer in range(N_LAYERS):
        block = f"model.layers.{layer}"
        tensors[f"{block}.input_layernorm.weight"] = np.ones(N_EMBD, np.float32)
        tensors[f"{block}.post_attention_layernorm.weight"] = np.ones(N_EMBD, np.float32)
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            tensors[f"{block}.self_attn.{name}.weight"] = weights(N_EMBD, N_EMBD)
        tensors[f"{block}.mlp.gate_proj.weight"] = weights(N_FF, N_EMBD)
        tensors[f"{block}.mlp.up_proj.weight"] = weights(N_FF, N_EMBD)
        tensors[f"{block}.mlp.down_proj.weight"] = weights(N_EMBD, N_FF)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})

    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": N_EMBD,
        "intermediate_size": N_FF, "num_hidden_layers": N_LAYERS, "num_attention_heads": N_HEAD,
        "num_key_value_heads": N_HEAD, "head_dim": HEAD_DIM, "hidden_act": "silu",
        "max_position_embeddings": max_position_embeddings, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "vocab_size": n_vocab, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "tie_word_embeddings": False,
        "torch_dtype": "float32", "attention_bias": False, "mlp_bias": False,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": SPECIAL_TOKENS[BOS_ID],
        "eos_token": SPECIAL_TOKENS[EOS_ID], "unk_token": SPECIAL_TOKENS[UNK_ID],
        "model_max_length": max_position_embeddings, "add_bos_token": True, "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n", encoding="utf-8")
    return folder
