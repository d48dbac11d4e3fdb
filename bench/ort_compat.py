"""Load and run ONNX files in the onnxruntime of the Python that runs this.

Run by bench/ort_compat.sh once per onnxruntime version. Usage:
    python bench/ort_compat.py <folder> <model.onnx>...
For each model, feeds the inputs stored in <folder>/inputs.npz (by input
name) and compares the first output with <folder>/<model stem>.expected.npy
(written by the pinned onnxruntime). Prints one line per model:
    <model>\t<ok|FAIL>\t<max abs diff or the error's first line>
"""

import os
import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    folder, models = sys.argv[1], sys.argv[2:]
    inputs = dict(np.load(os.path.join(folder, "inputs.npz")))
    for model in models:
        stem = os.path.splitext(os.path.basename(model))[0]
        try:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            feed = {i.name: inputs[i.name] for i in sess.get_inputs()}
            out = sess.run(None, feed)[0]
            expected = np.load(os.path.join(folder, stem + ".expected.npy"))
            print(f"{stem}\tok\t{float(np.max(np.abs(out - expected))):.2e}")
        except Exception as e:  # the point is to report what fails to load
            print(f"{stem}\tFAIL\t{str(e).strip().splitlines()[0][:160]}")


if __name__ == "__main__":
    main()
