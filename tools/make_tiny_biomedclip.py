#!/usr/bin/env python3
"""Builds tests/fixtures/tiny-biomedclip: a tiny BiomedCLIP made by open_clip.

Same architecture as microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224
(timm ViT-B/16 trunk + linear head; HF BERT text tower with CLS pooling and an
MLP projection; context length 256), only narrow and shallow, random weights.
Saved the way the hub ships BiomedCLIP: open_clip_config.json +
open_clip_pytorch_model.bin (torch.save zip of the state dict) + the BERT
tokenizer files. Reference outputs for fixed inputs go under reference/.

Run:  tools/.venv/bin/python tools/make_tiny_biomedclip.py
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402  (sets HF_HUB_OFFLINE before the imports below)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

SEED = 20240611
OUT = fc.FIXTURES / "tiny-biomedclip"

# ---- dimensions (all recoverable from open_clip_config.json + text config) --
IMAGE_SIZE = 224
PATCH = 16
VIT_WIDTH = 64          # real: 768
VIT_DEPTH = 2           # real: 12
VIT_HEADS = 2           # real: 12  (head width 32; real 64)
VIT_MLP_RATIO = 4.0     # real: 4.0
EMBED_DIM = 48          # real: 512
BERT_HIDDEN = 64        # real: 768
BERT_LAYERS = 2         # real: 12
BERT_HEADS = 2          # real: 12
BERT_FFN = 256          # real: 3072
BERT_VOCAB = 2048       # real: 30522 (PubMedBERT abstract vocab)
CONTEXT_LENGTH = 256    # real: 256
MAX_POS = 512           # real: 512
LOGIT_SCALE = math.log(1 / 0.07) + 1.0  # not the init value, not the clamp (log 100)
VISION_STD = 0.1   # N(0, std) for every matrix of the image tower
TEXT_STD = 0.3     # ... and of the text tower (CLS pooling needs strong attention)
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]

TEXT_DIR = "tiny-biomedbert"   # stands in for microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract
TIMM_DIR = "tiny-vit"          # timm local-dir config: vit_base_patch16_224 + model_args

LABELS = [
    "this is a photo of chest x-ray",
    "this is a photo of brain MRI",
    "this is a photo of pneumonia",
    "this is a photo of pneumothorax",
    "this is a photo of cardiomegaly",
    "this is a photo of pleural effusion",
    "this is a photo of a normal chest radiograph",
    "this is a photo of adenocarcinoma histopathology",
    "This is a photo of COVID-19 pneumonia.",
    "this is a photo of Sjögren's syndrome",
    "this is a photo of squamous cell carcinoma histopathology, H&E stain",
    "an image of β-thalassemia",
]

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # PubMedBERT ids 0..4


# Label words kept out of the whole-word part of the vocab, so that they are
# split into word-start + ##continuation pieces as rarer words are in PubMedBERT.
HELD_OUT_WORDS = {"pneumothorax", "cardiomegaly", "adenocarcinoma", "histopathology",
                  "radiograph", "syndrome", "sjogren", "stain", "thalassemia"}


def build_vocab(path: Path) -> list[str]:
    """Deterministic WordPiece vocab with PubMedBERT's special-token layout
    ([PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4), then every printable ASCII
    character and its ##form, then whole words of the medical corpus by
    frequency, then frequent word-start and ##continuation pieces."""
    from collections import Counter
    from transformers.models.bert.tokenization_bert import BasicTokenizer
    basic = BasicTokenizer(do_lower_case=True)
    words = Counter()
    for sent in fc.medical_corpus(8000, seed=SEED):
        words.update(basic.tokenize(sent))
    chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    vocab = list(SPECIALS) + chars + ["##" + c for c in chars if c.isalnum()]
    seen = set(vocab)

    def add(tok):
        if tok not in seen and len(vocab) < BERT_VOCAB:
            seen.add(tok)
            vocab.append(tok)

    by_freq = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))
    for w, n in by_freq:
        if n >= 2 and w not in HELD_OUT_WORDS and len(vocab) < BERT_VOCAB - 600:
            add(w)
    pieces = Counter()
    for w, n in words.items():
        if not w.isalpha() or len(w) < 4:
            continue
        for k in range(2, min(6, len(w) - 1) + 1):
            pieces["S" + w[:k]] += n          # word start
            pieces["C" + w[-k:]] += n         # ##continuation (suffix)
            if len(w) > 2 * k:
                pieces["C" + w[k:2 * k]] += n  # ##continuation (middle)
    for p, n in sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0])):
        add(p[1:] if p[0] == "S" else "##" + p[1:])
    for w, n in by_freq:  # fill up with the remaining words if pieces ran out
        if w not in HELD_OUT_WORDS:
            add(w)
    assert len(vocab) == BERT_VOCAB, len(vocab)
    path.write_text("".join(w + "\n" for w in vocab), encoding="utf-8")
    return vocab


def write_tokenizer_files(d: Path) -> None:
    from transformers import BertTokenizer, BertTokenizerFast
    slow = BertTokenizer(str(d / "vocab.txt"), do_lower_case=True, model_max_length=MAX_POS)
    slow.save_pretrained(str(d))  # tokenizer_config.json, special_tokens_map.json, vocab.txt
    fast = BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True,
                             model_max_length=MAX_POS)
    fast.backend_tokenizer.save(str(d / "tokenizer.json"))
    for f in ("added_tokens.json",):
        with contextlib.suppress(FileNotFoundError):
            (d / f).unlink()


def bert_config():
    from transformers import BertConfig
    return BertConfig(vocab_size=BERT_VOCAB, hidden_size=BERT_HIDDEN,
                      num_hidden_layers=BERT_LAYERS, num_attention_heads=BERT_HEADS,
                      intermediate_size=BERT_FFN, hidden_act="gelu",
                      max_position_embeddings=MAX_POS, type_vocab_size=2,
                      layer_norm_eps=1e-12, pad_token_id=0, initializer_range=0.02,
                      architectures=["BertForMaskedLM"])


def open_clip_config() -> dict:
    return {
        "model_cfg": {
            "embed_dim": EMBED_DIM,
            "vision_cfg": {
                # open_clip ignores width/layers/... when timm_model_name is set;
                # they are CLIPVisionCfg fields and describe the trunk for readers
                # (their defaults 768/12/64/4.0/16 are exactly real BiomedCLIP's).
                "timm_model_name": f"local-dir:{TIMM_DIR}",
                "timm_model_pretrained": False,
                "timm_pool": "",
                "timm_proj": "linear",
                "image_size": IMAGE_SIZE,
                "patch_size": PATCH,
                "width": VIT_WIDTH,
                "layers": VIT_DEPTH,
                "head_width": VIT_WIDTH // VIT_HEADS,
                "mlp_ratio": VIT_MLP_RATIO,
            },
            "text_cfg": {
                "hf_model_name": TEXT_DIR,
                "hf_tokenizer_name": TEXT_DIR,
                "hf_proj_type": "mlp",
                "hf_pooler_type": "cls_last_hidden_state_pooler",
                "context_length": CONTEXT_LENGTH,
            },
        },
        "preprocess_cfg": {"mean": MEAN, "std": STD},
    }


def timm_config() -> dict:
    return {
        "architecture": "vit_base_patch16_224",
        "num_classes": 0,
        "num_features": VIT_WIDTH,
        "global_pool": "token",
        "model_args": {"embed_dim": VIT_WIDTH, "depth": VIT_DEPTH, "num_heads": VIT_HEADS,
                       "mlp_ratio": VIT_MLP_RATIO, "patch_size": PATCH, "img_size": IMAGE_SIZE},
        "pretrained_cfg": {
            "tag": "medquant_tiny", "custom_load": False,
            "input_size": [3, IMAGE_SIZE, IMAGE_SIZE], "fixed_input_size": True,
            "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
            "mean": MEAN, "std": STD, "num_classes": 0, "pool_size": None,
            "first_conv": "patch_embed.proj", "classifier": "head",
        },
    }


# ---- sample images -----------------------------------------------------------

def make_images(d: Path) -> list[dict]:
    d.mkdir(parents=True, exist_ok=True)
    out = []
    # 1. RGB PNG, landscape 320x240 (downscaled by the transform): gradients + shapes.
    w, h = 320, 240
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack([x / (w - 1) * 255, y / (h - 1) * 255,
                    (np.sin(x / 17.0) * np.cos(y / 23.0) * 0.5 + 0.5) * 255], -1)
    im = Image.fromarray(rgb.round().astype(np.uint8))
    dr = ImageDraw.Draw(im)
    dr.ellipse([40, 30, 150, 140], fill=(230, 40, 60))
    dr.rectangle([180, 120, 300, 220], fill=(20, 200, 90), outline=(255, 255, 255), width=3)
    dr.line([0, 239, 319, 0], fill=(250, 250, 0), width=5)
    im.save(d / "rgb_320x240.png", optimize=False)
    out.append({"file": "images/rgb_320x240.png", "mode": "RGB", "size_wh": [w, h]})

    # 2. Grayscale PNG, portrait 200x300 (upscaled by the transform): x-ray-like.
    w, h = 200, 300
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    g = 25 + 20 * (y / h)
    for cx in (60, 140):  # lungs: bright rim, darker fields
        r = ((x - cx) / 45) ** 2 + ((y - 140) / 95) ** 2
        g = np.where(r < 1, 70 + 60 * r, g)
    g = np.where(np.abs(x - 100) < 9, 200 - 0.2 * y, g)  # spine
    for k in range(6):  # ribs
        yy = 70 + 30 * k
        g = np.where((np.abs(y - yy - 0.15 * np.abs(x - 100)) < 4) & (np.abs(x - 100) < 90), 170, g)
    g = np.where(((x - 118) / 30) ** 2 + ((y - 200) / 28) ** 2 < 1, 215, g)  # heart
    im = Image.fromarray(np.clip(g, 0, 255).round().astype(np.uint8))
    im = im.filter(ImageFilter.GaussianBlur(1.2))
    im.save(d / "gray_200x300.png", optimize=False)
    out.append({"file": "images/gray_200x300.png", "mode": "L", "size_wh": [w, h]})

    # 3. JPEG (4:2:0, quality 90), 260x180: stripes + checker + disc.
    w, h = 260, 180
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c = np.stack([((x // 13) % 2) * 180 + 40, ((y // 11 + x // 11) % 2) * 150 + 60,
                  128 + 100 * np.sin((x + y) / 9.0)], -1)
    disc = ((x - 180) ** 2 + (y - 80) ** 2) < 50 ** 2
    c[disc] = [250, 220, 180]
    im = Image.fromarray(np.clip(c, 0, 255).round().astype(np.uint8))
    im.save(d / "rgb_260x180.jpg", quality=90, subsampling=2, optimize=False)
    out.append({"file": "images/rgb_260x180.jpg", "mode": "RGB", "size_wh": [w, h]})
    return out


# ---- main ---------------------------------------------------------------------

def build(out: Path) -> None:
    import open_clip
    fc.fresh_dir(out)
    (out / TEXT_DIR).mkdir()
    (out / TIMM_DIR).mkdir()

    words = build_vocab(out / "vocab.txt")
    assert len(words) == BERT_VOCAB, len(words)
    write_tokenizer_files(out)
    for f in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (out / TEXT_DIR / f).write_bytes((out / f).read_bytes())
    cfg = bert_config()
    cfg.save_pretrained(str(out / TEXT_DIR))  # tiny-biomedbert/config.json
    (out / "text_config.json").write_bytes((out / TEXT_DIR / "config.json").read_bytes())
    fc.write_json(out / TIMM_DIR / "config.json", timm_config())
    fc.write_json(out / "open_clip_config.json", open_clip_config())

    # Build through open_clip's own factory from the config just written.
    torch.manual_seed(SEED)
    with contextlib.chdir(out):
        model = open_clip.create_model(f"local-dir:{out}", load_weights=False,
                                         pretrained_text=False, pretrained_image=False)
    model.eval()
    gen = torch.Generator().manual_seed(SEED + 1)
    # Matrices N(0, 0.05): with upstream's 0.02 init the random towers map every
    # input to nearly the same direction, which makes weak tests.
    fc.rescale_matrices_(model.visual, gen, std=VISION_STD)
    fc.rescale_matrices_(model.text, gen, std=TEXT_STD)
    fc.randomize_constant_params_(model, gen, scale=0.1)
    with torch.no_grad():
        model.logit_scale.fill_(LOGIT_SCALE)

    sd = model.state_dict()
    # Real BiomedCLIP checkpoints were written with transformers < 4.31 and so
    # carry this (non-parameter) buffer; open_clip's loader drops it again.
    sd["text.transformer.embeddings.position_ids"] = torch.arange(MAX_POS, dtype=torch.long)[None]
    torch.save(sd, out / "open_clip_pytorch_model.bin")  # zip format (torch default)


def reference(out: Path) -> None:
    import open_clip
    from transformers import BertTokenizer

    ref = out / "reference"
    ref.mkdir(exist_ok=True)
    index: dict = {}
    images = make_images(out / "images")

    with contextlib.chdir(out):  # hf_model_name / timm local-dir resolve against the cwd
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    model.eval()

    # Images: open_clip's own eval transform (Resize(224, bicubic) on the short
    # side, CenterCrop(224), RGB, ToTensor, Normalize(mean, std)).
    pix = []
    for im in images:
        with Image.open(out / im["file"]) as f:
            f.load()
            if im["file"].endswith(".jpg"):
                dec = np.asarray(f.convert("RGB"))
                fc.save_npy(ref / "jpeg_decoded_rgb.npy", dec, index,
                            "PIL (libjpeg-turbo) decode of images/rgb_260x180.jpg, HWC uint8; "
                            "other JPEG decoders may differ by a few levels")
            pix.append(preprocess(f))
    pixel_values = torch.stack(pix)
    fc.save_npy(ref / "pixel_values.npy", pixel_values.numpy(), index,
                "open_clip eval transform of the 3 images (order of `images`), NCHW float32",
                images=[i["file"] for i in images])

    # Text: transformers BertTokenizer (slow, reference WordPiece) padded to 256;
    # must equal open_clip's HFTokenizer output.
    bt = BertTokenizer.from_pretrained(str(out))
    enc = bt(LABELS, padding="max_length", max_length=CONTEXT_LENGTH, truncation=True,
             return_tensors="np")
    ids = enc["input_ids"].astype(np.int64)
    oc_ids = tokenizer(LABELS).numpy()
    assert (ids == oc_ids).all(), "BertTokenizer and open_clip HFTokenizer disagree"
    mask = (ids != 0).astype(np.int64)
    assert (mask == enc["attention_mask"]).all()
    pieces = [bt.convert_ids_to_tokens([t for t in row if t != 0]) for row in ids]
    assert any(any(p.startswith("##") for p in ps) for ps in pieces), "no ##pieces in labels"
    fc.save_npy(ref / "input_ids.npy", ids, index,
                "BertTokenizer(do_lower_case) ids of `labels`, [CLS] ... [SEP] then [PAD]=0 to 256")
    fc.save_npy(ref / "attention_mask.npy", mask, index,
                "1 for real tokens; open_clip derives it as input_ids != pad_token_id (0)")

    with torch.no_grad():
        img = model.encode_image(pixel_values)
        img_n = model.encode_image(pixel_values, normalize=True)
        txt = model.encode_text(torch.from_numpy(ids))
        txt_n = model.encode_text(torch.from_numpy(ids), normalize=True)
        scale = model.logit_scale.exp()
        logits = scale * img_n @ txt_n.T
    fc.save_npy(ref / "image_features.npy", img.numpy(), index, "model.encode_image(pixel_values)")
    fc.save_npy(ref / "image_features_normalized.npy", img_n.numpy(), index,
                "model.encode_image(pixel_values, normalize=True) (L2 over the last dim)")
    fc.save_npy(ref / "text_features.npy", txt.numpy(), index, "model.encode_text(input_ids)")
    fc.save_npy(ref / "text_features_normalized.npy", txt_n.numpy(), index,
                "model.encode_text(input_ids, normalize=True)")
    fc.save_npy(ref / "logits_per_image.npy", logits.numpy(), index,
                "logit_scale.exp() * image_features_normalized @ text_features_normalized.T")

    cos_img = (img_n @ img_n.T).numpy()
    cos_txt = (txt_n @ txt_n.T).numpy()
    print("image cos sims:\n", np.round(cos_img, 3))
    print("text cos sims (min/max off-diag):",
          float(cos_txt[~np.eye(len(LABELS), dtype=bool)].min()),
          float(cos_txt[~np.eye(len(LABELS), dtype=bool)].max()))

    fc.write_json(ref / "reference.json", {
        "model": "tiny-biomedclip",
        "generator": "tools/make_tiny_biomedclip.py",
        "seed": SEED,
        "packages": fc.package_versions(),
        "compute_dtype": "float32 (weights are float32)",
        "logit_scale": float(model.logit_scale.item()),
        "logit_scale_exp": float(scale.item()),
        "images": images,
        "preprocess": {"resize_shortest_edge": IMAGE_SIZE, "interpolation": "bicubic (PIL)",
                       "center_crop": IMAGE_SIZE, "convert": "RGB after crop",
                       "mean": MEAN, "std": STD},
        "labels": LABELS,
        "label_tokens": pieces,
        "context_length": CONTEXT_LENGTH,
        "tensors": index,
    })


def verify(out: Path) -> None:
    """Reload with stock open_clip from the saved files; compare to references."""
    import open_clip
    ref = out / "reference"
    with contextlib.chdir(out):
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    model.eval()
    pv = torch.from_numpy(np.load(ref / "pixel_values.npy"))
    ids = torch.from_numpy(np.load(ref / "input_ids.npy"))
    assert (tokenizer(LABELS) == ids).all()
    with torch.no_grad():
        img = model.encode_image(pv)
        txt = model.encode_text(ids)
    np.testing.assert_allclose(img.numpy(), np.load(ref / "image_features.npy"), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(txt.numpy(), np.load(ref / "text_features.npy"), rtol=1e-5, atol=1e-5)
    # The checkpoint is a plain zip torch.save of a dict of tensors.
    sd = torch.load(out / "open_clip_pytorch_model.bin", map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    print(f"verify: OK ({len(sd)} tensors, "
          f"{sum(v.numel() for v in sd.values() if v.is_floating_point())} float params)")


if __name__ == "__main__":
    with contextlib.redirect_stderr(io.StringIO()) if "-q" in sys.argv else contextlib.nullcontext():
        build(OUT)
        reference(OUT)
        verify(OUT)
