#!/usr/bin/env python3
"""Makes the Keras parity fixtures that `tests/keras_parity.rs` checks nnc against.

Run from the repository root with Keras 3 (TensorFlow backend) installed:

    python tests/keras_parity/make_fixtures.py

It writes, under tests/keras_parity/:
  data/*.csv              small training sets (header row, target last). Every value is
                          a multiple of 2^-10 printed exactly, so any parser gets the
                          same float32.
  CASE/init.safetensors   float32 `LAYER.kernel` [in, out] / `LAYER.bias` [out], drawn
                          once with numpy (glorot uniform kernels, small random biases),
                          and the other layers' weights in Keras's layout and names
                          (`gamma`/`beta` near 1/0, `embeddings`, conv1d's [k, in, out]).
  CASE/keras.safetensors  the weights Keras ends with after training from init.
  CASE/spec.json          the model, loss, optimizer, epochs, batch size, data file, and
                          Keras's per-epoch losses (`keras_epoch_losses`: Keras's `loss`
                          history, a batch-size-weighted mean of the batch losses).
  activations.json        for every activation Keras and nnc share (softmax aside), the
                          value and TensorFlow's derivative at fixed float32 inputs.

Training: `model.fit(shuffle=False)`, batches in file order, the last one smaller.
Layers are named as nnc names them (`dense`, `dense_1`, ..., `activation`, ...).

  metrics.json            Keras's precision, recall, AUC and top-k accuracy on fixed
                          predictions and targets.

Arguments: names of cases (or `activations`, `metrics`) to write only those; none
writes all.
"""
import csv
import json
import os
import re
import struct
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GRID = 1024.0


def on_grid(a):
    return np.round(np.asarray(a, dtype=np.float64) * GRID) / GRID


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([repr(float(v)) for v in r[:-1]] + [r[-1]])


def read_csv(path):
    rows = list(csv.reader(open(path)))
    return rows[0], np.array([[float(v) for v in r] for r in rows[1:]], dtype=np.float64)


def zscore(x):
    return (x - x.mean(axis=0)) / x.std(axis=0)


def make_data():
    os.makedirs(os.path.join(HERE, "data"), exist_ok=True)
    # breast_cancer: 4 z-scored features, every 7th of the 569 rows (both classes mixed).
    header, bc = read_csv(os.path.join(ROOT, "examples", "data", "breast_cancer.csv"))
    cols = [header.index(c) for c in ("mean_radius", "mean_texture", "mean_smoothness", "mean_concavity")]
    x = on_grid(zscore(bc[:, cols]))[::7][:80]
    y = bc[::7, -1][:80].astype(int)
    write_csv(os.path.join(HERE, "data", "breast_cancer.csv"),
              [header[c] for c in cols] + ["benign"], [list(a) + [int(b)] for a, b in zip(x, y)])
    # iris: 4 z-scored features, 90 rows in a fixed random order (the file is sorted by class).
    header, ir = read_csv(os.path.join(ROOT, "examples", "data", "iris.csv"))
    order = np.random.default_rng(1).permutation(len(ir))[:90]
    x = on_grid(zscore(ir[:, :4]))[order]
    y = ir[order, -1].astype(int)
    write_csv(os.path.join(HERE, "data", "iris.csv"), header,
              [list(a) + [int(b)] for a, b in zip(x, y)])
    # regression: y = sin(x0) + 0.5 x1 x2 - 0.3 x2 + noise, 72 rows.
    rng = np.random.default_rng(2)
    x = on_grid(rng.uniform(-2, 2, size=(72, 3)))
    y = on_grid(np.sin(x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] - 0.3 * x[:, 2] + rng.normal(0, 0.1, 72))
    write_csv(os.path.join(HERE, "data", "regression.csv"), ["x0", "x1", "x2", "y"],
              [list(a) + [repr(float(b))] for a, b in zip(x, y)])
    # digit_tokens: every 20th 8x8 digit, its 64 intensities (whole numbers 0..16) as
    # token ids.
    header, dg = read_csv(os.path.join(ROOT, "examples", "data", "digits.csv"))
    rows = dg[::20][:90]
    write_csv(os.path.join(HERE, "data", "digit_tokens.csv"), header,
              [list(r[:-1]) + [int(r[-1])] for r in rows])


# Each case: data file, layers, loss, optimizer (all hyperparameters explicit: nnc's
# defaults where not chosen), epochs, batch size (never dividing the row count), and
# optionally `init_scale`, a factor on the glorot limit of the initial kernels.
# Initial weights are drawn with seed 100 + the case's index: add new cases at the end.
SGD = dict(name="sgd", learning_rate=0.05, momentum=0.0, nesterov=False)
ADAM = dict(name="adam", learning_rate=0.05, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
CASES = {
    "bc_sgd_relu": dict(data="breast_cancer.csv", layers=[[8, "relu"], [1, "sigmoid"]],
                        loss="binary_crossentropy", optimizer=SGD, epochs=3, batch_size=24),
    "bc_momentum_tanh": dict(data="breast_cancer.csv", layers=[[6, "tanh"], [1, "sigmoid"]],
                             loss="binary_crossentropy",
                             optimizer=dict(SGD, momentum=0.9), epochs=3, batch_size=32),
    "bc_nesterov_elu": dict(data="breast_cancer.csv", layers=[[8, "elu"], [5, "softplus"], [1, "sigmoid"]],
                            loss="binary_crossentropy",
                            optimizer=dict(SGD, momentum=0.8, nesterov=True), epochs=3, batch_size=18),
    "bc_adam_leaky_relu": dict(data="breast_cancer.csv",
                               layers=[[8, "linear"], ["leaky_relu", 0.3], [1, "linear"], ["sigmoid"]],
                               loss="binary_crossentropy", optimizer=ADAM, epochs=3, batch_size=24),
    "iris_adam_sparse_relu": dict(data="iris.csv", layers=[[8, "relu"], [3, "softmax"]],
                                  loss="sparse_categorical_crossentropy", optimizer=ADAM,
                                  epochs=3, batch_size=16),
    "iris_adamw_categorical_gelu": dict(data="iris.csv", layers=[[8, "gelu"], [3, "softmax"]],
                                        loss="categorical_crossentropy",
                                        optimizer=dict(ADAM, name="adamw", weight_decay=0.004),
                                        epochs=3, batch_size=16),
    "iris_rmsprop_sparse_silu": dict(data="iris.csv", layers=[[6, "silu"], [3, "softmax"]],
                                     loss="sparse_categorical_crossentropy",
                                     optimizer=dict(name="rmsprop", learning_rate=0.01, rho=0.9, epsilon=1e-7),
                                     epochs=3, batch_size=20),
    "iris_sgd_categorical_sigmoid": dict(data="iris.csv", layers=[[7, "sigmoid"], [3, "linear"], ["softmax"]],
                                         loss="categorical_crossentropy",
                                         optimizer=dict(SGD, learning_rate=0.1), epochs=3, batch_size=25),
    "reg_mse_sgd_tanh": dict(data="regression.csv", layers=[[8, "tanh"], [1, "linear"]],
                             loss="mse", optimizer=SGD, epochs=3, batch_size=20),
    "reg_mae_adam_softplus": dict(data="regression.csv", layers=[[8, "softplus"], [1, "linear"]],
                                  loss="mae", optimizer=ADAM, epochs=3, batch_size=20),
    "reg_huber_rmsprop_sigmoid": dict(data="regression.csv", layers=[[8, "sigmoid"], [1, "linear"]],
                                      loss="huber",
                                      optimizer=dict(name="rmsprop", learning_rate=0.01, rho=0.9, epsilon=1e-7),
                                      epochs=3, batch_size=17),
    "reg_mse_adamw_gelu_silu": dict(data="regression.csv", layers=[[8, "gelu"], [6, "silu"], [1, "linear"]],
                                    loss="mse", optimizer=dict(ADAM, name="adamw", learning_rate=0.02,
                                                               weight_decay=0.004),
                                    epochs=4, batch_size=32),
    # Betas whose `1 - beta` is exact in float32: nnc computes `1 - beta` in float32,
    # Keras in Python's float64 before the cast, which for 0.999 differs by 1.3e-5.
    "iris_adam_exact_betas_tanh": dict(data="iris.csv", layers=[[8, "tanh"], [3, "softmax"]],
                                       loss="sparse_categorical_crossentropy",
                                       optimizer=dict(ADAM, beta_1=0.875, beta_2=0.9990234375),
                                       epochs=3, batch_size=16),
    # The activations Keras has beyond the ones above, one case each.
    "reg_mse_sgd_selu": dict(data="regression.csv", layers=[[8, "selu"], [1, "linear"]],
                             loss="mse", optimizer=SGD, epochs=3, batch_size=20),
    "bc_adam_softsign": dict(data="breast_cancer.csv", layers=[[8, "softsign"], [1, "sigmoid"]],
                             loss="binary_crossentropy", optimizer=ADAM, epochs=3, batch_size=22),
    # Twice the usual kernels, so that many pre-activations fall outside [-3, 3],
    # where hard_sigmoid is flat and passes no gradient.
    "iris_rmsprop_sparse_hard_sigmoid": dict(data="iris.csv", layers=[[8, "hard_sigmoid"], [3, "softmax"]],
                                             loss="sparse_categorical_crossentropy",
                                             optimizer=dict(name="rmsprop", learning_rate=0.01, rho=0.9,
                                                            epsilon=1e-7),
                                             epochs=3, batch_size=20, init_scale=2.0),
    "reg_mae_adam_mish": dict(data="regression.csv", layers=[[8, "linear"], ["mish"], [1, "linear"]],
                              loss="mae", optimizer=ADAM, epochs=3, batch_size=16),
    # Small kernels keep exp moderate (pre-activations within about [-2, 2]).
    "reg_huber_nesterov_exponential": dict(data="regression.csv", layers=[[6, "exponential"], [1, "linear"]],
                                           loss="huber",
                                           optimizer=dict(SGD, learning_rate=0.02, momentum=0.8, nesterov=True),
                                           epochs=3, batch_size=20, init_scale=0.3),
    "iris_adamw_categorical_swish": dict(data="iris.csv", layers=[[8, "swish"], [3, "softmax"]],
                                         loss="categorical_crossentropy",
                                         optimizer=dict(ADAM, name="adamw", learning_rate=0.02,
                                                        weight_decay=0.004),
                                         epochs=3, batch_size=25),
    # Learning-rate schedules (an optimizer's `learning_rate` given as a dict naming the
    # schedule, as nnc's `learning_rate = exponential_decay(...)`) and gradient clipping.
    "reg_sgd_exponential_decay": dict(data="regression.csv", layers=[[8, "tanh"], [1, "linear"]],
                                      loss="mse",
                                      optimizer=dict(SGD, learning_rate=dict(
                                          schedule="exponential_decay", initial_learning_rate=0.1,
                                          decay_steps=3, decay_rate=0.5, staircase=False)),
                                      epochs=3, batch_size=20),
    "bc_adam_exponential_staircase": dict(data="breast_cancer.csv", layers=[[8, "relu"], [1, "sigmoid"]],
                                          loss="binary_crossentropy",
                                          optimizer=dict(ADAM, learning_rate=dict(
                                              schedule="exponential_decay", initial_learning_rate=0.05,
                                              decay_steps=4, decay_rate=0.3, staircase=True)),
                                          epochs=3, batch_size=24),
    "iris_sgd_cosine_warmup": dict(data="iris.csv", layers=[[8, "relu"], [3, "softmax"]],
                                   loss="sparse_categorical_crossentropy",
                                   optimizer=dict(SGD, momentum=0.9, learning_rate=dict(
                                       schedule="cosine_decay", initial_learning_rate=0.01,
                                       decay_steps=10, alpha=0.1, warmup_target=0.2, warmup_steps=4)),
                                   epochs=3, batch_size=16),
    "reg_adam_cosine_decay": dict(data="regression.csv", layers=[[8, "gelu"], [1, "linear"]],
                                  loss="mse",
                                  optimizer=dict(ADAM, learning_rate=dict(
                                      schedule="cosine_decay", initial_learning_rate=0.05,
                                      decay_steps=9, alpha=0.2)),
                                  epochs=3, batch_size=20),
    "bc_momentum_piecewise": dict(data="breast_cancer.csv", layers=[[6, "tanh"], [1, "sigmoid"]],
                                  loss="binary_crossentropy",
                                  optimizer=dict(SGD, momentum=0.9, learning_rate=dict(
                                      schedule="piecewise_constant_decay", boundaries=[3, 7],
                                      values=[0.1, 0.05, 0.01])),
                                  epochs=3, batch_size=24),
    "iris_rmsprop_inverse_time": dict(data="iris.csv", layers=[[6, "silu"], [3, "softmax"]],
                                      loss="sparse_categorical_crossentropy",
                                      optimizer=dict(name="rmsprop", rho=0.9, epsilon=1e-7, learning_rate=dict(
                                          schedule="inverse_time_decay", initial_learning_rate=0.02,
                                          decay_steps=2, decay_rate=0.7, staircase=True)),
                                      epochs=3, batch_size=20),
    "reg_sgd_polynomial": dict(data="regression.csv", layers=[[8, "tanh"], [1, "linear"]],
                               loss="huber",
                               optimizer=dict(SGD, learning_rate=dict(
                                   schedule="polynomial_decay", initial_learning_rate=0.2,
                                   decay_steps=7, end_learning_rate=0.01, power=2.0, cycle=False)),
                               epochs=3, batch_size=20),
    "iris_adamw_polynomial_cycle": dict(data="iris.csv", layers=[[8, "tanh"], [3, "softmax"]],
                                        loss="categorical_crossentropy",
                                        optimizer=dict(ADAM, name="adamw", weight_decay=0.004, learning_rate=dict(
                                            schedule="polynomial_decay", initial_learning_rate=0.05,
                                            decay_steps=4, end_learning_rate=0.005, power=0.5, cycle=True)),
                                        epochs=3, batch_size=16),
    "reg_sgd_clipnorm": dict(data="regression.csv", layers=[[8, "tanh"], [1, "linear"]],
                             loss="mse", optimizer=dict(SGD, learning_rate=0.1, clipnorm=0.3),
                             epochs=3, batch_size=20),
    "iris_adam_global_clipnorm": dict(data="iris.csv", layers=[[8, "relu"], [3, "softmax"]],
                                      loss="sparse_categorical_crossentropy",
                                      optimizer=dict(ADAM, global_clipnorm=0.2), epochs=3, batch_size=16),
    "bc_momentum_clipvalue": dict(data="breast_cancer.csv", layers=[[8, "elu"], [1, "sigmoid"]],
                                  loss="binary_crossentropy",
                                  optimizer=dict(SGD, momentum=0.9, clipvalue=0.02), epochs=3, batch_size=24),
    # Label smoothing (`loss = categorical_crossentropy(label_smoothing = ...)`).
    "iris_adam_categorical_smoothing": dict(data="iris.csv", layers=[[8, "relu"], [3, "softmax"]],
                                            loss="categorical_crossentropy", label_smoothing=0.2,
                                            optimizer=ADAM, epochs=3, batch_size=16),
    "bc_sgd_binary_smoothing": dict(data="breast_cancer.csv", layers=[[8, "tanh"], [1, "sigmoid"]],
                                    loss="binary_crossentropy", label_smoothing=0.3,
                                    optimizer=dict(SGD, learning_rate=0.1), epochs=3, batch_size=24),
    # Class weights (`class_weight = [...]` or `balanced`, given to fit as a dict).
    "iris_adam_class_weight": dict(data="iris.csv", layers=[[8, "relu"], [3, "softmax"]],
                                   loss="sparse_categorical_crossentropy", class_weight=[0.5, 3.0, 1.25],
                                   optimizer=ADAM, epochs=3, batch_size=16),
    "iris_sgd_categorical_class_weight": dict(data="iris.csv", layers=[[8, "tanh"], [3, "softmax"]],
                                              loss="categorical_crossentropy", class_weight=[2.0, 0.25, 1.0],
                                              optimizer=dict(SGD, learning_rate=0.1), epochs=3, batch_size=25),
    "bc_sgd_class_weight_balanced": dict(data="breast_cancer.csv", layers=[[8, "relu"], [1, "sigmoid"]],
                                         loss="binary_crossentropy", class_weight="balanced",
                                         optimizer=dict(SGD, learning_rate=0.1), epochs=3, batch_size=24),
    # Layer normalization between dense layers (Keras's LayerNormalization defaults).
    "iris_adam_layer_norm": dict(data="iris.csv",
                                 layers=[[8, "linear"], ["layer_norm"], ["relu"], [6, "tanh"],
                                         ["layer_norm"], [3, "softmax"]],
                                 loss="sparse_categorical_crossentropy", optimizer=ADAM,
                                 epochs=3, batch_size=16),
}

SCHEDULES = {
    "exponential_decay": "ExponentialDecay",
    "cosine_decay": "CosineDecay",
    "piecewise_constant_decay": "PiecewiseConstantDecay",
    "inverse_time_decay": "InverseTimeDecay",
    "polynomial_decay": "PolynomialDecay",
}

# A token model. SGD with momentum: Keras 3 on TensorFlow gets an embedding's
# gradient as tf.IndexedSlices, one slice per occurrence of a token, and Adam and
# RMSprop square the slices before summing them, so their second moments hold
# sum(g_i^2) rather than the square of the row's gradient (sum g_i)^2 whenever a
# token repeats in a batch; nnc updates with the row's gradient, as the optimizers
# define. SGD sums the slices first and agrees.
CASES["digits_embedding_conv1d_sgd"] = dict(
    data="digit_tokens.csv",
    layers=[["embedding", 17, 4], ["conv1d", 6, 5, 2, "same", "tanh"], ["global_avgpool1d"],
            [10, "softmax"]],
    loss="sparse_categorical_crossentropy", optimizer=dict(SGD, learning_rate=0.1, momentum=0.9),
    epochs=3, batch_size=16)

# The losses added after the cases above.
CASES["reg_log_cosh_adam_tanh"] = dict(data="regression.csv", layers=[[8, "tanh"], [1, "linear"]],
                                       loss="log_cosh", optimizer=ADAM, epochs=3, batch_size=20)
CASES["bc_poisson_adam_softplus"] = dict(data="breast_cancer.csv", layers=[[8, "relu"], [1, "softplus"]],
                                         loss="poisson", optimizer=ADAM, epochs=3, batch_size=24)
CASES["iris_kl_divergence_sgd_relu"] = dict(data="iris.csv", layers=[[8, "relu"], [3, "softmax"]],
                                            loss="kl_divergence", optimizer=dict(SGD, learning_rate=0.1),
                                            epochs=3, batch_size=16)

# Layers other than `dense` and the activations: a spec's first item is the nnc name.
WEIGHTED = {"layer_norm": ("gamma", "beta"), "embedding": ("embeddings",),
            "conv1d": ("kernel", "bias")}


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


def layer_base(spec):
    if isinstance(spec[0], int):
        return "dense"
    if spec[0] in WEIGHTED or spec[0].startswith("global_"):
        return spec[0]
    return "activation"


def named_layers(layers):
    """(name, layer spec) in nnc's naming: `dense`, `dense_1`, ..., `activation`, ...,
    and the other layers by their nnc name (`layer_norm`, `conv1d`, ...)."""
    counts, out = {}, []
    for spec in layers:
        base = layer_base(spec)
        n = counts.get(base, 0)
        counts[base] = n + 1
        out.append((base if n == 0 else f"{base}_{n}", spec))
    return out


def keras_layer(keras, name, spec):
    if isinstance(spec[0], int):
        return keras.layers.Dense(spec[0], activation=spec[1], name=name)
    if spec[0] == "layer_norm":
        return keras.layers.LayerNormalization(epsilon=0.001, name=name)
    if spec[0] == "embedding":
        return keras.layers.Embedding(spec[1], spec[2], name=name)
    if spec[0] == "conv1d":
        _, filters, kernel, strides, padding, activation = spec
        return keras.layers.Conv1D(filters, kernel, strides=strides, padding=padding,
                                   activation=activation, name=name)
    if spec[0] == "global_avgpool1d":
        return keras.layers.GlobalAveragePooling1D(name=name)
    if spec[0] == "global_maxpool1d":
        return keras.layers.GlobalMaxPooling1D(name=name)
    if spec[0] == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=spec[1], name=name)
    return keras.layers.Activation(spec[0], name=name)


def keras_optimizer(keras, o):
    args = {k: v for k, v in o.items() if k != "name"}
    lr = args.get("learning_rate")
    if isinstance(lr, dict):
        kwargs = {k: v for k, v in lr.items() if k != "schedule"}
        args["learning_rate"] = getattr(keras.optimizers.schedules, SCHEDULES[lr["schedule"]])(**kwargs)
    cls = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
           "adamw": keras.optimizers.AdamW, "rmsprop": keras.optimizers.RMSprop}[o["name"]]
    if o["name"] == "rmsprop":
        args.update(momentum=0.0, centered=False)
    return cls(**args)


def make_case(keras, name, case, index):
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    _, data = read_csv(os.path.join(HERE, "data", case["data"]))
    x = data[:, :-1].astype("float32")
    labels = data[:, -1]
    classes = case["layers"][-1][0] if isinstance(case["layers"][-1][0], int) else case["layers"][-2][0]
    if case["loss"] == "sparse_categorical_crossentropy":
        y = labels.astype("int32")
    elif case["loss"] in ("categorical_crossentropy", "kl_divergence"):
        y = np.eye(classes, dtype="float32")[labels.astype(int)]
    else:
        y = labels.astype("float32")[:, None]

    rng = np.random.default_rng(100 + index)
    init, shape = {}, [x.shape[1]]
    # Every layer's weights in Keras's order, by layer name.
    weights = {}
    for lname, spec in named_layers(case["layers"]):
        if isinstance(spec[0], int):
            fan_in = shape[-1]
            limit = np.sqrt(6.0 / (fan_in + spec[0])) * case.get("init_scale", 1.0)
            weights[lname] = {"kernel": rng.uniform(-limit, limit, (fan_in, spec[0])),
                              "bias": rng.uniform(-0.1, 0.1, spec[0])}
            shape = [spec[0]]
        elif spec[0] == "layer_norm":
            weights[lname] = {"gamma": rng.uniform(0.5, 1.5, shape[-1]),
                              "beta": rng.uniform(-0.1, 0.1, shape[-1])}
        elif spec[0] == "embedding":
            weights[lname] = {"embeddings": rng.uniform(-0.5, 0.5, (spec[1], spec[2]))}
            shape = shape + [spec[2]]
        elif spec[0] == "conv1d":
            _, filters, kernel, strides, padding, _ = spec
            limit = np.sqrt(6.0 / (kernel * shape[-1] + kernel * filters))
            weights[lname] = {"kernel": rng.uniform(-limit, limit, (kernel, shape[-1], filters)),
                              "bias": rng.uniform(-0.1, 0.1, filters)}
            steps = -(-shape[0] // strides) if padding == "same" else (shape[0] - kernel) // strides + 1
            shape = [steps, filters]
        elif spec[0].startswith("global_"):
            shape = [shape[-1]]
    for lname, ws in weights.items():
        for k, v in ws.items():
            init[f"{lname}.{k}"] = v.astype("float32")
    write_safetensors(os.path.join(folder, "init.safetensors"), init)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],))] +
                             [keras_layer(keras, n, s) for n, s in named_layers(case["layers"])])
    for lname, ws in weights.items():
        model.get_layer(lname).set_weights([init[f"{lname}.{k}"] for k in ws])
    loss = case["loss"]
    if "label_smoothing" in case:
        cls = {"categorical_crossentropy": keras.losses.CategoricalCrossentropy,
               "binary_crossentropy": keras.losses.BinaryCrossentropy}[loss]
        loss = cls(label_smoothing=case["label_smoothing"])
    model.compile(loss=loss, optimizer=keras_optimizer(keras, case["optimizer"]))
    class_weight = case.get("class_weight")
    if class_weight == "balanced":
        # scikit-learn's compute_class_weight("balanced"): n_samples / (n_classes * count).
        classes, counts = np.unique(labels.astype(int), return_counts=True)
        class_weight = {int(c): len(labels) / (len(classes) * n) for c, n in zip(classes, counts)}
    elif class_weight is not None:
        class_weight = dict(enumerate(class_weight))
    hist = model.fit(x, y, batch_size=case["batch_size"], epochs=case["epochs"], shuffle=False, verbose=0,
                     class_weight=class_weight)
    final = {}
    for lname, ws in weights.items():
        for k, v in zip(ws, model.get_layer(lname).get_weights()):
            final[f"{lname}.{k}"] = v
    write_safetensors(os.path.join(folder, "keras.safetensors"), final)

    spec = dict(case, keras_version=keras.__version__, backend=keras.backend.backend(),
                keras_epoch_losses=[float(v) for v in hist.history["loss"]])
    with open(os.path.join(folder, "spec.json"), "w") as f:
        json.dump(spec, f, indent=1)
        f.write("\n")
    moved = max(float(np.max(np.abs(final[k] - init[k]))) for k in init)
    print(f"{name}: losses {spec['keras_epoch_losses']}, largest weight change {moved:.4f}")


# Inputs of activations.json: spread over [-6, 6], with the kinks (0, -3, 3), the
# float32 just inside -3 and 3, and a few values that are not exact in binary.
ACTIVATION_INPUTS = [-6, -5, -4, -3.5, -3, -3 + 2**-22, -2.5, -2, -1.5, -1, -0.5, -0.1, 0,
                     0.1, 0.5, 1, 1.5, 2, 2.5, 3 - 2**-22, 3, 3.5, 4, 5, 6]
# name in activations.json -> (how Keras is called, keyword arguments).
ACTIVATIONS = {
    "linear": ("linear", {}),
    "relu": ("relu", {}),
    # nnc's default slope, the one of Keras's LeakyReLU layer (the function's is 0.2).
    "leaky_relu": ("leaky_relu", {"negative_slope": 0.3}),
    "elu": ("elu", {}),
    "sigmoid": ("sigmoid", {}),
    "tanh": ("tanh", {}),
    "gelu": ("gelu", {"approximate": False}),
    "silu": ("silu", {}),
    "softplus": ("softplus", {}),
    "selu": ("selu", {}),
    "softsign": ("softsign", {}),
    "hard_sigmoid": ("hard_sigmoid", {}),
    "mish": ("mish", {}),
    "exponential": ("exponential", {}),
    "swish": ("swish", {}),
}


def make_activations(keras):
    """activations.json: f(x) and f'(x) (TensorFlow's gradient) in float32."""
    import tensorflow as tf

    x = tf.constant(np.array(ACTIVATION_INPUTS, dtype="float32"))

    def value_and_grad(fn, kwargs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x, **kwargs)
        return y, tape.gradient(y, x)

    def ulps(a, b):
        """How many float32 steps apart a and b are (same sign assumed)."""
        ia, ib = (np.asarray(v, dtype="<f4").view("<i4").astype(np.int64) for v in (a, b))
        return int(np.max(np.abs(ia - ib)))

    out = {}
    for name, (keras_name, kwargs) in ACTIVATIONS.items():
        fn = keras.activations.get(keras_name)
        # As model.fit runs it: in a tf.function, whose graph TensorFlow rewrites (it
        # turns hard_sigmoid's `/ 6` into `* (1/6)`, which rounds differently).
        y, dy = tf.function(lambda: value_and_grad(fn, kwargs))()
        y, dy = y.numpy(), dy.numpy()
        if not (np.all(np.isfinite(y)) and np.all(np.isfinite(dy))):
            sys.exit(f"{name}: not finite")
        ey, edy = (v.numpy() for v in value_and_grad(fn, kwargs))
        gap = max(ulps(y, ey), ulps(dy, edy))
        if gap:
            print(f"{name}: run eagerly, f or f' differs by up to {gap} float32 steps")
        out[name] = dict(keras=f"keras.activations.{fn.__name__}", **kwargs,
                         f=[float(v) for v in y], grad=[float(v) for v in dy])
    table = dict(
        about="f(x) from keras.activations (called as `keras` with the keyword arguments "
              "given) and f'(x) = TensorFlow's gradient of f at x (tf.GradientTape), both "
              "computed in a tf.function as model.fit does, in float32; every number is the "
              "exact float32 value, printed as a float64.",
        keras_version=keras.__version__, tensorflow_version=tf.__version__,
        backend=keras.backend.backend(), x=[float(v) for v in x.numpy()], activations=out)
    # One line per list of numbers.
    text = re.sub(r"\[\s+([^\[\]{}\"]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]",
                  json.dumps(table, indent=1))
    with open(os.path.join(HERE, "activations.json"), "w") as f:
        f.write(text + "\n")
    print(f"activations.json: {len(out)} activations at {len(ACTIVATION_INPUTS)} inputs")


def make_metrics(keras):
    """metrics.json: Keras's precision, recall, AUC and top-k accuracy on fixed
    predictions, fed in batches (the metrics stream over an epoch's batches)."""
    rng = np.random.default_rng(7)
    f32 = lambda a: np.asarray(a, dtype="float32")
    cases = []
    # One sigmoid output: probabilities, with values on the 0.5 threshold, at 0 and 1,
    # and on AUC thresholds i / 199.
    p = rng.uniform(0, 1, 60)
    p[:6] = [0.5, 0.0, 1.0, 1 / 199, 100 / 199, 0.5]
    y = (rng.uniform(0, 1, 60) < 0.3 + 0.5 * p).astype("float32")
    cases.append(dict(name="binary", outputs=1, predictions=f32(p)[:, None], targets=f32(y)[:, None],
                      one_hot=False))
    # Softmax over 6 classes with class indices, some rows with ties.
    logits = rng.normal(0, 1.5, (45, 6))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs[:3] = [[0.25, 0.25, 0.25, 0.25, 0.0, 0.0], [0.1, 0.3, 0.3, 0.1, 0.1, 0.1],
                 [1 / 6] * 6]
    labels = rng.integers(0, 6, 45)
    labels[:3] = [3, 2, 5]
    cases.append(dict(name="softmax_sparse", outputs=6, predictions=f32(probs),
                      targets=f32(labels)[:, None], one_hot=False))
    cases.append(dict(name="softmax_one_hot", outputs=6, predictions=f32(probs),
                      targets=np.eye(6, dtype="float32")[labels], one_hot=True))
    out = []
    for c in cases:
        pred, targ = c["predictions"], c["targets"]
        one_hot = targ if (c["one_hot"] or c["outputs"] == 1) else np.eye(c["outputs"], dtype="float32")[
            targ[:, 0].astype(int)]
        metrics = {"precision": keras.metrics.Precision(), "recall": keras.metrics.Recall(),
                   "auc": keras.metrics.AUC()}
        if c["outputs"] > 1:
            for k in (1, 3, 5):
                metrics[f"top_{k}"] = (keras.metrics.TopKCategoricalAccuracy(k=k) if c["one_hot"]
                                       else keras.metrics.SparseTopKCategoricalAccuracy(k=k))
        values = {}
        for name, m in metrics.items():
            for lo in range(0, len(pred), 16):
                hi = lo + 16
                truth = targ[lo:hi] if name.startswith("top_") else one_hot[lo:hi]
                if name.startswith("top_") and not c["one_hot"]:
                    truth = truth[:, 0].astype("int32")
                m.update_state(truth, pred[lo:hi])
            values[name] = float(m.result())
        out.append(dict(name=c["name"], outputs=c["outputs"], batch=16,
                        predictions=[float(v) for v in pred.reshape(-1)],
                        targets=[float(v) for v in targ.reshape(-1)], keras=values))
    table = dict(about="Keras metrics (default arguments but k) updated batch by batch (16 rows) on "
                       "these float32 predictions; sparse targets are class indices, given to "
                       "precision, recall and auc as one-hot rows.",
                 keras_version=keras.__version__, backend=keras.backend.backend(), cases=out)
    text = re.sub(r"\[\s+([^\[\]{}\"]*?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]",
                  json.dumps(table, indent=1))
    with open(os.path.join(HERE, "metrics.json"), "w") as f:
        f.write(text + "\n")
    for c in out:
        print(f"metrics.json {c['name']}: {c['keras']}")


def main():
    make_data()
    import keras

    wanted = sys.argv[1:]
    for i, (name, case) in enumerate(CASES.items()):
        if not wanted or name in wanted:
            make_case(keras, name, case, i)
    if not wanted or "activations" in wanted:
        make_activations(keras)
    if not wanted or "metrics" in wanted:
        make_metrics(keras)


if __name__ == "__main__":
    main()
