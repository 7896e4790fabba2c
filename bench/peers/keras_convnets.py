"""Keras 3 (TensorFlow backend) peer for examples/lenet5.nn (`lenet_bn`) and
examples/mnist_resnet.nn (`resnet`), timed as the shared peers' keras_bench.py."""
import os

import convnets

common = convnets.common
args = convnets.parse_args()
common.setup(args.threads)
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(1)

import keras  # noqa: E402
from keras import layers  # noqa: E402


def lenet_bn():
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(6, 5, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 5, use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(120, use_bias=False),
        layers.BatchNormalization(),
        layers.ReLU(),
        layers.Dense(84, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], name="lenet_bn")


def resnet():
    x = keras.Input((28, 28, 1))
    h = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    h = layers.MaxPooling2D()(h)
    for _ in range(2):
        r = layers.Conv2D(32, 3, padding="same", activation="relu")(h)
        r = layers.Conv2D(32, 3, padding="same")(r)
        r = layers.BatchNormalization()(r)
        h = layers.ReLU()(layers.Add()([h, r]))
        h = layers.MaxPooling2D()(h) if _ == 0 else h
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, layers.Dense(10, activation="softmax")(h), name="resnet")


class EpochClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.wall, self.cpu = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.clock = common.Clock().__enter__()

    def on_epoch_end(self, epoch, logs=None):
        self.clock.__exit__()
        self.wall.append(self.clock.wall)
        self.cpu.append(self.clock.cpu)


def main():
    keras.utils.set_random_seed(common.SEED)
    model = {"lenet_bn": lenet_bn, "resnet": resnet}[args.model]()
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    if args.summary:
        print(params)
        return
    xtr, ytr, xte, yte = common.load(args)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7),
                  loss="sparse_categorical_crossentropy")
    clock = EpochClock()
    hist = model.fit(xtr, ytr, batch_size=args.batch, epochs=args.epochs, shuffle=True,
                     verbose=0, callbacks=[clock])
    pred = model.predict(xte, batch_size=1000, verbose=0)
    common.report(args, "keras", f"tensorflow {tf.__version__}, keras {keras.__version__}", params,
                  clock.wall, clock.cpu, common.steps_per_epoch(len(xtr), args.batch),
                  hist.history["loss"][-1], (pred.argmax(1) == yte).mean())


if __name__ == "__main__":
    main()
