#!/usr/bin/env python3
"""Makes the Keras parity fixtures of graph models (Keras's functional API) that
`tests/keras_parity.rs` checks nnc against, beside those of make_fixtures.py.

Run from the repository root with Keras 3 (TensorFlow backend) installed, after
make_fixtures.py (whose data files these cases train on):

    python tests/keras_parity/make_graph_fixtures.py

Each case is written as make_fixtures.py writes one (CASE/init.safetensors,
CASE/keras.safetensors, CASE/spec.json), except that spec.json holds the model as
`.nn` text (`model`) instead of a list of layers; nnc checks that text with its own
front end. Layer names are the `.nn` file's, so the weights match by name.
"""
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import HERE, keras_optimizer, read_csv, write_safetensors  # noqa: E402

ADAM = dict(name="adam", learning_rate=0.05, beta_1=0.9, beta_2=0.999, epsilon=1e-7)


def iris_concat_l2(keras, L):
    """Two branches of the iris features joined by `concatenate`, every kernel with
    an l2 penalty (Keras adds the penalties to the loss it reports and trains)."""
    nn = """model iris_concat_l2 {
    input features: [4]
    deep = dense(8, activation = relu, kernel_regularizer = l2(0.01))
    deep_2 = dense(6, activation = tanh, kernel_regularizer = l2(0.02))
    wide = dense(4, kernel_regularizer = l2(0.03))(features)
    both = concatenate(deep_2, wide)
    dense(3, activation = softmax, kernel_regularizer = l2(0.01))
}
"""
    x = keras.Input((4,), name="features")
    deep = L.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01), name="deep")(x)
    deep_2 = L.Dense(6, activation="tanh", kernel_regularizer=keras.regularizers.L2(0.02), name="deep_2")(deep)
    wide = L.Dense(4, kernel_regularizer=keras.regularizers.L2(0.03), name="wide")(x)
    both = L.Concatenate(axis=-1, name="both")([deep_2, wide])
    out = L.Dense(3, activation="softmax", kernel_regularizer=keras.regularizers.L2(0.01), name="dense")(both)
    return nn, keras.Model(x, out)


def iris_residual_layer_norm(keras, L):
    """A residual block: a dense layer's output added to a second dense layer's view
    of it (fan-out into `add`), then layer normalization of the sum."""
    nn = """model iris_residual_layer_norm {
    input features: [4]
    x = dense(16, activation = relu)
    h = dense(16, activation = tanh)
    s = add(x, h)
    n = layer_norm()(s)
    dense(3, activation = softmax)
}
"""
    x = keras.Input((4,), name="features")
    stem = L.Dense(16, activation="relu", name="x")(x)
    h = L.Dense(16, activation="tanh", name="h")(stem)
    s = L.Add(name="s")([stem, h])
    n = L.LayerNormalization(epsilon=0.001, name="n")(s)
    out = L.Dense(3, activation="softmax", name="dense")(n)
    return nn, keras.Model(x, out)


CASES = {
    "iris_concat_l2": dict(build=iris_concat_l2, data="iris.csv", loss="sparse_categorical_crossentropy",
                           optimizer=ADAM, epochs=3, batch_size=16),
    "iris_residual_layer_norm": dict(build=iris_residual_layer_norm, data="iris.csv",
                                     loss="sparse_categorical_crossentropy", optimizer=ADAM,
                                     epochs=3, batch_size=16),
}


def make_case(keras, name, case, index):
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    _, data = read_csv(os.path.join(HERE, "data", case["data"]))
    x = data[:, :-1].astype("float32")
    y = data[:, -1].astype("int32")
    keras.utils.set_random_seed(0)
    nn, model = case["build"](keras, keras.layers)
    # Initial weights drawn with numpy as make_fixtures.py draws them (glorot uniform
    # kernels, small random biases, layer norm's gamma and beta near 1 and 0), seed
    # 200 + the case's index.
    rng = np.random.default_rng(200 + index)
    init, weights = {}, {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            fan_in, units = layer.kernel.shape
            limit = np.sqrt(6.0 / (fan_in + units))
            weights[layer.name] = {"kernel": rng.uniform(-limit, limit, (fan_in, units)),
                                   "bias": rng.uniform(-0.1, 0.1, units)}
        elif isinstance(layer, keras.layers.LayerNormalization):
            width = layer.gamma.shape[0]
            weights[layer.name] = {"gamma": rng.uniform(0.5, 1.5, width),
                                   "beta": rng.uniform(-0.1, 0.1, width)}
    for lname, ws in weights.items():
        for k, v in ws.items():
            init[f"{lname}.{k}"] = v.astype("float32")
        model.get_layer(lname).set_weights([init[f"{lname}.{k}"] for k in ws])
    write_safetensors(os.path.join(folder, "init.safetensors"), init)
    model.compile(loss=case["loss"], optimizer=keras_optimizer(keras, case["optimizer"]))
    hist = model.fit(x, y, batch_size=case["batch_size"], epochs=case["epochs"], shuffle=False, verbose=0)
    final = {}
    for lname, ws in weights.items():
        for k, v in zip(ws, model.get_layer(lname).get_weights()):
            final[f"{lname}.{k}"] = v
    write_safetensors(os.path.join(folder, "keras.safetensors"), final)
    spec = {k: v for k, v in case.items() if k != "build"}
    spec.update(model=nn, keras_version=keras.__version__, backend=keras.backend.backend(),
                keras_epoch_losses=[float(v) for v in hist.history["loss"]])
    with open(os.path.join(folder, "spec.json"), "w") as f:
        json.dump(spec, f, indent=1)
        f.write("\n")
    moved = max(float(np.max(np.abs(final[k] - init[k]))) for k in init)
    print(f"{name}: losses {spec['keras_epoch_losses']}, largest weight change {moved:.4f}")


def main():
    import keras

    wanted = sys.argv[1:]
    for i, (name, case) in enumerate(CASES.items()):
        if not wanted or name in wanted:
            make_case(keras, name, case, i)


if __name__ == "__main__":
    main()
