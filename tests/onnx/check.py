"""Checks an ONNX model exported by `nnc export` with the tools people deploy with.

Usage: check.py MODEL.onnx INPUT NNC_OUTPUT.npy [MODEL.onnx INPUT NNC_OUTPUT.npy ...]

INPUT is what `nnc predict` read: a CSV file (the features are the columns named in
the model's `features` metadata, raw: the model standardizes them itself) or an IDX
image file (gzip or raw; pixels become p / 255 in float32, as nnc reads them).
Runs `onnx.checker.check_model(full_check=True)`, then the model in onnxruntime, and
prints one JSON object per model: the rows and the largest absolute difference from
nnc's predictions.
"""

import gzip
import json
import sys

import numpy as np
import onnx
import onnxruntime


def read_idx_images(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    count, rows, cols = np.frombuffer(data[4:16], dtype=">u4")
    pixels = np.frombuffer(data[16:], dtype=np.uint8, count=count * rows * cols)
    return pixels.reshape(count, rows * cols).astype(np.float32) / np.float32(255)


def read_csv(path, features):
    with open(path) as f:
        header = f.readline().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    columns = [header.index(name) for name in features]
    return table[:, columns].astype(np.float32)


def check(model_path, input_path, nnc_path):
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    features = json.loads(meta.get("features", "[]"))
    if input_path.endswith(".csv"):
        x = read_csv(input_path, features)
    else:
        x = read_idx_images(input_path)
    session = onnxruntime.InferenceSession(
        model_path, providers=["CPUExecutionProvider"]
    )
    (inp,) = session.get_inputs()
    x = x.reshape([x.shape[0]] + list(inp.shape[1:]))
    (y,) = session.run(None, {inp.name: x})
    expected = np.load(nnc_path)
    if y.shape != expected.shape:
        raise SystemExit(f"{model_path}: onnxruntime gave shape {y.shape}, nnc {expected.shape}")
    return {
        "rows": int(y.shape[0]),
        "max_abs_diff": float(np.abs(y.astype(np.float64) - expected).max()),
        "opset": int(model.opset_import[0].version),
    }


def main():
    args = sys.argv[1:]
    if not args or len(args) % 3:
        raise SystemExit(__doc__)
    for i in range(0, len(args), 3):
        print(json.dumps(check(*args[i : i + 3])))


if __name__ == "__main__":
    main()
