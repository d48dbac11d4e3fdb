"""Which tensor type each llama.cpp mix gives each kind of tensor, as a
markdown table, from `medquant quantize gguf --dry-run --json` plans
(bench/quant_types.sh --big runs it on the Gemma-3-4B-shaped GGUF).

Usage: python bench/quant_mix_table.py plan.json...
"""

import collections
import json
import re
import sys

# Columns: the tensor kinds of a Gemma 3 block (and the tied embedding).
COLUMNS = [("token_embd (= output, tied)", ["token_embd.weight", "output.weight"]),
           ("attn_q, attn_k", ["attn_q.weight", "attn_k.weight"]),
           ("attn_output", ["attn_output.weight"]),
           ("attn_v", ["attn_v.weight"]),
           ("ffn_gate, ffn_up", ["ffn_gate.weight", "ffn_up.weight"]),
           ("ffn_down", ["ffn_down.weight"])]


def main() -> None:
    print("| mix | bits/weight | tensor GB | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("| --- | ---: | ---: |" + " --- |" * len(COLUMNS))
    for path in sys.argv[1:]:
        plan = json.load(open(path))
        by_kind = collections.defaultdict(collections.Counter)
        for t in plan["tensors"]:
            by_kind[re.sub(r"^blk\.\d+\.", "", t["name"])][t["to"]] += 1
        cells = []
        for _, kinds in COLUMNS:
            types = collections.Counter()
            for k in kinds:
                types.update(by_kind.get(k, {}))
            n = sum(types.values())
            # "q4_K ×30, q5_K ×4" when the layers differ, else just the type
            cells.append(", ".join(t if c == n else f"{t} ×{c}" for t, c in types.most_common()))
        print(f"| {plan['type']} | {plan['bpw_out']:.2f} | {plan['bytes_out'] / 1e9:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
