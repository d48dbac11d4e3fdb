#!/usr/bin/env python3
"""Builds tests/fixtures/tokenizer/: test strings and the ids Hugging Face's
BertTokenizer (slow, Python) and open_clip's HFTokenizer give for them, for
the C++ tokenizer (src/text/).

Two vocabularies are used: the tiny-biomedclip fixture's vocab.txt, and
vocab_rich.txt = that vocab plus characters, ##characters and words of many
scripts taken from the test strings, so that non-ASCII text maps to real ids
instead of collapsing into [UNK].

cases.jsonl, one JSON object per line (fields that would only repeat
others are left out, as said; the generator checks what it leaves out):
  t     the text
  a, b  BertTokenizer(vocab)(t)["input_ids"] for the fixture / rich vocab
        ([CLS] ... [SEP], no truncation)
  c     open_clip's cleaning of t (ftfy.fix_text + html.unescape x2 +
        whitespace), what its HFTokenizer feeds the HF tokenizer; left out
        when it equals t
  c_nofe  only when ftfy's mojibake repair (fix_encoding) changed the text:
        the cleaning with fix_encoding=False, which medquant implements
  oa, ob  open_clip HFTokenizer(dir, context_length=256)([t]) ids up to the
        last non-[PAD] (the rest is [PAD]=0 up to 256), fixture / rich vocab;
        left out when c is, and they equal a / b cut to 256 ([CLS], the
        first 254 pieces, [SEP])
  oa_slow, ob_slow  only when the fast (Rust) tokenizer that open_clip loads
        disagrees with the slow one on the cleaned text: the slow tokenizer's
        padded ids, which medquant follows
unicode.json: Python's str.lower() for every code point it changes, and the
code points str.isspace() accepts, to check utf8proc-based equivalents.

Run:  tools/.venv/bin/python tools/make_tokenizer_fixtures.py
"""
from __future__ import annotations

import html
import json
import random
import shutil
import sys
import tempfile
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402

import ftfy  # noqa: E402
from transformers import BertTokenizer, BertTokenizerFast  # noqa: E402
from transformers.models.bert.tokenization_bert import BasicTokenizer  # noqa: E402

OUT = fc.FIXTURES / "tokenizer"
BIOMEDCLIP = fc.FIXTURES / "tiny-biomedclip"
CONTEXT = 256
SEED = 424242

LABELS = [
    "this is a photo of chest x-ray", "this is a photo of brain MRI",
    "this is a photo of pneumonia", "this is a photo of pneumothorax",
    "this is a photo of cardiomegaly", "this is a photo of pleural effusion",
    "this is a photo of a normal chest radiograph",
    "this is a photo of adenocarcinoma histopathology",
    "This is a photo of COVID-19 pneumonia.", "this is a photo of Sjögren's syndrome",
    "this is a photo of squamous cell carcinoma histopathology, H&E stain",
    "an image of β-thalassemia",
]

MEDICAL = [
    "5-fluorouracil", "HbA1c 6.5%", "T2-weighted MRI", "β-blocker", "α1-antitrypsin deficiency",
    "IL-6 and TNF-α", "10 μg/mL", "37.5 °C", "SpO₂ 94%", "BP 120/80 mmHg", "≥ 3 cm", "± 0.5 mm",
    "Ki-67 index", "CD4+ T-cells", "HER2/neu", "BRCA1/2", "p53", "Na⁺/K⁺-ATPase", "CO₂",
    "anti-dsDNA", "C-reactive protein (CRP)", "non-small-cell lung cancer (NSCLC)",
    "Crohn's disease", "Alzheimer’s disease", "Ménière's disease", "Guillain–Barré syndrome",
    "Creutzfeldt–Jakob", "Hodgkin’s lymphoma", "Waldenström macroglobulinemia",
    "Ångström", "Löffler's syndrome", "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "methicillin-resistant Staphylococcus aureus (MRSA)", "SARS-CoV-2", "COVID‐19",
    "H&E", "H&amp;E stain", "PD-L1 ≥50%", "ER+/PR+/HER2−", "1.5T", "3T MRI", "18F-FDG PET/CT",
    "Tc-99m", "T1/T2", "ECG: QTc 480 ms", "eGFR < 30 mL/min/1.73 m²", "½ tablet", "×10⁹/L",
    "ca. 3–5 mm", "grade III/IV", "Gleason 4+3=7", "BI-RADS 4A", "TI-RADS", "LI-RADS LR-5",
]

WORDS = ["café", "naïve", "façade", "résumé", "Zürich", "São Paulo", "Dvořák", "Łódź", "Straße",
         "İstanbul", "ıIıI", "ΟΔΟΣ", "Σίσυφος", "ὈΔΥΣΣΕΎΣ", "Москва", "ЁЖИК", "Ελληνικά",
         "עברית", "العربية", "हिन्दी", "தமிழ்", "ไทย", "한국어", "日本語", "中文", "Ꭰ Ꮳ Ᏼ",
         "Ა Ბ", "𐐀𐐁", "ǅungla", "ǈ ǋ ǲ", "ẞ ß", "Å Å", "ﬁnancial ﬂow", "Ǆ", "K Ω Å",
         "Ⅻ ⅻ", "Ⓐ ⓐ", "ＡＢＣ ａｂｃ", "１２３", "ｶﾀｶﾅ", "Ｕﾀｰﾝ", "ß̃", "é", "é", "ñ", "ñ",
         "a\u0308\u0301", "\u0301start", "x\u20dd", "e\u0327\u0306"]

PUNCT = ["Hello, world!", "¿Qué?", "¡Hola!", "«quoted»", "„Anführung“", "‘single’", "“double”",
         "‹›", "— – ‐ ‑ ‒ ―", "…", "‰ ‱", "† ‡ • ‣ ⁂", "§ ¶", "©®™", "、。「」『』【】〈〉《》",
         "،؛؟", "।॥", "።፣፤", "՞՜՛", "׃״", "༄༅", "჻", "᙮", "⸘⸮", "﹏﹐﹑", "！＂＃％＆＇（）＊",
         "a/b\\c|d", "x_y-z", "$100 ^2 `code` ~tilde", "<tag> & \"quotes\" 'apos'", "1+1=2",
         "@user #tag", "{json: [1,2]}", "e.g., i.e.; etc.", "...", "!?!?", "--", "«»‹›",
         "x·y", "a•b", "O'Neil", "rock'n'roll", "don’t", "l’hôpital", "C++", "C#", ".NET",
         "ٱلْعَرَبِيَّة", "¶¶¶", "※", "〽", "゠", "・", "ー", "〜", "′″‴", "⁇⁈⁉"]

CJK = ["我爱北京天安门", "肺炎 pneumonia 肺炎", "心脏扩大", "胸部X光片显示肺炎", "日本語のテキスト",
       "カタカナ ひらがな 漢字", "한국어 텍스트", "中文English混合", "𠀀𠀁𪜀", "𫝀𫠠𬺰", "丽侮並",
       "你好，世界！", "（括号）", "第一章", "一二三四五", "x中y", "中", "〇", "㐀㐁", "⺀⼀",
       "ㄅㄆㄇ", "々", "〆"]

EMOJI = ["😀", "smile 😀 emoji", "👍🏽", "👨‍👩‍👧‍👦 family", "🇫🇷🇯🇵", "1️⃣", "❤️", "☺", "🫀 🫁 organs",
         "🩺💊💉", "🏳️‍🌈", "✌🏿", "🧬 DNA", "⚕️", "x😀y", "😀😀😀"]

CONTROLS = ["a\x00b", "a\x01b", "a\x07b", "tab\there", "new\nline", "cr\rreturn", "crlf\r\nx",
            "a\x0bb", "a\x0cb", "a\x1bb", "a\x1cb\x1db\x1eb\x1fb", "a\x7fb", "a\x80b", "a\x85b",
            "a\x93quoted\x94b", "a\x9fb", "a\xa0b", "a\xadb", "a\u200bb", "a\u200cb", "a\u200db",
            "a\u200eb", "a\u200fb", "a\u202ab\u202c", "a\u2060b", "\ufeffbom", "a\ufffdb",
            "a\ufffcb", "a\ufff9b\ufffbc", "a\u206ab", "a\u2028b", "a\u2029b", "a\u3000b",
            "a\u1680b", "a\u2000b\u200ab", "a\u202fb", "a\u205fb", "a\U000e0001b", "a\ue000b",
            "a\U000f0000b", "a\u0378b", "a\U0001d173b", "\x1b[31mred\x1b[0m", "\x1b[1;32mbold",
            "\x1b[", "a\x1b[b", "\x1b[١٢m arabic digits", "a\x00\x00\x00", "\x00", "\x07\x08"]

WHITESPACE = ["", " ", "  ", "\t", "\n", "\r\n", " \t\n ", "\u3000", "\xa0", "\u2028", "\u2029",
              "\u200b", "\ufeff", "\x0b\x0c", "\x1c\x1d", "   a   ", "\n\nx\n\n", "a  b", "\u2003"]

HTML = ["&amp;", "&lt;b&gt;", "&#x41;&#66;", "&eacute;", "&EACUTE;", "P&EACUTE;REZ", "&amp;amp;",
        "&notit;", "&notin;", "AT&T", "<b>bold</b> &amp;", "&#0;", "&#x110000;", "&#128;",
        "&#x80;", "&#xD800;", "&#65", "&amp", "&ampx", "&lt3", "&copy2024", "&#;", "&#x;",
        "&;", "& amp;", "&nbsp;x", "&NewLine;", "&Tab;x", "&SZLIG;", "&hellip;", "&rsquo;",
        "&ldquo;hi&rdquo;", "&#8217;", "&#x2019;s", "&bsol;", "&quot;", "&apos;", "&unknown;",
        "&aacute&eacute;", "&#x1F600;", "&#99999999999;", "&#0000065;", "&#X41;", "&AMP;",
        "a < b &amp; c", "first line &amp;\nsecond < line &amp;", "x &amp; y\n<z> &amp;",
        "&amp;lt;b&amp;gt;", "&amp;amp;amp;", "&Jscr;ohn", "&HilbertSpace;", "&ntilde; &NTILDE;",
        "&nTILDE;", "&#38;#38;", "&#x26;amp;"]

FTFY = ["ﬂuﬃeﬆ", "ĳssel Ĳ", "ŉ", "ǉ ǈ Ǉ", "ＬＯＵＤ　ＮＯＩＳＥＳ", "Ｕﾀｰﾝ", "ﾊﾝｶｸ", "‘quote’ “double”",
        "‚low‛ „low‟", "ʼapostrophe", "line1\r\nline2\rline3\u2028line4\u2029line5\x85end",
        "\x80\x81\x8d\x8f\x90\x9d", "\x91smart\x92 \x93quotes\x94", "\x96dash\x97", "\x99 \x9c",
        "CafÃ©", "Ã©tÃ©", "Ã¼ber", "â€œquotedâ€\x9d", "Sjögren", "Ã", "naÃ¯ve cafÃ©",
        "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.", "Ã¢â‚¬Å“mojibakeÃ¢â‚¬Â\x9d", "Ã©"]

SPECIAL = ["[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", "[cls]", "[Mask]", "[ MASK ]",
           "x[SEP]y", "hello [MASK] world", "[CLS][SEP]", "[[MASK]]", "[MASK", "MASK]",
           "[CL\x00S]", "[CLS ]", "a [PAD] b [UNK] c"]

NUMBERS = ["3.14", "1,000,000", "1e-5", "0x1F", "½ ¼ ¾", "x² y³", "①②③", "٠١٢٣", "०१२",
           "１２３", "Ⅳ", "10%", "-5", "+7", "3/4", "2024-01-15", "12:30", "100km", "1st 2nd 3rd",
           "٣٫١٤", "12 345,67", "π ≈ 3.14159", "∞", "√2", "10^6", "6.02×10²³"]


def long_cases(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = []
    for n in (99, 100, 101, 150, 400):
        out.append("".join(rng.choice(letters) for _ in range(n)))
    out.append("a" * 100)
    out.append("a" * 101)
    out.append("é" * 100)
    out.append("é" * 101)
    out.append("e\u0301" * 60)  # 120 code points, 60 after accent stripping
    out.append("x" * 99 + "!" + "y" * 99)
    out.append("word " * 260)  # > 256 tokens: truncation
    out.append("pneumonia " * 130)
    out.append(" ".join(fc.medical_corpus(18, seed=7)))
    out.append("中" * 260)
    out.append("[MASK] " * 257)
    out.append("a" * 600)
    return out


def random_cases(rng: random.Random, n: int) -> list[str]:
    """Random strings over a pool of code points of every kind (all assigned in
    Python's Unicode version, so no version gap between utf8proc and Python)."""
    pool = []
    for lo, hi in [(0x20, 0x7e), (0xa0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff),
                   (0x590, 0x5ff), (0x600, 0x6ff), (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff),
                   (0x13a0, 0x13f5), (0x1c90, 0x1cbf), (0x1e00, 0x1fff), (0x2000, 0x206f),
                   (0x2070, 0x209f), (0x20a0, 0x20c0), (0x2100, 0x218b), (0x2190, 0x23ff),
                   (0x2460, 0x24ff), (0x2c00, 0x2c7f), (0x2e00, 0x2e5d), (0x3000, 0x30ff),
                   (0x3400, 0x3420), (0x4e00, 0x4e80), (0xa640, 0xa69f), (0xab70, 0xabbf),
                   (0xac00, 0xac40), (0xf900, 0xf920), (0xfb00, 0xfb4f), (0xfe30, 0xfe6b),
                   (0xff01, 0xffee), (0x10400, 0x1044f), (0x1d400, 0x1d4ff), (0x1f300, 0x1f64f),
                   (0x20000, 0x20010), (0x2f800, 0x2f810), (0xe0020, 0xe007f)]:
        for c in range(lo, hi + 1):
            if unicodedata.category(chr(c)) != "Cn" and not 0xd800 <= c <= 0xdfff:
                pool.append(chr(c))
    controls = [chr(c) for c in list(range(0, 0x20)) + list(range(0x7f, 0xa0))]
    out = []
    for i in range(n):
        k = rng.randint(1, 40)
        chars = []
        for _ in range(k):
            r = rng.random()
            if r < 0.35:
                chars.append(rng.choice("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789"))
            elif r < 0.45:
                chars.append(" ")
            elif r < 0.5:
                chars.append(rng.choice(controls))
            elif r < 0.53:
                chars.append(rng.choice(["&amp;", "&lt;", "&#65;", "&eacute", "[MASK]", "<", "\r\n"]))
            else:
                chars.append(rng.choice(pool))
        out.append("".join(chars))
    return out


def corpus() -> list[str]:
    rng = random.Random(SEED)
    cases = (LABELS + MEDICAL + WORDS + PUNCT + CJK + EMOJI + CONTROLS + WHITESPACE + HTML + FTFY
             + SPECIAL + NUMBERS + long_cases(rng))
    cases += fc.medical_corpus(400, seed=SEED)
    cases += [w.upper() for w in WORDS] + [w.title() for w in MEDICAL]
    # Words joined with every punctuation / separator kind.
    seps = [" ", "-", "/", ".", ",", "'", "’", "_", "\u00a0", "\u2009", "\t", "·", "。", "、", "\u200b"]
    for i in range(300):
        a, b = rng.choice(WORDS + MEDICAL), rng.choice(WORDS + MEDICAL)
        cases.append(a + rng.choice(seps) + b)
    cases += random_cases(rng, 1200)
    seen, out = set(), []
    for c in cases:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def rich_vocab(base: list[str], cases: list[str]) -> list[str]:
    """The fixture vocab plus characters, ##characters and some words of the corpus."""
    basic = BasicTokenizer(do_lower_case=True)
    vocab, seen = list(base), set(base)

    def add(t):
        if t and t not in seen:
            seen.add(t)
            vocab.append(t)

    words = []
    for c in cases:
        for w in basic.tokenize(c):
            words.append(w)
    for w in words:
        for ch in w:
            if ord(ch) > 0x7e:
                add(ch)
                add("##" + ch)
    rng = random.Random(SEED + 1)
    for w in sorted(set(words)):
        if len(w) >= 2 and rng.random() < 0.3:
            add(w)
            if len(w) >= 4:
                add("##" + w[len(w) // 2:])
    return vocab


def tokenizer_dir(vocab_path: Path) -> Path:
    d = Path(tempfile.mkdtemp(prefix="medquant_tok_"))
    shutil.copy(vocab_path, d / "vocab.txt")
    BertTokenizer(str(d / "vocab.txt"), do_lower_case=True, model_max_length=512).save_pretrained(str(d))
    BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True,
                      model_max_length=512).backend_tokenizer.save(str(d / "tokenizer.json"))
    return d


def open_clip_clean_nofe(text: str) -> str:
    from open_clip.tokenizer import whitespace_clean
    t = ftfy.fix_text(text, fix_encoding=False)
    return whitespace_clean(html.unescape(html.unescape(t)).strip())


def strip_pad(ids: list[int]) -> list[int]:
    n = len(ids)
    while n and ids[n - 1] == 0:
        n -= 1
    return ids[:n]


def main():
    from open_clip.tokenizer import HFTokenizer, _clean_whitespace
    fc.fresh_dir(OUT)
    cases = corpus()
    base = (BIOMEDCLIP / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    rich = rich_vocab(base, cases)
    (OUT / "vocab_rich.txt").write_text("".join(t + "\n" for t in rich), encoding="utf-8")

    vocabs = {"a": BIOMEDCLIP / "vocab.txt", "b": OUT / "vocab_rich.txt"}
    slow = {k: BertTokenizer(str(v), do_lower_case=True) for k, v in vocabs.items()}
    dirs = {k: tokenizer_dir(v) for k, v in vocabs.items()}
    oc = {k: HFTokenizer(str(d), context_length=CONTEXT) for k, d in dirs.items()}
    assert type(oc["a"].tokenizer).__name__ == "BertTokenizerFast"
    # The fixture folder itself must give the same as our copy of its vocab.
    oc_fixture = HFTokenizer(str(BIOMEDCLIP), context_length=CONTEXT)

    stats = {"cases": len(cases), "mojibake": 0, "fast_differs_a": 0, "fast_differs_b": 0}
    lines = []
    for t in cases:
        row = {"t": t}
        for k, tok in slow.items():
            row[k] = tok(t)["input_ids"]
        clean = _clean_whitespace(t)
        row["c"] = clean
        nofe = open_clip_clean_nofe(t)
        if nofe != clean:
            row["c_nofe"] = nofe
            stats["mojibake"] += 1
        for k in vocabs:
            ids = oc[k]([t])[0].tolist()
            assert len(ids) == CONTEXT
            if k == "a":
                assert ids == oc_fixture([t])[0].tolist()
            row["o" + k] = strip_pad(ids)
            slow_ids = slow[k](nofe, padding="max_length", truncation=True, max_length=CONTEXT)["input_ids"]
            if slow_ids != ids and (nofe == clean):
                row["o" + k + "_slow"] = strip_pad(slow_ids)
                stats["fast_differs_" + k] += 1
            elif nofe != clean:
                row["o" + k + "_slow"] = strip_pad(slow_ids)
        # Leave out what only repeats other fields.
        if row["c"] == t:
            del row["c"]
            for k in vocabs:
                cut = row[k][:-1][:CONTEXT - 1] + [row[k][-1]]
                if row["o" + k] == cut:
                    del row["o" + k]
        lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    (OUT / "cases.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    lower = {}
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        low = chr(c).lower()
        if low != chr(c):
            lower[c] = [ord(x) for x in low]
    fc.write_json(OUT / "unicode.json", {
        "generator": "tools/make_tokenizer_fixtures.py",
        "python_unicode_version": unicodedata.unidata_version,
        "lower": [[c, v] for c, v in sorted(lower.items())],
        "isspace": [c for c in range(0x110000) if chr(c).isspace()],
    }, indent=None)
    fc.write_json(OUT / "meta.json", {
        "generator": "tools/make_tokenizer_fixtures.py", "packages": fc.package_versions(),
        "ftfy": __import__("importlib.metadata").metadata.version("ftfy"),
        "context_length": CONTEXT, "vocab_a": "tiny-biomedclip/vocab.txt",
        "vocab_b": "tokenizer/vocab_rich.txt", "vocab_b_size": len(rich), "stats": stats})
    for d in dirs.values():
        shutil.rmtree(d)
    print(json.dumps(stats), f"cases.jsonl {(OUT / 'cases.jsonl').stat().st_size} bytes")


if __name__ == "__main__":
    main()
