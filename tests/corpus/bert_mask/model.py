"""A tiny BERT sentence classifier, as a transformers project writes it: the config object, the model class, eval().

forward() is transformers' own: input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, labels,
... all optional; the data gives input_ids and attention_mask. It returns a SequenceClassifierOutput (logits).
"""
import torch
from transformers import BertConfig, BertForSequenceClassification

LABELS = ["negative", "neutral", "positive"]


def build():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        initializer_range=0.2,  # random init with BERT's 0.02 gives logits ~0.01 apart: no decision to keep
    )
    model = BertForSequenceClassification(config)
    model.eval()
    return model
