#!/usr/bin/env python3
"""Builds tests/fixtures/vision/: small PNG/JPEG images of every kind Pillow
distinguishes, what Pillow and open_clip make of them, and broken files, for
the C++ image front end (src/vision/).

  images/*.png|jpg   the inputs (a few KB each)
  expected.json      per image: Pillow's mode and size, and the sha256 (with
                     shape) of
                       decoded  np.asarray(Image.open(f)): HxW or HxWxC, uint8
                                (uint16 for I;16, bool for "1"; indices for P,
                                whose palette is listed too, as hex)
                       resize   Image.resize((w, h), BICUBIC) in the image's own
                                mode, for the listed (w, h)
                       crop     open_clip's Resize(N, bicubic) + CenterCrop(N) +
                                convert("RGB"), uint8 NxNx3: what ToTensor sees
                       tensor   the whole eval transform (ToTensor + Normalize
                                with BiomedCLIP's mean/std), float32 3xNxN
                     and per broken file a phrase our error must contain.
  The arrays themselves are not committed (the fixture budget is tight); run
  with --arrays DIR to also write them as .npy files, e.g. to see by how much
  a mismatch differs.

Run:  tools/.venv/bin/python tools/make_vision_fixtures.py
"""
from __future__ import annotations

import hashlib
import io
import struct
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixture_common as fc  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, features  # noqa: E402

OUT = fc.FIXTURES / "vision"
CROP = 56  # the transform's size for these images (BiomedCLIP uses 224; same code path)
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
SEED = 31337


def pattern(w: int, h: int, seed: int) -> np.ndarray:
    """A smooth-plus-edges RGB test pattern (float 0..255), deterministic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / max(w, 1) * 6.3 + seed)
    g = 255 * (y / max(h - 1, 1))
    b = 127.5 + 127.5 * np.cos((x + y) / 7.0)
    img = np.stack([r, g, b], -1)
    img[(x // 5 + y // 5) % 7 == 0] = [250, 20, 30]  # hard edges: ringing and clipping
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255)


def u8(a):
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


def make_images() -> dict[str, tuple[Image.Image | bytes, dict]]:
    """name -> (image to save or raw bytes, save kwargs)."""
    out = {}
    rgb = u8(pattern(97, 61, 1))
    out["rgb_97x61.png"] = (Image.fromarray(rgb), {})
    out["rgb_56x56.png"] = (Image.fromarray(u8(pattern(56, 56, 3))), {})  # no resize at CROP
    out["rgb_45x250_tall.png"] = (Image.fromarray(u8(pattern(45, 250, 4))), {})
    out["rgb_300x40_wide.png"] = (Image.fromarray(u8(pattern(300, 40, 5))), {})
    out["rgb_330x250_big.jpg"] = (Image.fromarray(u8(pattern(330, 250, 6))), {"quality": 75})
    out["rgb_1x1.png"] = (Image.fromarray(u8(pattern(1, 1, 7))), {})
    out["rgb_3x7.png"] = (Image.fromarray(u8(pattern(3, 7, 8))), {})
    out["rgb_59x58_odd.png"] = (Image.fromarray(u8(pattern(59, 58, 9))), {})  # crop offset x.5
    out["rgb_interlaced.png"] = (Image.fromarray(u8(pattern(41, 37, 10))), {"interlace": 1})
    gray = u8(pattern(83, 66, 11)[..., 1] * 0.6 + pattern(83, 66, 11)[..., 0] * 0.4)
    out["gray_83x66.png"] = (Image.fromarray(gray), {})
    out["gray_83x66.jpg"] = (Image.fromarray(gray), {"quality": 85})
    # 16-bit gray: values across 0..65535 (most > 255: Pillow's RGB clips them)
    # and a block below 256 (kept).
    g16 = (pattern(64, 50, 12)[..., 0] * 257).astype(np.uint16)
    g16[10:30, 5:25] = (g16[10:30, 5:25] // 300).astype(np.uint16)
    out["gray16_64x50.png"] = (Image.fromarray(g16), {})
    g16s = (pattern(60, 44, 13)[..., 2]).astype(np.uint16)  # all below 256
    out["gray16_low_60x44.png"] = (Image.fromarray(g16s), {})
    # Alpha: transparent, opaque and in-between pixels.
    a = u8(pattern(71, 53, 14)[..., 2])
    a[:, :8] = 0
    a[:, -8:] = 255
    la = np.stack([gray[:53, :71], a], -1)
    out["la_71x53.png"] = (Image.fromarray(la), {})
    rgba = np.concatenate([u8(pattern(71, 53, 15)), a[..., None]], -1)
    out["rgba_71x53.png"] = (Image.fromarray(rgba), {})
    # Palettes: 8-bit, 4-bit, with transparency, few colours.
    pal_src = Image.fromarray(u8(pattern(90, 70, 16)))
    p8 = pal_src.quantize(colors=200, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out["palette8_90x70.png"] = (p8, {})
    p4 = pal_src.quantize(colors=12, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out["palette4_90x70.png"] = (p4, {"bits": 4})
    out["palette_trns_90x70.png"] = (p8, {"transparency": 3})
    bw = (pattern(50, 45, 17)[..., 0] > 128).astype(np.uint8) * 255
    out["bit1_50x45.png"] = (Image.fromarray(bw).convert("1"), {})
    out["rgb_trns_40x30.png"] = (Image.fromarray(u8(pattern(40, 30, 18))), {"transparency": (250, 20, 30)})
    # JPEG variants.
    jp = Image.fromarray(u8(pattern(77, 63, 19)))
    out["rgb_444_77x63.jpg"] = (jp, {"quality": 92, "subsampling": 0})
    out["rgb_422_77x63.jpg"] = (jp, {"quality": 92, "subsampling": 1})
    out["rgb_420_77x63.jpg"] = (jp, {"quality": 92, "subsampling": 2})
    out["rgb_progressive_77x63.jpg"] = (jp, {"quality": 90, "progressive": True})
    out["cmyk_66x52.jpg"] = (Image.fromarray(u8(pattern(66, 52, 20))).convert("CMYK"), {"quality": 90})
    return out


def raw_png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for typ, data in chunks:
        out += struct.pack(">I", len(data)) + typ + data + struct.pack(">I", zlib.crc32(typ + data))
    return out


def bit_depth_variants() -> dict[str, bytes]:
    """Gray 2- and 4-bit and 16-bit RGB / gray+alpha PNGs, written by hand
    (Pillow doesn't write them)."""
    out = {}
    rng = np.random.default_rng(SEED)
    w, h = 37, 29
    for bits in (2, 4):
        vals = rng.integers(0, 1 << bits, (h, w))
        rows = b""
        for r in vals:
            bitstr = "".join(format(int(v), f"0{bits}b") for v in r)
            bitstr += "0" * (-len(bitstr) % 8)
            rows += b"\x00" + int(bitstr, 2).to_bytes(len(bitstr) // 8, "big")
        ihdr = struct.pack(">IIBBBBB", w, h, bits, 0, 0, 0, 0)
        out[f"gray{bits}bit_37x29.png"] = raw_png([(b"IHDR", ihdr), (b"IDAT", zlib.compress(rows)),
                                                   (b"IEND", b"")])
    for name, ctype, ch in (("rgb16_37x29.png", 2, 3), ("la16_37x29.png", 4, 2), ("rgba16_37x29.png", 6, 4)):
        vals = rng.integers(0, 65536, (h, w, ch)).astype(">u2")
        if ch in (2, 4):
            vals[:, :5, -1] = 0
            vals[:, -5:, -1] = 65535
        rows = b"".join(b"\x00" + r.tobytes() for r in vals)
        ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)
        out[name] = raw_png([(b"IHDR", ihdr), (b"IDAT", zlib.compress(rows)), (b"IEND", b"")])
    return out


def broken_files(good_png: bytes, good_jpg: bytes) -> list[tuple[str, bytes, str]]:
    huge_ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    wide_ihdr = struct.pack(">IIBBBBB", 40000, 1, 8, 0, 0, 0, 0)
    many_ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)  # 9e8 pixels > 2^28
    zero_ihdr = struct.pack(">IIBBBBB", 0, 10, 8, 0, 0, 0, 0)
    bad_crc = bytearray(good_png)
    bad_crc[29] ^= 0xFF  # inside the IHDR CRC
    sof = good_jpg.index(b"\xff\xc0")
    huge_jpg = bytearray(good_jpg)
    struct.pack_into(">HH", huge_jpg, sof + 5, 60000, 60000)
    idat = good_png.index(b"IDAT")
    return [
        ("empty.png", b"", "empty file"),
        ("random.bin", bytes((i * 97 + 13) % 256 for i in range(500)), "not a PNG or JPEG"),
        ("text.png", b"this is not an image\n", "not a PNG or JPEG"),
        ("gif.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "not a PNG or JPEG"),
        ("truncated.png", good_png[: idat + 40], "broken PNG"),
        ("truncated_header.png", good_png[:20], "broken PNG"),
        ("huge.png", raw_png([(b"IHDR", huge_ihdr), (b"IEND", b"")]), "too large"),
        ("wide.png", raw_png([(b"IHDR", wide_ihdr), (b"IEND", b"")]), "too large"),
        ("many_pixels.png", raw_png([(b"IHDR", many_ihdr), (b"IEND", b"")]), "too large"),
        ("zero_width.png", raw_png([(b"IHDR", zero_ihdr), (b"IEND", b"")]), "broken PNG"),
        ("bad_crc.png", bytes(bad_crc), "broken PNG"),
        ("huge.jpg", bytes(huge_jpg), "too large"),
        ("truncated.jpg", good_jpg[: len(good_jpg) // 2], "truncated"),
        ("truncated_header.jpg", good_jpg[:30], "truncated"),
        ("no_sof.jpg", b"\xff\xd8\xff\xd9", "broken JPEG"),
    ]


def pil_error(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            im.convert("RGB")
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {str(e)[:150]}"
    return ""


def digest(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": hashlib.sha256(a.tobytes()).hexdigest()}


def main():
    from open_clip.transform import PreprocessCfg, image_transform_v2
    arrays = Path(sys.argv[sys.argv.index("--arrays") + 1]) if "--arrays" in sys.argv else None
    if arrays:
        arrays.mkdir(parents=True, exist_ok=True)
    fc.fresh_dir(OUT)
    (OUT / "images").mkdir()
    transform = image_transform_v2(PreprocessCfg(size=CROP, mean=MEAN, std=STD), is_train=False)
    pil_only = image_transform_v2(PreprocessCfg(size=CROP, mean=MEAN, std=STD), is_train=False)
    pil_only.transforms = pil_only.transforms[:-2]  # Resize, CenterCrop, convert("RGB")
    print(transform)

    files: dict[str, bytes] = {}
    for name, (im, kw) in make_images().items():
        buf = io.BytesIO()
        im.save(buf, format="PNG" if name.endswith(".png") else "JPEG", **kw)
        files[name] = buf.getvalue()
    files.update(bit_depth_variants())

    expected = {"generator": "tools/make_vision_fixtures.py", "packages": fc.package_versions(),
                "libjpeg_turbo": features.version("libjpeg_turbo"), "crop": CROP,
                "mean": MEAN, "std": STD, "images": {}, "broken": []}
    rng = np.random.default_rng(SEED)
    for name, data in sorted(files.items()):
        assert len(data) <= 64 * 1024, (name, len(data))
        (OUT / "images" / name).write_bytes(data)
        stem = name.rsplit(".", 1)[0]
        with Image.open(OUT / "images" / name) as im:
            im.load()
            entry = {"mode": im.mode, "size": list(im.size)}
            got = {"decoded": np.asarray(im)}
            if im.mode == "P":
                pal = bytes(im.getpalette()[:768])
                entry["palette"] = (pal + bytes(768 - len(pal))).hex()  # 256 x RGB
            # A free resize (not the shortest-side one) in the image's own mode.
            tw = int(rng.integers(1, im.size[0] + im.size[0] // 2 + 3))
            th = int(rng.integers(1, im.size[1] + im.size[1] // 2 + 3))
            entry["resize_to"] = [tw, th]
            got["resize"] = np.asarray(im.resize((tw, th), Image.BICUBIC))
            got["crop"] = np.asarray(pil_only(im))
            assert got["crop"].shape == (CROP, CROP, 3) and got["crop"].dtype == np.uint8
            got["tensor"] = transform(im).numpy()
            assert got["tensor"].dtype == np.float32 and got["tensor"].shape == (3, CROP, CROP)
            for k, a in got.items():
                entry[k] = digest(a)
                if arrays:
                    np.save(arrays / f"{stem}.{k}.npy", a)
        expected["images"][name] = entry
        print(f"{name:28s} {entry['mode']:5s} {entry['size']} {len(data)} bytes")

    for name, data, phrase in broken_files(files["rgb_97x61.png"], files["rgb_444_77x63.jpg"]):
        (OUT / "images" / f"broken_{name}").write_bytes(data)
        expected["broken"].append({"file": f"broken_{name}", "error": phrase,
                                   "pillow_error": pil_error(data)})
    fc.write_json(OUT / "expected.json", expected, indent=1)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
