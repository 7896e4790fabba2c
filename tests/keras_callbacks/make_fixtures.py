#!/usr/bin/env python3
"""Makes the fixtures `tests/keras_callbacks.rs` checks nnc's callbacks against.

Run from the repository root with Keras 3 (TensorFlow backend) installed:

    python tests/keras_callbacks/make_fixtures.py
    nnc fmt tests/keras_callbacks/*/model.nn

Each case trains one small dense model with Keras's `model.fit` (`shuffle=False`,
batches in file order) from initial weights drawn here, with a validation set and
Keras's callbacks, and writes under tests/keras_callbacks/CASE/:
  model.nn             the same model, data and callbacks in nnc's language (run with
                       `--init init.safetensors`; data paths relative to the file)
  init.safetensors     the initial weights (glorot uniform kernels, small biases)
  keras.safetensors    the weights Keras ends with (after `restore_best_weights`)
  keras.json           Keras's per-epoch history (`loss`, `val_loss`, ...), the epoch
                       early stopping stopped after and the epoch whose weights it
                       restored (both counted from 1, as nnc prints epochs; `null`
                       when it did not stop), the epochs after which
                       ReduceLROnPlateau lowered the rate and the new rates, the
                       epochs ModelCheckpoint saved, the epoch and batch whose loss
                       TerminateOnNaN stopped at, and the header CSVLogger wrote.
The validation sets are written to tests/keras_callbacks/data/, on the same grid of
multiples of 2^-10 as tests/keras_parity/data, so any parser reads the same float32.
"""
import csv
import json
import os
import struct
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PARITY = os.path.join(ROOT, "tests", "keras_parity", "data")
GRID = 1024.0


def on_grid(a):
    return np.round(np.asarray(a, dtype=np.float64) * GRID) / GRID


def read_csv(path):
    rows = list(csv.reader(open(path)))
    return rows[0], np.array([[float(v) for v in r] for r in rows[1:]], dtype=np.float64)


def write_csv(path, header, x, y, integer_target):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for a, b in zip(x, y):
            w.writerow([repr(float(v)) for v in a] + [int(b) if integer_target else repr(float(b))])


def make_data():
    """Validation rows the training files of tests/keras_parity/data do not hold."""
    os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
    # breast_cancer: the same 4 z-scored features, every 7th row from row 3 on.
    header, bc = read_csv(os.path.join(ROOT, "examples", "data", "breast_cancer.csv"))
    cols = [header.index(c) for c in ("mean_radius", "mean_texture", "mean_smoothness", "mean_concavity")]
    x = bc[:, cols]
    x = on_grid((x - x.mean(axis=0)) / x.std(axis=0))[3::7][:60]
    y = bc[3::7, -1][:60]
    write_csv(os.path.join(HERE, "data", "breast_cancer_val.csv"),
              [header[c] for c in cols] + ["benign"], x, y, True)
    # regression: the same function and noise as the training rows, another draw.
    rng = np.random.default_rng(12)
    x = on_grid(rng.uniform(-2, 2, size=(40, 3)))
    y = on_grid(np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 2] + rng.normal(0, 0.1, 40))
    write_csv(os.path.join(HERE, "data", "regression_val.csv"), ["x0", "x1", "x2", "y"], x, y, False)
    # iris: the 60 rows the training file leaves out, in a fixed random order.
    header, ir = read_csv(os.path.join(ROOT, "examples", "data", "iris.csv"))
    order = np.random.default_rng(1).permutation(len(ir))[90:]
    x = on_grid((ir[:, :4] - ir[:, :4].mean(axis=0)) / ir[:, :4].std(axis=0))[order]
    write_csv(os.path.join(HERE, "data", "iris_val.csv"), header, x, ir[order, -1], True)


# Each case: training file (tests/keras_parity/data), validation file, target,
# layers [[units, activation]], loss, optimizer, epochs, batch size, metrics, and the
# callbacks as (Keras class, keyword arguments).
CASES = {
    "early_stopping_restore": dict(
        data="breast_cancer.csv", validation="breast_cancer_val.csv", target="benign",
        layers=[[16, "relu"], [1, "sigmoid"]], loss="binary_crossentropy",
        optimizer=dict(name="adam", learning_rate=0.01), epochs=60, batch_size=16, metrics=[],
        callbacks=[("EarlyStopping", dict(monitor="val_loss", patience=3, restore_best_weights=True)),
                   ("ModelCheckpoint", dict(filepath="best.keras", save_best_only=True)),
                   ("CSVLogger", dict(filename="log.csv"))]),
    "early_stopping_accuracy": dict(
        data="iris.csv", validation="iris_val.csv", target="species",
        layers=[[8, "tanh"], [3, "softmax"]], loss="sparse_categorical_crossentropy",
        optimizer=dict(name="sgd", learning_rate=0.05), epochs=80, batch_size=16, metrics=["accuracy"],
        callbacks=[("EarlyStopping", dict(monitor="val_accuracy", patience=4, min_delta=0.01,
                                          start_from_epoch=3))]),
    "reduce_lr_on_plateau": dict(
        data="regression.csv", validation="regression_val.csv", target="y",
        layers=[[8, "tanh"], [1, "linear"]], loss="mse",
        optimizer=dict(name="sgd", learning_rate=0.2), epochs=40, batch_size=16, metrics=["mae"],
        callbacks=[("ReduceLROnPlateau", dict(monitor="val_loss", factor=0.5, patience=2, cooldown=1,
                                              min_delta=0.01, min_lr=0.02)),
                   ("CSVLogger", dict(filename="log.csv"))]),
    # SGD with momentum at a rate the data cannot take: the loss overflows.
    "terminate_on_nan": dict(
        data="regression.csv", validation="regression_val.csv", target="y",
        layers=[[16, "relu"], [1, "linear"]], loss="mse",
        optimizer=dict(name="sgd", learning_rate=0.2, momentum=0.9), epochs=50, batch_size=8,
        metrics=[], callbacks=[("TerminateOnNaN", {})]),
}

# How nnc spells each Keras callback and argument.
NNC_CALLBACK = {"EarlyStopping": "early_stopping", "ReduceLROnPlateau": "reduce_lr_on_plateau",
                "CSVLogger": "csv_logger", "TerminateOnNaN": "terminate_on_nan"}


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def nnc_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    return repr(v)


def nnc_source(name, case):
    layers = "\n".join(f"    dense({u}, activation = {a})" for u, a in case["layers"])
    o = case["optimizer"]
    opt = ", ".join(f"{k} = {nnc_value(v)}" for k, v in o.items() if k != "name")
    callbacks = []
    for cls, args in case["callbacks"]:
        if cls == "CSVLogger":
            callbacks.append(f'csv_logger("{args["filename"]}")')
        elif cls == "ModelCheckpoint":
            path = args["filepath"].replace(".keras", ".safetensors")
            callbacks.append(f'model_checkpoint("{path}", save_best_only = '
                             f'{nnc_value(args["save_best_only"])})')
        elif not args:
            callbacks.append(NNC_CALLBACK[cls])
        else:
            callbacks.append(f"{NNC_CALLBACK[cls]}(" +
                             ", ".join(f"{k} = {nnc_value(v)}" for k, v in args.items()) + ")")
    metrics = f"\n    metrics = [{', '.join(case['metrics'])}]" if case["metrics"] else ""
    return f"""# {name}: made by make_fixtures.py with the Keras run in keras.json.
model {name} {{
    input x: [{len(read_csv(os.path.join(PARITY, case['data']))[0]) - 1}]
{layers}
}}

train {{
    data = csv("../../keras_parity/data/{case['data']}", target = "{case['target']}")
    validation_data = csv("../data/{case['validation']}", target = "{case['target']}")
    loss = {case['loss']}
    optimizer = {o['name']}({opt}){metrics}
    epochs = {case['epochs']}
    batch_size = {case['batch_size']}
    shuffle = false
    callbacks = [{', '.join(callbacks)}]
}}
"""


def xy(path, loss, classes):
    _, data = read_csv(path)
    x = data[:, :-1].astype("float32")
    if loss == "sparse_categorical_crossentropy":
        return x, data[:, -1].astype("int32")
    return x, data[:, -1].astype("float32")[:, None]


def make_case(keras, name, case, index):
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    classes = case["layers"][-1][0]
    x, y = xy(os.path.join(PARITY, case["data"]), case["loss"], classes)
    vx, vy = xy(os.path.join(HERE, "data", case["validation"]), case["loss"], classes)

    rng = np.random.default_rng(200 + index)
    init, fan_in, names = {}, x.shape[1], []
    for i, (units, _) in enumerate(case["layers"]):
        lname = "dense" if i == 0 else f"dense_{i}"
        names.append(lname)
        limit = np.sqrt(6.0 / (fan_in + units))
        init[f"{lname}.kernel"] = rng.uniform(-limit, limit, (fan_in, units)).astype("float32")
        init[f"{lname}.bias"] = rng.uniform(-0.1, 0.1, units).astype("float32")
        fan_in = units
    write_safetensors(os.path.join(folder, "init.safetensors"), init)
    with open(os.path.join(folder, "model.nn"), "w") as f:
        f.write(nnc_source(name, case))

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],))] +
                             [keras.layers.Dense(u, activation=a, name=n)
                              for (u, a), n in zip(case["layers"], names)])
    model.set_weights([init[f"{n}.{k}"] for n in names for k in ("kernel", "bias")])
    o = dict(case["optimizer"])
    opt = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}[o.pop("name")](**o)
    model.compile(loss=case["loss"], optimizer=opt, metrics=case["metrics"])
    log = os.path.join(folder, "keras_log.csv")
    best = os.path.join(folder, "keras_best.keras")
    callbacks, saved, nan_at, epoch = [], [], [], [0]
    for cls, args in case["callbacks"]:
        if cls == "CSVLogger":
            args = dict(args, filename=log)
        if cls == "ModelCheckpoint":
            args = dict(args, filepath=best)
        callbacks.append(getattr(keras.callbacks, cls)(**args))
    # Which epochs ModelCheckpoint saved (its `best` changed), and the first batch whose
    # logged loss was not finite (what TerminateOnNaN reads), both counted from 1.
    checkpoint = next((c for c in callbacks if isinstance(c, keras.callbacks.ModelCheckpoint)), None)
    last = [None]

    def on_epoch_end(e, logs):
        if checkpoint is not None and checkpoint.best != last[0]:
            saved.append(e + 1)
            last[0] = checkpoint.best

    def on_batch_end(b, logs):
        if not nan_at and not np.isfinite(logs.get("loss", 0.0)):
            nan_at.extend([epoch[0] + 1, b + 1])

    callbacks.append(keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: epoch.__setitem__(0, e),
        on_epoch_end=on_epoch_end, on_train_batch_end=on_batch_end))
    hist = model.fit(x, y, batch_size=case["batch_size"], epochs=case["epochs"], shuffle=False,
                     validation_data=(vx, vy), callbacks=callbacks, verbose=0)
    final = {}
    for n in names:
        final[f"{n}.kernel"], final[f"{n}.bias"] = model.get_layer(n).get_weights()
    write_safetensors(os.path.join(folder, "keras.safetensors"), final)

    # JSON has no NaN or infinity: a non-finite value is written `null`.
    history = {k: [float(v) if np.isfinite(v) else None for v in vs] for k, vs in hist.history.items()}
    out = dict(keras_version=keras.__version__, backend=keras.backend.backend(),
               epochs_run=len(history["loss"]), history=history)
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.EarlyStopping):
            out["stopped_after"] = cb.stopped_epoch + 1 if cb.stopped_epoch > 0 else None
            out["restored_epoch"] = cb.best_epoch + 1 if cb.restore_best_weights else None
        if isinstance(cb, keras.callbacks.ReduceLROnPlateau):
            rates = history["learning_rate"]
            # `learning_rate` in epoch E's logs is the rate E trained with.
            out["reductions"] = [[e + 1, rates[e + 1]] for e in range(len(rates) - 1)
                                 if rates[e + 1] != rates[e]]
    if checkpoint is not None:
        out["checkpoint_epochs"] = saved
        os.remove(best)
    if nan_at:
        out["nan_at"] = nan_at
    if os.path.exists(log):
        with open(log, newline="") as f:
            out["csv_header"] = f.readline().rstrip("\r\n")
        os.remove(log)
    with open(os.path.join(folder, "keras.json"), "w") as f:
        json.dump(out, f, indent=1, allow_nan=False)
        f.write("\n")
    print(f"{name}: ran {out['epochs_run']} epochs, stopped after {out.get('stopped_after')}, "
          f"restored {out.get('restored_epoch')}, reductions {out.get('reductions')}")
    # How far the decisive comparisons are from a tie, relative: a decision this
    # close could go the other way on float32 noise.
    for key in ("val_loss", "val_accuracy"):
        v = np.array([x for x in history.get(key, []) if x is not None])
        if len(v) > 1:
            gaps = np.abs(np.diff(v)) / np.maximum(np.abs(v[1:]), 1e-12)
            nonzero = gaps[gaps > 0]
            print(f"  smallest nonzero relative change of {key}: {nonzero.min() if len(nonzero) else 0:.2e}")


def main():
    make_data()
    import keras

    wanted = sys.argv[1:]
    for i, (name, case) in enumerate(CASES.items()):
        if not wanted or name in wanted:
            make_case(keras, name, case, i)


if __name__ == "__main__":
    main()
