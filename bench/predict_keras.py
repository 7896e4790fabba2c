"""nnc predict against Keras's model.predict on the 10,000 MNIST test images.

nnc is timed as a whole process (start, check, compile, read the images, predict,
write the .npy), Keras as its `model.predict` call alone, with the same weights
(nnc's, loaded into the Keras model), after one warm-up call, at Keras's default
batch size (32) and at 256. Both use every core. Prints a markdown table
with medians of --runs and the largest difference between the two outputs.

Usage (the peers' environment has Keras; see bench/compare.py):
    /tmp/peers/venv/bin/python bench/predict_keras.py --nnc target/release/nnc
"""

import argparse
import gzip
import json
import os
import statistics
import struct
import subprocess
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "examples/data/mnist/t10k-images-idx3-ubyte.gz")


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    body = data[8 + n :]
    return {
        k: np.frombuffer(body[v["data_offsets"][0] : v["data_offsets"][1]], "<f4").reshape(
            v["shape"]
        )
        for k, v in header.items()
    }


def test_images():
    data = gzip.decompress(open(IMAGES, "rb").read())
    return np.frombuffer(data[16:], np.uint8).reshape(-1, 28, 28, 1).astype("float32") / 255


def keras_model(name, weights):
    import keras
    from keras import layers

    if name == "mlp":
        model = keras.Sequential(
            [
                keras.Input((784,)),
                layers.Dense(128, activation="relu", name="dense"),
                layers.Dense(10, activation="softmax", name="dense_1"),
            ]
        )
    else:
        model = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                layers.Conv2D(32, 3, activation="relu", name="conv2d"),
                layers.MaxPooling2D(2),
                layers.Conv2D(64, 3, activation="relu", name="conv2d_1"),
                layers.MaxPooling2D(2),
                layers.Flatten(),
                layers.Dropout(0.5),
                layers.Dense(10, activation="softmax", name="dense"),
            ]
        )
    for layer in model.layers:
        if f"{layer.name}.kernel" in weights:
            layer.set_weights([weights[f"{layer.name}.kernel"], weights[f"{layer.name}.bias"]])
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nnc", default=os.path.join(ROOT, "target/release/nnc"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1, help="training epochs for the weights")
    args = ap.parse_args()
    x = test_images()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, example in [("mlp", "mnist_mlp.nn"), ("cnn", "mnist_cnn.nn")]:
            nn = os.path.join(ROOT, "examples", example)
            weights = os.path.join(tmp, f"{name}.safetensors")
            out = os.path.join(tmp, f"{name}.npy")
            subprocess.run(
                [args.nnc, "run", nn, "--epochs", str(args.epochs), "--save", weights],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            command = [args.nnc, "predict", nn, "--weights", weights, IMAGES, "-o", out]
            nnc_times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                subprocess.run(command, check=True)
                nnc_times.append(time.perf_counter() - start)
            ours = np.load(out)
            model = keras_model(name, read_safetensors(weights))
            inputs = x.reshape(-1, 784) if name == "mlp" else x
            keras_times = {}
            for batch in (32, 256):
                model.predict(inputs, batch_size=batch, verbose=0)
                times = []
                for _ in range(args.runs):
                    start = time.perf_counter()
                    theirs = model.predict(inputs, batch_size=batch, verbose=0)
                    times.append(time.perf_counter() - start)
                keras_times[batch] = statistics.median(times)
            diff = float(np.abs(theirs - ours).max())
            t = statistics.median(nnc_times)
            rows.append(
                f"| {name} | {t:.3f} | {keras_times[32]:.3f} | {keras_times[256]:.3f} "
                f"| {keras_times[32] / t:.1f}x | {keras_times[256] / t:.1f}x | {diff:.1e} |"
            )
    print("| model | nnc predict, whole process (s) | Keras predict, batch 32 (s) "
          "| Keras predict, batch 256 (s) | speedup vs 32 | speedup vs 256 "
          "| largest difference |")
    print("| --- | --: | --: | --: | --: | --: | --: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
