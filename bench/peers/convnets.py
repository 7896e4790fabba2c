"""What the convnet peer scripts of this folder share: the command line of the
shared peers' `common.py` for the two models they do not know, and that module
itself, imported by path from $PEERS (default ../../../shared/peers).

    keras_convnets.py --model lenet_bn|resnet --threads 1 --epochs 2 --train-rows 12800
    torch_convnets.py --model lenet_bn|resnet --threads 1 --epochs 2 --train-rows 12800

Both print the shared peers' one JSON line (`common.report`).
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.environ.get("PEERS", os.path.join(HERE, "..", "..", "..", "shared", "peers"))
sys.path.insert(0, PEERS)

import common  # noqa: E402  (the shared peers' helpers: setup, load, Clock, report)

# The batch sizes of examples/lenet5.nn and examples/mnist_resnet.nn.
BATCH = {"lenet_bn": 128, "resnet": 64}


def parse_args():
    """`common.parse_args` with this folder's models (its choices are fixed)."""
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=sorted(BATCH), required=True)
    p.add_argument("--epochs", type=int, default=2, help="epoch 1 = compile/warm-up, not in epoch_s")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--train-rows", type=int, default=None)
    p.add_argument("--summary", action="store_true", help="print the parameter count and exit")
    a = p.parse_args()
    a.batch = a.batch or BATCH[a.model]
    return a
