"""Random networks of supported layers, with random batch-norm statistics (negative gammas)."""

from __future__ import annotations

import random

import torch
from torch import nn


def randomize_bn(model: nn.Module, gen: torch.Generator, negative: bool = True) -> None:
    """Give every batch norm random statistics; about a third of the gammas negative."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) * 0.6 - 0.3)
            m.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
            gamma = torch.rand(c, generator=gen) * 1.5 + 0.25
            if negative:
                sign = torch.where(torch.rand(c, generator=gen) < 0.33, -1.0, 1.0)
                gamma = gamma * sign
            m.weight.data.copy_(gamma)
            m.bias.data.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)


def random_cnn(seed: int, dims: int = 2) -> tuple[nn.Module, tuple[int, ...]]:
    """A random chain of convolutions (any kernel/stride/padding/dilation/groups), batch norms
    before or after ReLU, max/avg pools, flatten and linear layers."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    maxpool = nn.MaxPool1d if dims == 1 else nn.MaxPool2d
    avgpool = nn.AvgPool1d if dims == 1 else nn.AvgPool2d
    c = rng.choice([1, 2, 3])
    size = rng.choice([9, 10, 12]) if dims == 2 else rng.choice([16, 20])
    in_shape = (c, size, size) if dims == 2 else (c, size)
    layers: list[nn.Module] = []
    if rng.random() < 0.3:
        layers.append(bn(c))  # batch norm directly on the input
    for _ in range(rng.choice([1, 2, 3])):
        groups = rng.choice([1, 1, c]) if c > 1 else 1
        out = groups * rng.choice([2, 3, 4])
        k = rng.choice([1, 2, 3, 5])
        stride = rng.choice([1, 1, 2])
        dil = rng.choice([1, 1, 2])
        pad = rng.choice([0, 1, 2, "same", "valid"]) if stride == 1 else rng.choice([0, 1, 2])
        eff = dil * (k - 1) + 1
        p = 0 if isinstance(pad, str) and pad == "valid" else (
            (eff - 1) // 2 if pad == "same" else pad)
        new = (size + 2 * p - eff) // stride + 1 if pad != "same" else size
        if new < 2:
            continue
        layers.append(conv(c, out, k, stride=stride, padding=pad, dilation=dil, groups=groups,
                           bias=rng.random() < 0.8))
        size, c = new, out
        order = rng.choice(["bn-relu", "relu-bn", "relu"])
        if order == "bn-relu":
            layers += [bn(c), nn.ReLU()]
        elif order == "relu-bn":
            layers += [nn.ReLU(), bn(c)]
        else:
            layers.append(nn.ReLU())
        r = rng.random()
        if r < 0.4 and size >= 4:
            pk = rng.choice([2, 3])
            pp = rng.choice([0, 1]) if pk == 3 else 0
            layers.append(maxpool(pk, stride=rng.choice([1, 2]), padding=pp))
            size = (size + 2 * pp - pk) // layers[-1].stride + 1 if isinstance(
                layers[-1].stride, int) else size
        elif r < 0.55 and size >= 4:
            layers.append(avgpool(2))
            size //= 2
        if rng.random() < 0.2:
            layers.append(nn.Dropout(0.3))
    layers.append(nn.Flatten())
    model = nn.Sequential(*layers)
    with torch.no_grad():
        feat = model.eval()(torch.zeros(1, *in_shape)).shape[1]
    hidden = rng.choice([0, 8, 16])
    if hidden:
        layers += [nn.Linear(feat, hidden)]
        if rng.random() < 0.5:
            layers += [nn.BatchNorm1d(hidden), nn.ReLU()]
        else:
            layers += [nn.ReLU()]
        feat = hidden
    layers.append(nn.Linear(feat, rng.choice([3, 5])))
    model = nn.Sequential(*layers)
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=1.0, generator=gen)
            if m.bias is not None:
                m.bias.data.uniform_(-0.2, 0.2, generator=gen)
    randomize_bn(model, gen)
    return model.eval(), in_shape


def random_mlp(seed: int, widths: list[int]) -> nn.Sequential:
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        lin = nn.Linear(widths[i], widths[i + 1])
        nn.init.kaiming_uniform_(lin.weight, a=1.0, generator=gen)
        lin.bias.data.uniform_(-0.2, 0.2, generator=gen)
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


class SmallResidual(nn.Module):
    """conv-bn-relu → conv-bn + identity → relu → flatten → linear (a two-edge population)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(2)
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return self.fc(torch.flatten(torch.relu(self.bn2(self.conv2(h)) + x), 1))
