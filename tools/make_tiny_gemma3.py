#!/usr/bin/env python3
"""Builds tests/fixtures/tiny-gemma3 (Gemma3ForConditionalGeneration, the
MedGemma 4B architecture: Gemma 3 text + SigLIP vision + projector) and
tests/fixtures/tiny-gemma3-text (Gemma3ForCausalLM, text only), made by
transformers itself from small configs, random bf16 weights, saved with
save_pretrained (safetensors) plus a tiny SentencePiece tokenizer and
reference outputs.

Run:  tools/.venv/bin/python tools/make_tiny_gemma3.py
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402  (sets HF_HUB_OFFLINE before the imports below)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter  # noqa: E402

SEED = 20240612
OUT_MM = fc.FIXTURES / "tiny-gemma3"
OUT_TEXT = fc.FIXTURES / "tiny-gemma3-text"

# ---- dimensions (MedGemma 4B in comments) ------------------------------------
VOCAB = 2048            # 262208 (tokenizer 262144 + padding)
HIDDEN = 256            # 2560
FFN = 256               # 10240
LAYERS = 6              # 34   (pattern 6: layers 0-4 sliding, 5 global)
HEADS = 2               # 8
KV_HEADS = 1            # 4
HEAD_DIM = 256          # 256
SLIDING_WINDOW = 32     # 1024
SLIDING_PATTERN = 6     # 6
ROPE_THETA = 1_000_000.0
ROPE_LOCAL = 10_000.0
ROPE_SCALING = {"rope_type": "linear", "factor": 8.0}
QUERY_PRE_ATTN_SCALAR = 256
MAX_POS = 131072
V_HIDDEN = 64           # 1152
V_FFN = 240             # 4304 (like the real one, not a multiple of 32)
V_LAYERS = 2            # 27
V_HEADS = 2             # 16
IMAGE_SIZE = 896
PATCH = 14
MM_TOKENS = 256
TEXT_STD = 0.06         # N(0, std) for every matrix (upstream init: 0.02)
VISION_STD = 0.06

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>"]  # ids 0..3 as in Gemma
USER_DEFINED = ["<mask>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                "<end_of_image>", "<image_soft_token>"]  # ids 4..9

# Gemma 3's chat template (as shipped in google/gemma-3-*-it and MedGemma).
CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)

CHAT_MESSAGES = [
    {"role": "system", "content": [{"type": "text", "text": "You are an expert radiologist."}]},
    {"role": "user", "content": [{"type": "text", "text": "Describe the findings in this chest X-ray."}]},
]
PLAIN_PROMPT = ("A 67-year-old woman presents with dyspnea. Impression: moderate pleural effusion, "
                "45 mm; no pneumothorax (Sjögren's syndrome, SpO2 91%).")


# ---- tokenizer ---------------------------------------------------------------

def train_tokenizer(d: Path) -> Path:
    """SentencePiece BPE with byte fallback and Gemma's id layout, trained
    (single thread, deterministic) on the shared medical corpus."""
    import sentencepiece as spm
    corpus = fc.medical_corpus(8000, seed=SEED)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=buf,
        model_type="bpe", vocab_size=VOCAB, byte_fallback=True, split_digits=True,
        character_coverage=1.0, normalization_rule_name="identity",
        add_dummy_prefix=False, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, split_by_whitespace=True,
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=USER_DEFINED, num_threads=1, shuffle_input_sentence=False,
        minloglevel=2,
    )
    path = d / "tokenizer.model"
    path.write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(path))
    assert sp.get_piece_size() == VOCAB, sp.get_piece_size()
    for i, p in enumerate(SPECIAL + USER_DEFINED):
        assert sp.id_to_piece(i) == p, (i, sp.id_to_piece(i))
    return path


def make_tokenizer(model_path: Path):
    from transformers import GemmaTokenizerFast
    tok = GemmaTokenizerFast(
        vocab_file=str(model_path), add_bos_token=True, add_eos_token=False,
        pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>",
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                              "image_token": "<image_soft_token>"},
        padding_side="left", model_max_length=MAX_POS, clean_up_tokenization_spaces=False,
        spaces_between_special_tokens=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def save_tokenizer(tok, d: Path) -> None:
    tok.save_pretrained(str(d), save_jinja_files=False)  # chat_template inline in tokenizer_config.json
    assert (d / "tokenizer.json").exists() and (d / "tokenizer.model").exists()


# ---- configs -------------------------------------------------------------------

def text_config_kwargs() -> dict:
    return dict(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN,
        num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM, hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=MAX_POS, rms_norm_eps=1e-6,
        pad_token_id=0, eos_token_id=1, bos_token_id=2, tie_word_embeddings=True,
        rope_theta=ROPE_THETA, rope_local_base_freq=ROPE_LOCAL, rope_scaling=dict(ROPE_SCALING),
        attention_bias=False, query_pre_attn_scalar=QUERY_PRE_ATTN_SCALAR,
        sliding_window=SLIDING_WINDOW, sliding_window_pattern=SLIDING_PATTERN,
        final_logit_softcapping=None, attn_logit_softcapping=None,
        initializer_range=0.02,
    )


def gemma3_config(tok):
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig
    text = Gemma3TextConfig(**text_config_kwargs())
    vision = SiglipVisionConfig(
        hidden_size=V_HIDDEN, intermediate_size=V_FFN, num_hidden_layers=V_LAYERS,
        num_attention_heads=V_HEADS, num_channels=3, image_size=IMAGE_SIZE, patch_size=PATCH,
        hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, vision_use_head=False,
    )
    cfg = Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=MM_TOKENS,
        boi_token_index=tok.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tok.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tok.convert_tokens_to_ids("<image_soft_token>"),
        initializer_range=0.02,
    )
    cfg.architectures = ["Gemma3ForConditionalGeneration"]
    return cfg


def generation_config(tok):
    from transformers import GenerationConfig
    return GenerationConfig(bos_token_id=2, eos_token_id=[1, tok.convert_tokens_to_ids("<end_of_turn>")],
                            pad_token_id=0, do_sample=True, top_k=64, top_p=0.95)


# ---- image --------------------------------------------------------------------

def make_image(path: Path) -> None:
    """896x896 RGB PNG (the processor's own size, so its resize is the identity)."""
    n = IMAGE_SIZE
    y, x = np.mgrid[0:n, 0:n].astype(np.float32)
    base = 30 + 60 * (y / n)
    rgb = np.stack([base + 40 * np.sin(x / 37.0), base + 30 * (x / n), base + 50 * np.cos(y / 53.0)], -1)
    for cx, cy, rx, ry, col in [(300, 430, 170, 300, (150, 160, 170)), (600, 430, 170, 300, (140, 150, 175))]:
        r = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
        rgb = np.where((r < 1)[..., None], np.array(col, np.float32) * (0.6 + 0.4 * r[..., None]), rgb)
    im = Image.fromarray(np.clip(rgb, 0, 255).round().astype(np.uint8))
    dr = ImageDraw.Draw(im)
    dr.rectangle([430, 100, 470, 820], fill=(235, 235, 225))            # spine
    dr.ellipse([480, 520, 700, 720], fill=(220, 120, 110))              # heart, reddish
    dr.polygon([(60, 60), (200, 80), (120, 210)], fill=(40, 200, 90))   # green marker
    dr.text((40, 840), "L  tiny-gemma3 fixture", fill=(255, 255, 0))
    im = im.filter(ImageFilter.GaussianBlur(0.8))
    im.save(path, optimize=False)


# ---- models ----------------------------------------------------------------------

def randomize(model, seed: int, skip=()):
    gen = torch.Generator().manual_seed(seed)
    fc.rescale_matrices_(model, gen, std=TEXT_STD, skip=("vision_tower",) + tuple(skip))
    vt = getattr(getattr(model, "model", model), "vision_tower", None)
    if vt is not None:
        fc.rescale_matrices_(vt, gen, std=VISION_STD)
    # Gemma RMSNorm weights are stored as w in x*(1+w) and start at 0;
    # LayerNorm (SigLIP) at 1 / 0; all get + 0.1*N(0,1).
    fc.randomize_constant_params_(model, gen, scale=0.1)


def build_multimodal(out: Path, tok, cfg) -> None:
    from transformers import Gemma3ForConditionalGeneration
    torch.manual_seed(SEED)
    model = Gemma3ForConditionalGeneration(cfg).eval()
    randomize(model, SEED + 1)
    model.to(torch.bfloat16)
    model.generation_config = generation_config(tok)
    model.save_pretrained(str(out), safe_serialization=True, max_shard_size="1GB")


def build_text(out: Path, tok) -> None:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig
    cfg = Gemma3TextConfig(**text_config_kwargs())
    cfg.architectures = ["Gemma3ForCausalLM"]
    torch.manual_seed(SEED + 100)
    model = Gemma3ForCausalLM(cfg).eval()
    randomize(model, SEED + 101)
    model.to(torch.bfloat16)
    model.generation_config = generation_config(tok)
    model.save_pretrained(str(out), safe_serialization=True, max_shard_size="1GB")


def prompts(tok) -> list[dict]:
    chat = tok.apply_chat_template(CHAT_MESSAGES, tokenize=False, add_generation_prompt=True)
    ids_chat = tok(chat, add_special_tokens=False)["input_ids"]   # the template has <bos>
    ids_plain = tok(PLAIN_PROMPT)["input_ids"]                      # add_bos_token=True
    assert ids_chat[0] == 2 and ids_plain[0] == 2 and ids_chat.count(2) == 1
    assert len(ids_plain) > SLIDING_WINDOW, "plain prompt must exceed the sliding window"
    return [{"name": "chat", "text": chat, "ids": ids_chat, "add_special_tokens": False},
            {"name": "plain", "text": PLAIN_PROMPT, "ids": ids_plain, "add_special_tokens": True}]


def logits_for(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=False)
    return out.logits[0].float().numpy()


def write_reference(out: Path, model_kind: str, model, tok, prs, extra: dict, index: dict):
    ref = out / "reference"
    ref.mkdir(exist_ok=True)
    for p in prs:
        fc.save_npy(ref / f"input_ids_{p['name']}.npy", np.array(p["ids"], np.int64), index,
                    f"token ids of prompt '{p['name']}' (batch 1, no padding)")
        lg = logits_for(model, p["ids"])
        fc.save_npy(ref / f"logits_{p['name']}.npy", lg.astype(np.float32), index,
                    f"logits [seq, vocab] for prompt '{p['name']}', float32 compute from the bf16 weights",
                    argmax=[int(i) for i in lg.argmax(-1)])
    info = {
        "model": out.name,
        "class": model_kind,
        "generator": "tools/make_tiny_gemma3.py",
        "packages": fc.package_versions(),
        "compute_dtype": "float32: the bf16 safetensors are loaded with dtype=torch.float32 "
                         "(exact upcast) and run in float32, attn_implementation='eager'",
        "prompts": [{k: v for k, v in p.items()} for p in prs],
        "tensors": index,
    }
    info.update(extra)
    fc.write_json(ref / "reference.json", info)


def main() -> None:
    from transformers import (Gemma3ForCausalLM, Gemma3ForConditionalGeneration,
                              Gemma3ImageProcessor, Gemma3Processor, GemmaTokenizer)
    for d in (OUT_MM, OUT_TEXT):
        fc.fresh_dir(d)

    model_path = train_tokenizer(OUT_MM)
    tok = make_tokenizer(model_path)
    save_tokenizer(tok, OUT_MM)
    save_tokenizer(tok, OUT_TEXT)

    # Slow (sentencepiece) and fast (tokenizer.json) tokenizers must agree.
    slow = GemmaTokenizer(vocab_file=str(OUT_MM / "tokenizer.model"))
    prs = prompts(tok)
    for p in prs:
        assert slow(p["text"], add_special_tokens=p["add_special_tokens"])["input_ids"] == p["ids"], p["name"]

    # Processor files as Gemma3Processor saves them (image size 896, mean/std 0.5, bilinear).
    improc = Gemma3ImageProcessor(
        do_resize=True, size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, resample=2,
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], do_convert_rgb=None,
        do_pan_and_scan=None, pan_and_scan_min_crop_size=None, pan_and_scan_max_num_crops=None,
        pan_and_scan_min_ratio_to_activate=None,
    )
    proc = Gemma3Processor(image_processor=improc, tokenizer=tok, chat_template=CHAT_TEMPLATE,
                           image_seq_length=MM_TOKENS)
    with contextlib.redirect_stdout(io.StringIO()):
        proc.save_pretrained(str(OUT_MM), save_jinja_files=False)

    cfg = gemma3_config(tok)
    build_multimodal(OUT_MM, tok, cfg)
    build_text(OUT_TEXT, tok)

    # ---- references, from the saved files -----------------------------------------
    mm = Gemma3ForConditionalGeneration.from_pretrained(
        str(OUT_MM), dtype=torch.float32, attn_implementation="eager").eval()
    txt = Gemma3ForCausalLM.from_pretrained(
        str(OUT_TEXT), dtype=torch.float32, attn_implementation="eager").eval()

    img_dir = OUT_MM / "images"
    img_dir.mkdir()
    make_image(img_dir / "rgb_896x896.png")
    proc2 = Gemma3Processor.from_pretrained(str(OUT_MM))
    with Image.open(img_dir / "rgb_896x896.png") as im:
        im.load()
        u8 = np.asarray(im.convert("RGB"))
        pv = proc2.image_processor(im, return_tensors="pt")["pixel_values"]
    assert pv.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE) and pv.dtype == torch.float32
    # The processor's output is an exact function of the PNG's bytes:
    formula = ((u8.astype(np.float64) * (1 / 255)).astype(np.float32) - np.float32(0.5)) / np.float32(0.5)
    formula = formula.transpose(2, 0, 1)[None]
    exact = bool((formula == pv.numpy()).all())
    max_diff = float(np.abs(formula - pv.numpy()).max())
    with torch.no_grad():
        feats = mm.get_image_features(pv)
    index: dict = {}
    ref = OUT_MM / "reference"
    ref.mkdir()
    fc.save_npy(ref / "image_features.npy", feats[0].float().numpy(), index,
                "model.get_image_features(pixel_values)[0]: [mm_tokens_per_image, text hidden]")
    pv_bytes = np.ascontiguousarray(pv.numpy()).tobytes()

    # A multimodal prompt built by the processor: ids only (its logits depend on
    # how a runtime masks image tokens, so they are not part of the reference).
    mm_text = proc2.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"},
                                      {"type": "text", "text": "What does this image show?"}]}],
        add_generation_prompt=True, tokenize=False)
    mm_ids = proc2(text=mm_text, images=Image.open(img_dir / "rgb_896x896.png"),
                   return_tensors="np")["input_ids"][0].astype(np.int64)
    assert int((mm_ids == cfg.image_token_index).sum()) == MM_TOKENS
    fc.save_npy(ref / "input_ids_image_prompt.npy", mm_ids, index,
                "Gemma3Processor ids for the chat prompt [image, 'What does this image show?']: "
                "<start_of_image> expanded to \\n\\n<start_of_image> + 256 x <image_soft_token> + <end_of_image>\\n\\n")

    write_reference(OUT_MM, "Gemma3ForConditionalGeneration", mm, tok, prs, {
        "image": {
            "file": "images/rgb_896x896.png", "mode": "RGB", "size_wh": [IMAGE_SIZE, IMAGE_SIZE],
            "pixel_values": {
                "note": "not stored (float32 would be 9.6 MB); the processor output equals "
                        "float32(u8 * (1/255) computed in float64) then (v - 0.5) / 0.5 in float32, "
                        "NCHW, because the image is already 896x896 (PIL resize is then a copy)",
                "shape": [1, 3, IMAGE_SIZE, IMAGE_SIZE], "dtype": "float32",
                "formula_is_bit_exact": exact, "formula_max_abs_diff": max_diff,
                "sha256_of_float32_bytes": hashlib.sha256(pv_bytes).hexdigest(),
                "sum": float(pv.double().sum()), "first_values_c0_row0": pv[0, 0, 0, :8].tolist(),
            },
        },
        "image_prompt_text": mm_text,
    }, index)
    write_reference(OUT_TEXT, "Gemma3ForCausalLM", txt, tok, prs, {}, {})

    # Weight layout report.
    for d in (OUT_MM, OUT_TEXT):
        from safetensors import safe_open
        with safe_open(str(d / "model.safetensors"), "pt") as f:
            names = sorted(f.keys())
            dts = {str(f.get_slice(n).get_dtype()) for n in names}
        print(f"{d.name}: {len(names)} tensors, dtypes {dts}; first: {names[:3]}")
    verify()


def verify() -> None:
    """Reload the saved models with from_pretrained and check the references."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3ForConditionalGeneration
    for d, cls in ((OUT_MM, Gemma3ForConditionalGeneration), (OUT_TEXT, AutoModelForCausalLM)):
        model = cls.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager").eval()
        tok = AutoTokenizer.from_pretrained(str(d))
        r = json.loads((d / "reference" / "reference.json").read_text())
        for p in r["prompts"]:
            ids = tok(p["text"], add_special_tokens=p["add_special_tokens"])["input_ids"]
            assert ids == p["ids"], (d.name, p["name"])
            ref = np.load(d / "reference" / f"logits_{p['name']}.npy")
            np.testing.assert_allclose(logits_for(model, ids), ref, rtol=1e-5, atol=1e-5)
            # sdpa must agree too (no sliding-window mask surprises).
            model.set_attn_implementation("sdpa")
            np.testing.assert_allclose(logits_for(model, ids), ref, rtol=1e-4, atol=1e-4)
            model.set_attn_implementation("eager")
        sd = model.state_dict()
        print(f"verify {d.name}: OK ({sum(v.numel() for v in sd.values())} params incl. tied)")


if __name__ == "__main__":
    main()
