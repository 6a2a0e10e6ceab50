"""A tiny Wav2Vec2 keyword classifier from transformers: a conv1d feature extractor on raw 16 kHz audio, a
weight-normed positional conv (torch.nn.utils.parametrizations.weight_norm), two transformer layers, mean pooling.

forward(input_values, attention_mask=None, output_attentions=None, output_hidden_states=None, return_dict=None,
labels=None) returns a SequenceClassifierOutput; the data gives input_values only.
"""
import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

KEYWORDS = ["yes", "no", "up", "down"]


def build():
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32, 32),
        conv_stride=(5, 2, 2),
        conv_kernel=(10, 3, 3),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        classifier_proj_size=32,
        num_labels=len(KEYWORDS),
    )
    model = Wav2Vec2ForSequenceClassification(config)
    # Stands in for fine-tuning: with the 0.02 init of the head every clip is a near tie between the keywords.
    torch.nn.init.normal_(model.projector.weight, std=0.3)
    torch.nn.init.normal_(model.classifier.weight, std=1.0)
    model.eval()
    return model
