#!/usr/bin/env python3
"""nnc against its peers (Keras/TensorFlow, JAX, PyTorch) on the same models.

Runs `nnc run` (release build) and, when the peer venv exists, the peer scripts of
../shared/peers (or $PEERS; `lenet_bn` and `resnet` by bench/peers/, Keras and
PyTorch only), each several times, and prints markdown tables: median
epoch seconds, steps/s, peak resident memory, and nnc's time ratio to each peer
(`nnc/keras`, `nnc/jax`, `nnc/torch`: below 1 means nnc is faster) at the same thread
count, then a summary of those ratios and of nnc's speedup from 1 to 2 threads.
Standard library only (the peers bring their own venv).

    bench/compare.sh                                  # everything, 3 runs each
    bench/compare.sh --threads 1 2 --runs 3           # the same, said explicitly
    bench/compare.py --models mlp --threads 1 2 --runs 3 --epochs 3
    bench/compare.py --models cnn --cnn-rows 12800    # a quicker convnet check
    bench/compare.py --scaling                        # nnc MLP: width x batch table

Data sets are written to a temporary folder so every framework sees the same rows:
seed = the 3-feature breast-cancer rows tiled to 100,000 (batch 32, 3125 steps);
mlp = MNIST's 60,000 training images (batch 128, 469 steps); cnn = the first
`--cnn-rows` (all 60,000: 469 steps) images, no validation split (the peers use none),
`--cnn-epochs` epochs (nnc; the peers one more, their first being warm-up);
lenet_bn = examples/lenet5.nn (batch 128) and resnet = examples/mnist_resnet.nn
(batch 64) on the same `--cnn-rows` images.
"""

import argparse
import gzip
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# $NNC: another build to measure (e.g. an older commit's, for a before/after table).
NNC = os.environ.get("NNC", os.path.join(ROOT, "target", "release", "nnc"))
DATA = os.path.join(ROOT, "examples", "data")
PEERS = os.environ.get("PEERS", os.path.join(ROOT, "..", "shared", "peers"))
PY = os.environ.get("PY", "/tmp/peers/venv/bin/python")

SEED_ROWS = 100_000
BATCH = {"seed": 32, "mlp": 128, "cnn": 128, "lenet_bn": 128, "resnet": 64}
# The convnets of examples/ and the peer scripts of bench/peers/ that build them.
EXAMPLE = {"lenet_bn": "lenet5.nn", "resnet": "mnist_resnet.nn"}
LOCAL_PEERS = os.path.join(ROOT, "bench", "peers")
CONVNETS = ("cnn",) + tuple(EXAMPLE)


def mlp_step_flop(width, batch):
    """FLOPs (2 per multiply-add) of one MLP train step, 784 -> width -> 10: the forward
    products, both weight gradients and the hidden layer's input gradient."""
    return 2 * batch * (2 * 784 * width + 3 * width * 10)


def run_with_rss(cmd):
    """Runs cmd under os.wait4 to get the child's own peak RSS (MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(f"failed ({proc.returncode}): {' '.join(cmd)}\n")
        return None, wall, None
    return out, wall, usage.ru_maxrss / 1024.0


# ---- data for nnc -------------------------------------------------------------------

def write_seed(folder):
    src = os.path.join(DATA, "breast_cancer.csv")
    with open(src) as f:
        header = f.readline().strip().split(",")
        rows = [line.strip().split(",") for line in f if line.strip()]
    cols = [header.index(c) for c in ("mean_radius", "mean_texture", "mean_perimeter", "benign")]
    path = os.path.join(folder, "seed100k.csv")
    with open(path, "w") as f:
        f.write("mean_radius,mean_texture,mean_perimeter,benign\n")
        for i in range(SEED_ROWS):
            r = rows[i % len(rows)]
            f.write(",".join(r[c] for c in cols) + "\n")
    nn = os.path.join(folder, "seed.nn")
    with open(nn, "w") as f:
        f.write("""model seed {
    input features: [3]
    hidden_layer = dense(5, activation = relu)
    output_layer = dense(1, activation = sigmoid)
}
train {
    data = csv("seed100k.csv", target = "benign",
               features = ["mean_radius", "mean_texture", "mean_perimeter"], standardize = true)
    loss = binary_crossentropy
    optimizer = adam(learning_rate = 0.001)
    metrics = [accuracy]
    epochs = 2
    batch_size = 32
}
""")
    return nn


def write_mnist_subset(folder, rows):
    """The first `rows` training images and labels as raw IDX files."""
    with gzip.open(os.path.join(DATA, "mnist", "train-images-idx3-ubyte.gz")) as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        pixels = f.read(rows * h * w)
    with gzip.open(os.path.join(DATA, "mnist", "train-labels-idx1-ubyte.gz")) as f:
        f.read(8)
        labels = f.read(rows)
    with open(os.path.join(folder, "images.idx"), "wb") as f:
        f.write(struct.pack(">IIII", magic, rows, h, w) + pixels)
    with open(os.path.join(folder, "labels.idx"), "wb") as f:
        f.write(struct.pack(">II", 0x801, rows) + labels)


def write_mlp(folder, width=128, name="mlp.nn"):
    nn = os.path.join(folder, name)
    mnist = os.path.join(DATA, "mnist")
    with open(nn, "w") as f:
        f.write(f"""model mlp {{
    input image: [784]
    dense({width}, activation = relu)
    dense(10, activation = softmax)
}}
train {{
    data = mnist("{mnist}", subset = "train")
    loss = sparse_categorical_crossentropy
    optimizer = adam
    metrics = [accuracy]
    epochs = 2
    batch_size = 128
}}
""")
    return nn


def write_cnn(folder, rows):
    write_mnist_subset(folder, rows)
    nn = os.path.join(folder, "cnn.nn")
    with open(nn, "w") as f:
        f.write("""model cnn {
    input image: [28, 28, 1]
    conv2d(32, kernel_size = 3, activation = relu)
    maxpool2d(pool_size = 2)
    conv2d(64, kernel_size = 3, activation = relu)
    maxpool2d(pool_size = 2)
    flatten
    dropout(0.5)
    dense(10, activation = softmax)
}
train {
    data = idx(images = "images.idx", labels = "labels.idx")
    loss = sparse_categorical_crossentropy
    optimizer = adam
    metrics = [accuracy]
    epochs = 2
    batch_size = 128
}
""")
    return nn


def write_example(folder, model, rows):
    """examples/<model>.nn's model block, training on the first `rows` images."""
    write_mnist_subset(folder, rows)
    with open(os.path.join(ROOT, "examples", EXAMPLE[model])) as f:
        text = f.read()
    nn = os.path.join(folder, f"{model}.nn")
    with open(nn, "w") as f:
        f.write(text[:text.index("\ntrain {")] + f"""
train {{
    data = idx(images = "images.idx", labels = "labels.idx")
    loss = sparse_categorical_crossentropy
    optimizer = adam
    metrics = [accuracy]
    epochs = 2
    batch_size = {BATCH[model]}
}}
""")
    return nn


# ---- runners ------------------------------------------------------------------------

def nnc_once(nn, epochs, threads, batch=None):
    cmd = [NNC, "run", nn, "--json", "--epochs", str(epochs), "--threads", str(threads)]
    if batch:
        cmd += ["--batch-size", str(batch)]
    out, wall, rss = run_with_rss(cmd)
    if out is None:
        return None
    events = [json.loads(line) for line in out.splitlines() if line.strip()]
    compile_s = next(e["seconds"] for e in events if e["event"] == "compile")
    epochs_s = [e["seconds"] for e in events if e["event"] == "epoch"]
    return {"compile_s": compile_s, "epoch_s": statistics.median(epochs_s), "rss_mb": rss,
            "loss": [e["loss"] for e in events if e["event"] == "epoch"][-1]}


def peer_once(script, model, epochs, threads, rows):
    folder = LOCAL_PEERS if model in EXAMPLE else PEERS
    cmd = [PY, os.path.join(folder, script), "--model", model, "--epochs", str(epochs),
           "--threads", str(threads)]
    if rows:
        cmd += ["--train-rows", str(rows)]
    out, wall, rss = run_with_rss(cmd)
    if out is None:
        return None
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    return {"compile_s": r["compile_or_first_epoch_s"], "epoch_s": r["median_epoch_s"],
            "rss_mb": rss, "loss": r.get("final_train_loss")}


def available(peers):
    """The peers whose framework the venv can import (PyTorch is an optional 7 GB)."""
    module = {"keras": "keras", "jax": "jax", "torch": "torch"}
    found = []
    for p in peers:
        probe = subprocess.run([PY, "-c", f"import {module.get(p, p)}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if probe.returncode == 0:
            found.append(p)
        else:
            print(f"(peer {p} skipped: the venv cannot import {module.get(p, p)})")
    return found


def median_of(runs):
    runs = [r for r in runs if r]
    if not runs:
        return None
    return {k: statistics.median(r[k] for r in runs if r[k] is not None)
            for k in ("compile_s", "epoch_s", "rss_mb")} | {"n": len(runs)}


def steps(model, rows):
    return -(-rows // BATCH[model])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["seed", "mlp", "cnn"],
                    choices=["seed", "mlp", "cnn", "lenet_bn", "resnet"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3, help="nnc epochs per run (peers: +1 warm-up)")
    ap.add_argument("--cnn-rows", type=int, default=60000)
    ap.add_argument("--cnn-epochs", type=int, default=1,
                    help="nnc epochs per convnet run (a full epoch is long; peers: +1 warm-up)")
    ap.add_argument("--peers", nargs="*", default=["keras", "jax", "torch"])
    ap.add_argument("--scaling", action="store_true", help="only the nnc MLP width x batch table")
    args = ap.parse_args()
    if not os.path.exists(NNC):
        sys.exit(f"{NNC} is missing: run `cargo build --release` (bench/compare.sh does)")
    have_peers = os.path.exists(PY) and os.path.isdir(PEERS)
    if not have_peers:
        print(f"(no peers: {PY} or {PEERS} is missing; nnc only)\n")
    else:
        args.peers = available(args.peers)
    tmp = tempfile.mkdtemp(prefix="nnc-bench-")

    if args.scaling:
        scaling(tmp, args)
        return

    files = {}
    rows = {"seed": SEED_ROWS, "mlp": 60000} | {m: args.cnn_rows for m in CONVNETS}
    for m in args.models:
        files[m] = {"seed": lambda: write_seed(tmp), "mlp": lambda: write_mlp(tmp),
                    "cnn": lambda: write_cnn(tmp, args.cnn_rows),
                    "lenet_bn": lambda: write_example(tmp, "lenet_bn", args.cnn_rows),
                    "resnet": lambda: write_example(tmp, "resnet", args.cnn_rows)}[m]()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          f"medians of {args.runs} runs; nnc epoch = median epoch + compile time\n")
    print("| model | threads | framework | epoch s | steps/s | first epoch / compile s | peak RSS MB | nnc ratio |")
    print("|---|--:|---|--:|--:|--:|--:|--:|")
    # results[model][threads][framework] = medians
    results = {}
    for m in args.models:
        epochs = args.cnn_epochs if m in CONVNETS else args.epochs
        for t in args.threads:
            res = {}
            res["nnc"] = median_of([nnc_once(files[m], epochs, t) for _ in range(args.runs)])
            if res["nnc"]:
                res["nnc"]["epoch_s"] += res["nnc"]["compile_s"]
            if have_peers:
                for p in args.peers:
                    script = f"{p}_convnets.py" if m in EXAMPLE else f"{p}_bench.py"
                    if not os.path.exists(os.path.join(LOCAL_PEERS if m in EXAMPLE else PEERS, script)):
                        continue
                    extra_rows = args.cnn_rows if m in CONVNETS else None
                    res[p] = median_of([peer_once(script, m, epochs + 1, t, extra_rows)
                                        for _ in range(args.runs)])
            results.setdefault(m, {})[t] = res
            peers = {k: v for k, v in res.items() if k != "nnc" and v}
            leanest = min((v["rss_mb"] for v in peers.values() if v["rss_mb"]), default=None)
            for name, r in res.items():
                if not r:
                    print(f"| {m} | {t} | {name} | failed | | | | |")
                    continue
                ratio = ""
                if name == "nnc" and peers:
                    ratio = ", ".join(f"nnc/{p} {r['epoch_s'] / v['epoch_s']:.3g}x"
                                      for p, v in peers.items())
                    if leanest:
                        ratio += f", mem {r['rss_mb'] / leanest:.2f}x leanest"
                print(f"| {m} | {t} | {name} | {r['epoch_s']:.4f} | {steps(m, rows[m]) / r['epoch_s']:,.0f} "
                      f"| {r['compile_s']:.4f} | {r['rss_mb']:.0f} | {ratio} |")
            if m == "mlp" and res["nnc"]:
                flop = mlp_step_flop(128, 128) * steps("mlp", 60000)
                print(f"|  |  | nnc GFLOP/s | {flop / res['nnc']['epoch_s'] / 1e9:.1f} "
                      f"({flop / 1e9:.1f} GFLOP per epoch) | | | | |")
            sys.stdout.flush()
    summary(results, args)


def summary(results, args):
    """The ratios the performance goals are stated in: nnc's epoch time over each
    peer's (below 1: nnc is faster) and nnc's speedup from the fewest threads to the
    most, per model."""
    print("\n| model | threads | nnc/keras | nnc/jax | nnc/torch |")
    print("|---|--:|--:|--:|--:|")
    for m, by_threads in results.items():
        for t, res in by_threads.items():
            cells = []
            for p in ("keras", "jax", "torch"):
                if res.get("nnc") and res.get(p):
                    cells.append(f"{res['nnc']['epoch_s'] / res[p]['epoch_s']:.3g}")
                else:
                    cells.append("")
            print(f"| {m} | {t} | " + " | ".join(cells) + " |")
    lo, hi = min(args.threads), max(args.threads)
    if lo == hi:
        return
    print(f"\n| model | nnc {lo} thread(s) s | nnc {hi} threads s | speedup {hi}/{lo} |")
    print("|---|--:|--:|--:|")
    for m, by_threads in results.items():
        a, b = by_threads.get(lo, {}).get("nnc"), by_threads.get(hi, {}).get("nnc")
        if a and b:
            print(f"| {m} | {a['epoch_s']:.4f} | {b['epoch_s']:.4f} | {a['epoch_s'] / b['epoch_s']:.2f}x |")


def scaling(tmp, args):
    print(f"load average before: {os.getloadavg()[0]:.2f}; nnc MLP 784 -> width relu -> 10, "
          f"Adam, one epoch of 60,000 images; median of {args.runs} runs\n")
    print("| width | batch | threads | epoch s | GFLOP/s | compile ms | peak RSS MB |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    for width in (128, 512, 2048):
        nn = write_mlp(tmp, width, f"mlp{width}.nn")
        for batch in (32, 128, 512, 1024):
            for t in args.threads:
                r = median_of([nnc_once(nn, 1, t, batch) for _ in range(args.runs)])
                if not r:
                    continue
                flop = mlp_step_flop(width, batch) * (60000 / batch)
                print(f"| {width} | {batch} | {t} | {r['epoch_s']:.3f} | {flop / r['epoch_s'] / 1e9:.1f} "
                      f"| {r['compile_s'] * 1e3:.1f} | {r['rss_mb']:.0f} |")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
