"""Shared helpers for the fixture generators in tools/.

Everything here is deterministic: the same package versions give the same
bytes on every run. Nothing is downloaded: HF_HUB_OFFLINE is forced on before
transformers / open_clip / timm are imported by the generators.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

# Never touch the network: every config is built locally.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"

PACKAGES = ["torch", "torchvision", "transformers", "tokenizers", "open-clip-torch",
            "timm", "sentencepiece", "safetensors", "numpy", "pillow", "protobuf"]


def package_versions() -> dict[str, str]:
    import importlib.metadata as md
    out = {}
    for p in PACKAGES:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    return out


def fresh_dir(path: Path) -> Path:
    """Empties `path` (which must lie under tests/fixtures) and recreates it."""
    path = path.resolve()
    assert FIXTURES.resolve() in path.parents, path
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def write_json(path: Path, obj, indent=2):
    path.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_npy(path: Path, arr: np.ndarray, index: dict, description: str, **extra):
    """Saves a C-contiguous little-endian .npy (format 1.0) and records it in `index`."""
    arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    np.save(path, arr, allow_pickle=False)
    entry = {"file": path.name, "dtype": str(arr.dtype), "shape": list(arr.shape),
             "description": description}
    entry.update(extra)
    index[path.stem] = entry


# ---------------------------------------------------------------------------
# Weight randomisation
# ---------------------------------------------------------------------------

def randomize_constant_params_(model, generator, scale: float = 0.1):
    """Upstream inits leave norms at 1 (or 0 for Gemma's 1+w RMSNorm), biases
    and some tokens at 0. A converter that dropped or swapped such a tensor
    would go unnoticed, so every parameter that is constant gets random noise
    added: value + scale * N(0, 1)."""
    import torch
    changed = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.numel() == 0:
                continue
            flat = p.detach().reshape(-1)
            if p.numel() == 1 or bool((flat == flat[0]).all()):
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
                p.add_((noise * scale).to(p.dtype))
                changed.append(name)
    return changed


def rescale_matrices_(model, generator, std: float, skip=()):
    """Re-draws every >=2-D parameter from N(0, std) so that activations are
    large enough for different inputs to give clearly different outputs."""
    import torch
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and not any(s in name for s in skip):
                p.copy_((torch.randn(p.shape, generator=generator) * std).to(p.dtype))


# ---------------------------------------------------------------------------
# A small medical-ish text corpus (for training the two tiny tokenizers)
# ---------------------------------------------------------------------------

MODALITIES = ["chest x-ray", "chest radiograph", "ct scan", "mri", "ultrasound", "mammogram",
              "histopathology slide", "fundus photograph", "dermoscopy image", "pet scan",
              "angiogram", "echocardiogram", "endoscopy image", "bone scan", "abdominal ct",
              "brain mri", "knee radiograph", "spine mri", "pelvic ultrasound", "cardiac mri"]
ANATOMY = ["lung", "lungs", "heart", "liver", "kidney", "kidneys", "spleen", "pancreas", "brain",
           "spine", "rib", "ribs", "clavicle", "diaphragm", "mediastinum", "pleura", "trachea",
           "bronchus", "aorta", "ventricle", "atrium", "colon", "stomach", "bladder", "prostate",
           "breast", "thyroid", "femur", "tibia", "humerus", "pelvis", "skull", "retina", "skin",
           "gallbladder", "appendix", "esophagus", "duodenum", "adrenal", "lymph node",
           "hilum", "costophrenic angle", "apex", "base", "lobe", "upper lobe", "lower lobe",
           "middle lobe", "cortex", "white matter", "cerebellum", "hippocampus", "cornea"]
FINDINGS = ["pneumonia", "pneumothorax", "pleural effusion", "cardiomegaly", "atelectasis",
            "consolidation", "edema", "emphysema", "fibrosis", "nodule", "mass", "fracture",
            "infiltrate", "opacity", "calcification", "lesion", "tumor", "carcinoma",
            "adenocarcinoma", "metastasis", "hemorrhage", "infarct", "stenosis", "aneurysm",
            "thrombosis", "embolism", "cyst", "abscess", "hernia", "inflammation", "necrosis",
            "melanoma", "nevus", "glaucoma", "retinopathy", "cataract", "hydronephrosis",
            "cirrhosis", "steatosis", "splenomegaly", "lymphadenopathy", "tuberculosis",
            "bronchiectasis", "scoliosis", "osteoporosis", "arthritis", "effusion",
            "granuloma", "sarcoidosis", "covid-19", "covid", "influenza", "sepsis"]
ADJECTIVES = ["small", "large", "mild", "moderate", "severe", "acute", "chronic", "bilateral",
              "left", "right", "diffuse", "focal", "patchy", "subtle", "extensive", "benign",
              "malignant", "normal", "abnormal", "enlarged", "stable", "new", "old", "healed",
              "irregular", "round", "dense", "faint", "central", "peripheral", "basal", "apical",
              "posterior", "anterior", "lateral", "medial", "superior", "inferior", "partial"]
VERBS = ["shows", "demonstrates", "reveals", "suggests", "indicates", "excludes", "confirms",
         "is consistent with", "is suspicious for", "is compatible with", "rules out"]
SUBJECTS = ["the image", "this study", "the scan", "the radiograph", "the examination",
            "the frontal view", "the lateral view", "the slide", "the report", "imaging"]
PROMPT_HEADS = ["this is a photo of", "a photo of", "an image of", "a radiology image showing",
                "a medical image of", "an example of", "a picture of", "this is an image of",
                "a histopathology image of", "a scan showing"]
EXTRA = ["patient", "patients", "history", "clinical", "findings", "impression", "comparison",
         "prior", "follow-up", "recommend", "correlation", "evidence", "significant", "change",
         "interval", "measurement", "measuring", "millimeters", "centimeters", "contrast",
         "enhancement", "without", "with", "there", "no", "is", "are", "and", "or", "of",
         "the", "in", "on", "at", "to", "for", "from", "year", "old", "male", "female", "man",
         "woman", "child", "pain", "fever", "cough", "shortness", "breath", "dyspnea",
         "diagnosis", "differential", "treatment", "therapy", "biopsy", "surgery", "dose",
         "mg", "daily", "twice", "tablet", "symptoms", "onset", "weeks", "days", "months",
         "describe", "what", "which", "where", "how", "findings", "please", "answer", "question",
         "radiologist", "physician", "nurse", "hospital", "emergency", "department", "admitted",
         "discharged", "blood", "pressure", "heart rate", "oxygen", "saturation", "temperature",
         "laboratory", "results", "elevated", "decreased", "within", "limits", "unremarkable",
         "abdomen", "abdominal", "thoracic", "lumbar", "cervical", "cranial", "renal", "hepatic",
         "pulmonary", "cardiac", "vascular", "arterial", "venous", "cerebral", "spinal", "nasal",
         "oral", "dental", "gastric", "intestinal", "rectal", "urinary", "biliary", "ovarian",
         "uterine", "testicular", "muscular", "skeletal", "osseous", "cutaneous", "subcutaneous",
         "intravenous", "intramuscular", "antibiotic", "antibiotics", "steroid", "insulin",
         "aspirin", "heparin", "warfarin", "ibuprofen", "paracetamol", "morphine", "oncology",
         "radiology", "pathology", "cardiology", "neurology", "dermatology", "ophthalmology",
         "pediatrics", "surgeon", "anesthesia", "ventilator", "catheter", "stent", "pacemaker",
         "tube", "line", "drain", "device", "implant", "prosthesis", "screw", "plate", "wire",
         "clip", "suture", "staple", "artifact", "motion", "noise", "resolution", "window",
         "level", "slice", "axial", "coronal", "sagittal", "oblique", "portable", "supine",
         "upright", "erect", "decubitus", "inspiration", "expiration", "rotation", "penetration",
         "magnification", "density", "attenuation", "signal", "intensity", "hyperintense",
         "hypointense", "hyperdense", "hypodense", "isodense", "echogenic", "anechoic",
         "homogeneous", "heterogeneous", "margin", "contour", "border", "shape", "size",
         "volume", "diameter", "thickness", "wall", "lumen", "fluid", "air", "gas", "fat",
         "soft", "tissue", "bone", "cartilage", "ligament", "tendon", "muscle", "nerve", "vessel",
         "artery", "vein", "capillary", "cell", "cells", "nucleus", "cytoplasm", "membrane",
         "gland", "duct", "mucosa", "epithelium", "stroma", "mitosis", "atypia", "grade",
         "stage", "differentiated", "invasive", "in situ", "margin", "positive", "negative",
         "squamous", "ductal", "lobular", "papillary", "follicular", "medullary", "serous",
         "mucinous", "clear", "small cell", "large cell", "lymphoma", "leukemia", "myeloma",
         "sarcoma", "glioma", "meningioma", "adenoma", "polyp", "ulcer", "erosion", "stricture",
         "obstruction", "perforation", "dilation", "dilatation", "thickening", "narrowing",
         "displacement", "deformity", "dislocation", "subluxation", "sclerosis", "lucency",
         "periosteal", "reaction", "callus", "union", "nonunion", "malunion", "osteophyte",
         "degenerative", "disease", "syndrome", "disorder", "infection", "injury", "trauma",
         "wound", "burn", "rash", "lesions", "plaque", "papule", "macule", "vesicle", "pustule",
         "scale", "crust", "pigment", "pigmented", "asymmetry", "color", "evolution", "dermal"]


def medical_corpus(n_sentences: int = 4000, seed: int = 1234) -> list[str]:
    """Deterministic list of medical-ish sentences (ASCII, mixed case, digits)."""
    rng = random.Random(seed)
    out = []
    for i in range(n_sentences):
        kind = i % 6
        adj = rng.choice(ADJECTIVES)
        find = rng.choice(FINDINGS)
        anat = rng.choice(ANATOMY)
        mod = rng.choice(MODALITIES)
        if kind == 0:
            s = f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {adj} {find} of the {anat}."
        elif kind == 1:
            s = f"{rng.choice(PROMPT_HEADS)} {mod} with {adj} {find}"
        elif kind == 2:
            age = rng.randint(1, 95)
            s = (f"A {age}-year-old {rng.choice(['man', 'woman', 'patient', 'child'])} presents with "
                 f"{rng.choice(['cough', 'fever', 'pain', 'dyspnea', 'shortness of breath'])} for "
                 f"{rng.randint(2, 30)} {rng.choice(['days', 'weeks', 'months'])}.")
        elif kind == 3:
            mm = rng.randint(2, 80)
            s = (f"Impression: {adj} {find} in the {rng.choice(['left', 'right'])} {anat}, "
                 f"measuring {mm} mm; no {rng.choice(FINDINGS)}.")
        elif kind == 4:
            words = rng.sample(EXTRA, 8)
            s = " ".join(words).capitalize() + "."
        elif kind == 5 and i % 12 == 5:
            s = (f"Lab values: {rng.randint(0, 999)} {rng.randint(0, 999)} "
                 f"{rng.randint(0, 99)}.{rng.randint(0, 9)} {rng.randint(100, 999)} "
                 f"{rng.choice(EXTRA)} {rng.choice(EXTRA)} {rng.choice(ANATOMY)}.")
        else:
            s = (f"Question: What does this {mod} show? Answer: {adj.capitalize()} {find} "
                 f"({rng.choice(['grade', 'stage', 'type'])} {rng.randint(1, 4)}), "
                 f"{rng.choice(['no', 'with'])} {rng.choice(FINDINGS)}.")
        out.append(s)
    return out
