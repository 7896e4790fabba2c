"""PyTorch peer for examples/lenet5.nn (`lenet_bn`) and examples/mnist_resnet.nn
(`resnet`): the eager loop of the shared peers' torch_bench.py, NCHW, with Keras's
batchnorm constants (epsilon 1e-3, momentum 0.99 = torch's 0.01)."""
import convnets

common = convnets.common
args = convnets.parse_args()
common.setup(args.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(args.threads)
torch.set_num_interop_threads(1)


def bn2d(c):
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


def lenet_bn():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, bias=False), bn2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, bias=False), bn2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120, bias=False), nn.BatchNorm1d(120, eps=1e-3, momentum=0.01), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                               nn.Conv2d(32, 32, 3, padding=1), bn2d(32))

    def forward(self, x):
        return torch.relu(x + self.f(x))


def resnet():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        Block(), nn.MaxPool2d(2), Block(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def main():
    torch.manual_seed(common.SEED)
    net = {"lenet_bn": lenet_bn, "resnet": resnet}[args.model]()
    for m in net.modules():  # Keras defaults: glorot_uniform weights, zero biases
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    params = sum(q.numel() for q in net.parameters() if q.requires_grad)
    if args.summary:
        print(params)
        return
    xtr, ytr, xte, yte = common.load(args)
    xtr, xte = xtr.transpose(0, 3, 1, 2).copy(), xte.transpose(0, 3, 1, 2).copy()
    xtr, ytr, xte = torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte)
    loss_of = nn.CrossEntropyLoss()  # softmax is fused into the loss
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)

    rng = np.random.default_rng(common.SEED)
    n, b = len(xtr), args.batch
    steps = common.steps_per_epoch(n, b)
    wall, cpu = [], []
    xs, ys = torch.empty_like(xtr), torch.empty_like(ytr)
    net.train()
    for _ in range(args.epochs):
        with common.Clock() as c:
            perm = torch.from_numpy(rng.permutation(n))
            torch.index_select(xtr, 0, perm, out=xs)
            torch.index_select(ytr, 0, perm, out=ys)
            total = torch.zeros(())
            for i in range(steps):
                xb, yb = xs[i * b:(i + 1) * b], ys[i * b:(i + 1) * b]
                opt.zero_grad(set_to_none=True)
                loss = loss_of(net(xb), yb)
                loss.backward()
                opt.step()
                total += loss.detach() * len(xb)
        wall.append(c.wall)
        cpu.append(c.cpu)
    net.eval()
    with torch.no_grad():
        z = torch.cat([net(xte[i:i + 1000]) for i in range(0, len(xte), 1000)]).numpy()
    common.report(args, "torch", f"torch {torch.__version__}", params, wall, cpu, steps,
                  total.item() / n, (z.argmax(1) == yte).mean())


if __name__ == "__main__":
    main()
