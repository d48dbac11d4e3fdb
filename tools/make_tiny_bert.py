#!/usr/bin/env python3
"""Builds tests/fixtures/tiny-bert: tiny Hugging Face BERT checkpoints for
`medquant export bert`, with transformers' outputs as references.

Two folders, saved with save_pretrained the way the hub ships BERT models:

  tiny-bert/       BertModel (with pooler)  config.json + model.safetensors
  tiny-bert/mlm/   BertForMaskedLM          config.json + pytorch_model.bin
                   (tensors under "bert.", MLM head "cls.*", tied decoder)

Both: hidden 32, 2 layers, 4 heads (head width 8, so the heads must come
from config.json, not from the hidden / 64 rule), FFN 64, 48 positions,
vocabulary = the first 512 tokens of tiny-biomedclip's vocab.txt. Matrices
N(0, 0.3) and LayerNorm weights/biases + 0.1 N(0, 1) so that different
inputs give clearly different outputs. Reference (reference/): token ids of
4 sentences (BertTokenizer, padded to 32), attention masks, and
last_hidden_state[:, 0] ("cls.npy") and the masked mean
sum(h * m) / max(sum(m), 1e-9) ("mean.npy"), float32.

Run:  tools/.venv/bin/python tools/make_tiny_bert.py
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402  (sets HF_HUB_OFFLINE first)

import numpy as np  # noqa: E402
import torch  # noqa: E402

SEED = 20240612
OUT = fc.FIXTURES / "tiny-bert"
VOCAB = 512
SEQ = 32
SENTENCES = [
    "chest x-ray shows a small pleural effusion",
    "normal study",
    "diffuse edema with central density, no new lesion seen on the report",
    "[CLS] twice",
]


def config():
    from transformers import BertConfig
    return BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=48, type_vocab_size=2,
                      hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0)


def randomize(model, seed):
    gen = torch.Generator().manual_seed(seed)
    fc.rescale_matrices_(model, gen, std=0.3)
    fc.randomize_constant_params_(model, gen, scale=0.1)


def write_vocab(d: Path):
    lines = (fc.FIXTURES / "tiny-biomedclip" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (d / "vocab.txt").write_text("\n".join(lines[:VOCAB]) + "\n", encoding="utf-8")
    fc.write_json(d / "tokenizer_config.json", {"do_lower_case": True, "model_max_length": 48,
                                               "tokenizer_class": "BertTokenizer"})


def reference(d: Path, bert, tokens):
    ref = d / "reference"
    ref.mkdir(exist_ok=True)
    index: dict = {}
    ids = torch.tensor(tokens["input_ids"], dtype=torch.long)
    mask = torch.tensor(tokens["attention_mask"], dtype=torch.long)
    with torch.no_grad():
        h = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    m = mask.unsqueeze(-1).to(h.dtype)
    mean = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
    fc.save_npy(ref / "input_ids.npy", ids.numpy().astype(np.int64), index, "BertTokenizer ids, padded to 32")
    fc.save_npy(ref / "attention_mask.npy", mask.numpy().astype(np.int64), index, "1 for tokens, 0 for [PAD]")
    fc.save_npy(ref / "cls.npy", h[:, 0].numpy().astype(np.float32), index, "last_hidden_state[:, 0]")
    fc.save_npy(ref / "mean.npy", mean.numpy().astype(np.float32), index,
                "sum(last_hidden_state * mask) / max(sum(mask), 1e-9)")
    fc.write_json(ref / "reference.json", {"generator": "tools/make_tiny_bert.py", "seed": SEED,
                                           "packages": fc.package_versions(), "sentences": SENTENCES,
                                           "seq_len": SEQ, "tensors": index})


def main():
    from transformers import BertForMaskedLM, BertModel, BertTokenizer
    out = fc.fresh_dir(OUT)
    (out / "mlm").mkdir()
    write_vocab(out)
    write_vocab(out / "mlm")
    tok = BertTokenizer(str(out / "vocab.txt"), do_lower_case=True)
    tokens = tok(SENTENCES, padding="max_length", max_length=SEQ, truncation=True)

    torch.manual_seed(SEED)
    base = BertModel(config(), add_pooling_layer=True).eval()
    randomize(base, SEED + 1)
    base.save_pretrained(str(out), safe_serialization=True)
    reference(out, base, tokens)

    torch.manual_seed(SEED + 2)
    mlm = BertForMaskedLM(config()).eval()
    randomize(mlm, SEED + 3)
    mlm.save_pretrained(str(out / "mlm"), safe_serialization=False)
    reference(out / "mlm", mlm.bert, tokens)

    # Check: the stock loaders read back what was written, same outputs.
    for d, cls in ((out, BertModel), (out / "mlm", BertForMaskedLM)):
        m = cls.from_pretrained(str(d)).eval()
        bert = m if cls is BertModel else m.bert
        ids = torch.from_numpy(np.load(d / "reference" / "input_ids.npy"))
        mask = torch.from_numpy(np.load(d / "reference" / "attention_mask.npy"))
        with torch.no_grad():
            h = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        assert np.array_equal(h[:, 0].numpy(), np.load(d / "reference" / "cls.npy")), d
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
