"""A tiny random-initialised llama (2 layers, hidden 64) with the real SmolLM2 tokenizer: unit tests
of the hf backend and the eval harness run on it in milliseconds."""
from __future__ import annotations


def tiny_llama(tokenizer, name: str = "tiny"):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmkit.models.hf import HFModel

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=4, intermediate_size=128, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return HFModel.from_objects(LlamaForCausalLM(config), tokenizer, name=name)
