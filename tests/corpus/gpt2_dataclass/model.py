"""A tiny GPT-2 language model configured by a @dataclass of the project's own, transformers imported at the top
of the file: tied input/output embeddings, causal attention, and the default `use_cache=True`, so the output is a
CausalLMOutputWithCrossAttentions holding `logits` [batch, time, vocab] and a `past_key_values` cache object.
Inputs: input_ids and attention_mask (int64, right-padded)."""
from dataclasses import asdict, dataclass

import torch
from transformers import GPT2Config, GPT2LMHeadModel


@dataclass
class ModelConfig:
    vocab_size: int = 512
    n_positions: int = 64
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 2
    bos_token_id: int = 1
    eos_token_id: int = 2
    initializer_range: float = 0.4  # stands in for training: with 0.02 every next token is a near tie


def build(config: ModelConfig = ModelConfig()):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**asdict(config)))
    model.eval()
    return model
