"""Zoo entry `text`: a one-layer transformer encoder classifying hand-written sentences into four topics."""
from deploytool.config import InputSpec
from deploytool.zoo import Recipe, ZooEntry
from model_zoo.text.data import label_of, write_sentences
from model_zoo.text.model import LABELS, SEQ_LEN, architecture, build

ENTRY = ZooEntry(
    name="text",
    build=build,
    architecture=architecture,
    inputs=(InputSpec("ids", (1, SEQ_LEN), "int64"),),
    preprocess=None,
    labels=LABELS,
    write_data=write_sentences,
    label_of=label_of,
    data_note="model_zoo/text/corpus.tsv (300 hand-written sentences, 4 topics): every third sentence, never "
              "trained on, as token ids (vocab.txt)",
    weights_note="trained in the repo: model_zoo/text/train.py -> text_classifier.pt (two of every three sentences)",
    notes=("token ids: lower-cased words looked up in vocab.txt, 0 = padding, 1 = unknown, padded to "
           f"{SEQ_LEN}",
           "the encoder layer is written out (model.py): nn.TransformerEncoderLayer lowers to a fused op "
           "(aten._transformer_encoder_layer_fwd) that ExecuTorch rejects",),
    recipe=Recipe(why="int8 everywhere XNNPACK takes it: the int8 .pte of this encoder runs in the ExecuTorch "
                      "runtime (no crash) within 1 point of eager accuracy, so no layer needs to stay in fp32; "
                      "embedding, LayerNorm and the padding mask stay fp32 on the portable CPU path anyway"),
)
