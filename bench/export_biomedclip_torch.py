#!/usr/bin/env python3
"""The Python pipeline `medquant export biomedclip` replaces: open_clip loads
the checkpoint folder, torch.onnx.export (TorchScript exporter, opset 17)
writes the vision encoder (pixel_values [N,3,224,224] -> L2-normalised
image embeddings) and the text encoder (input_ids + attention_mask [N,256]
-> L2-normalised text embeddings), the way deployment scripts do it.
Prints one JSON line with its phase timings. Run with tools/.venv.

Usage: tools/.venv/bin/python bench/export_biomedclip_torch.py CKPT_DIR OUT_DIR [--batch N]
"""
import argparse
import contextlib
import json
import os
import time
import warnings
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    import open_clip
    import torch
    import torch.nn.functional as F
    t_import = time.perf_counter()
    ckpt = Path(args.ckpt).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(ckpt):  # open_clip resolves hf_model_name against the cwd
        model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{ckpt}")
    model.eval()
    t_load = time.perf_counter()

    class Vision(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m.encode_image(pixel_values, normalize=True)

    class Text(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.text = m.text

        def forward(self, input_ids, attention_mask):
            t = self.text
            hidden = t.transformer(input_ids=input_ids, attention_mask=attention_mask)
            return F.normalize(t.proj(t.pooler(hidden, attention_mask)), dim=-1)

    # The tokenizer's length (text_cfg.context_length); the HF tower itself reports 512 positions.
    cfg = json.loads((ckpt / "open_clip_config.json").read_text())
    n, ctx = args.batch, cfg["model_cfg"]["text_cfg"]["context_length"]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Vision(model), (torch.randn(n, 3, 224, 224),), str(out / "biomedclip_vision.onnx"),
                          input_names=["pixel_values"], output_names=["image_embeds"], opset_version=17,
                          dynamo=False)
        t_vision = time.perf_counter()
        ids = torch.randint(5, 30522, (n, ctx))
        mask = torch.ones(n, ctx, dtype=torch.long)
        torch.onnx.export(Text(model), (ids, mask), str(out / "biomedclip_text.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                          opset_version=17, dynamo=False)
    t_text = time.perf_counter()
    print(json.dumps({"import_s": t_import - t0, "load_s": t_load - t_import, "export_vision_s": t_vision - t_load,
                      "export_text_s": t_text - t_vision, "torch": torch.__version__,
                      "open_clip": open_clip.__version__}))


if __name__ == "__main__":
    main()
