#!/usr/bin/env python3
"""A full-size BiomedCLIP-shaped open_clip checkpoint with random weights, for
bench/export_biomedclip.sh (run with tools/.venv: torch + open_clip + timm +
transformers; nothing is downloaded).

Same files, config and tensor shapes as the hub's
microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224: the hub's
open_clip_config.json verbatim (timm vit_base_patch16_224, 768 x 12, 12
heads; BiomedBERT-base 768 x 12, vocab 30522, 256 context; MLP projection
768 -> 640 -> 512), open_clip_pytorch_model.bin (torch.save zip of the state
dict, float32, ~784 MB, with the text.transformer.embeddings.position_ids
buffer the real file carries), a 30522-line vocab.txt (placeholder tokens
around BERT's specials). open_clip resolves hf_model_name against the current
folder, so the BERT config is written to
microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract/config.json inside it.

Usage: tools/.venv/bin/python bench/make_biomedclip_checkpoint.py OUT_DIR
"""
import contextlib
import json
import math
import os
import sys
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

HF_NAME = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
OPEN_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 512,
        "vision_cfg": {"timm_model_name": "vit_base_patch16_224", "timm_model_pretrained": False,
                       "timm_pool": "", "timm_proj": "linear", "image_size": 224},
        "text_cfg": {"hf_model_name": HF_NAME, "hf_tokenizer_name": HF_NAME, "hf_proj_type": "mlp",
                     "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 256},
    },
    "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                       "std": [0.26862954, 0.26130258, 0.27577711]},
}
BERT_CONFIG = {
    "architectures": ["BertForMaskedLM"], "model_type": "bert", "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02,
    "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0, "position_embedding_type": "absolute",
    "type_vocab_size": 2, "vocab_size": 30522,
}


def main():
    out = Path(sys.argv[1]).resolve()
    done = out / ".complete"
    if done.exists():
        print(f"{out}: already there")
        return
    import open_clip
    import torch
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps(OPEN_CLIP_CONFIG, indent=4) + "\n")
    bert_dir = out / HF_NAME
    bert_dir.mkdir(parents=True, exist_ok=True)
    (bert_dir / "config.json").write_text(json.dumps(BERT_CONFIG, indent=2) + "\n")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + [f"[unused{i}]" for i in range(5, 100)] + [f"tok{i}" for i in range(100, 30522)]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (out / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 256}) + "\n")

    torch.manual_seed(0)
    with contextlib.chdir(out):
        model = open_clip.create_model(f"local-dir:{out}", load_weights=False, pretrained_text=False,
                                       pretrained_image=False)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    sd = model.state_dict()
    sd["text.transformer.embeddings.position_ids"] = torch.arange(512, dtype=torch.long)[None]
    torch.save(sd, out / "open_clip_pytorch_model.bin")
    done.write_text("ok\n")
    size = (out / "open_clip_pytorch_model.bin").stat().st_size
    print(f"{out}: {len(sd)} tensors, {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
