"""AlexNet as Krizhevsky ran it: paper §3 and Figure 2, checked against cuda-convnet.

Shapes below are for one 3x224x224 input. The two GPUs are emulated with grouped
convolutions (groups=2) in conv2, conv4 and conv5, and LRN normalises within each half;
conv3 and the fully-connected layers see both halves, as in Figure 2.

Where the paper's text and the code that produced its numbers disagree, the default is
the code's and the text stays an option (docs/paper.md, "Deviations", has the full table):
- LRN (`lrn`). "as-run": cuda-convnet's cross-map response norm divides its configured
  scale by the size (cuda-convnet2 layer.py, CrossMapResponseNormLayerParser:
  `dic['scale'] /= dic['size']`; the 2012 cuda-convnet's layer.py does the same), and its
  ImageNet config sets scale=0.0001, size=5, pow=0.75, minDiv=2
  (layers/layer-params-imagenet-2gpu-model.cfg), so each squared neighbour weighs 2e-5 --
  what Caffe (alpha 0.0001, local_size 5) and nn.LocalResponseNorm(5, 1e-4) compute too.
  Each GPU normalises only its own maps (layers-imagenet-2gpu-model.cfg: rnorm1a/rnorm1b,
  channels=48). "text": §3.3 read literally, alpha=1e-4 per term across all maps (5x
  stronger, mixing the halves). "none": the §3.3 ablation.
- conv1 geometry (`conv1_padding`). "as-run": cuda-convnet sizes a convolution's output
  with a ceiling, 1 + ceil((2*padding + 224 - 11) / 4) = 55 with padding=0 (conv1a), so
  the last window overhangs the right and bottom edges by 3 zero pixels. "symmetric": 2
  zero pixels on every side, also 55x55. (The text's 224, 11, stride 4 and no padding give
  54x54 under the usual floor.)
- Dropout (`dropout_mode`). "paper": §4.2, outputs zeroed with probability 0.5 while
  training and multiplied by 0.5 at test time (cuda-convnet2 `dropout2`, used by its
  layers-imagenet-1gpu.cfg). "inverted": x2 while training, identity at test (nn.Dropout,
  Caffe, cuda-convnet2 `dropout` in the 2gpu-model config).
- Dropout acts on the outputs of fc6 and fc7 (cuda-convnet, Caffe); §4.2 says only "the
  first two fully-connected layers".
- Layer-1 activations are 55*55*96 = 290,400; the paper's 253,440 is a misprint.
- Initialisation: see `init_weights` ("caffe" default; "paper" is §5 exactly).
Ablations of §3.2 (`towers="one"`), §3.3 (`lrn="none"`) and §3.4 (`pool_size=2`) are
options too (docs/variants.md measures the init and LRN choices).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .architecture import (FC_WIDTH, KERNELS, LRN_BETA, LRN_K, LRN_SCALE, LRN_SIZE, Architecture, conv1_pads,
                           feature_side)
from .lrn import local_response_norm, lrn_avg_pool

class LocalResponseNorm(nn.Module):
    """§3.3: b_i = a_i / (k + alpha_per_term * sum_j a_j^2)^beta over the `size` maps around
    i, within each of `groups` blocks of maps (cuda-convnet's window, clipped at the ends).
    train/lrn.py computes it: fused CPU kernels, or the torch reference (CUDA, compiled)."""

    def __init__(self, alpha_per_term: float, groups: int, size: int = LRN_SIZE, k: float = LRN_K,
                 beta: float = LRN_BETA):
        super().__init__()
        self.alpha_per_term, self.groups, self.size, self.k, self.beta = alpha_per_term, groups, size, k, beta

    form = "shifted-sum"  # or "avg-pool": the same function, train/lrn.py (bench/step_variants.py times both)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "avg-pool":
            return lrn_avg_pool(x, self.alpha_per_term, self.groups, self.size, self.k, self.beta)
        return local_response_norm(x, self.alpha_per_term, self.groups, self.size, self.k, self.beta)

    def extra_repr(self) -> str:
        return f"size={self.size}, k={self.k}, alpha_per_term={self.alpha_per_term:g}, beta={self.beta}, " \
               f"groups={self.groups}"


def build_norm(arch: Architecture, groups: int) -> nn.Module:
    if arch.lrn == "none":
        return nn.Identity()
    if arch.lrn == "text":
        return LocalResponseNorm(LRN_SCALE, groups=1)
    return LocalResponseNorm(LRN_SCALE / LRN_SIZE, groups=groups)


class Dropout(nn.Module):
    """§4.2 with p = probability of zeroing. Both modes draw the same mask; "paper" leaves
    the kept outputs unscaled and multiplies by (1 - p) at test time, "inverted" scales the
    kept outputs by 1 / (1 - p) and is the identity at test time."""

    form = "mask"  # or "native": the same distribution from another random stream (bench/step_variants.py)

    def __init__(self, p: float, mode: str):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0:
            return x
        if not self.training:
            return x * (1 - self.p) if self.mode == "paper" else x
        if self.form == "native":  # torch's one-kernel dropout (x * keep / (1 - p)), rescaled for "paper"
            y = F.dropout(x, self.p, training=True)
            return y * (1 - self.p) if self.mode == "paper" else y
        keep = torch.empty_like(x).bernoulli_(1 - self.p)
        return x * keep if self.mode == "paper" else x * keep / (1 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class TowerConv2d(nn.Conv2d):
    """§3.2's towers: a convolution whose kernels see only their own tower's maps. One set of
    parameters, nn.Conv2d's grouped layout (so checkpoints do not depend on the form), and
    three ways to compute the same function (tests/test_step_variants.py checks them against
    each other; bench/step_variants.py times them on a GPU):
    "grouped"         the library's grouped kernel (cuDNN, oneDNN);
    "per-tower"       each tower's own dense convolution, outputs concatenated;
    "block-diagonal"  one dense convolution whose weight holds each tower's kernels on the
                      diagonal and zeros elsewhere: twice the multiply-adds, but the dense
                      kernels a GPU library tunes most (the zeros are built from no parameter,
                      so they get no gradient)."""

    form = "grouped"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1 or self.form == "grouped":
            return super().forward(x)
        g = self.groups
        weights, biases = self.weight.chunk(g, 0), self.bias.chunk(g, 0)
        if self.form == "per-tower":
            return torch.cat([F.conv2d(xi, w, b, self.stride, self.padding)
                              for xi, w, b in zip(x.chunk(g, 1), weights, biases)], 1)
        per_in = self.weight.shape[1]
        rows = [torch.cat([w if j == i else w.new_zeros(w.shape[0], per_in, *w.shape[2:]) for j in range(g)], 1)
                for i, w in enumerate(weights)]
        return F.conv2d(x, torch.cat(rows, 0), self.bias, self.stride, self.padding)


FORMS = {"conv": ("grouped", "per-tower", "block-diagonal"), "lrn": ("shifted-sum", "avg-pool"),
         "dropout": ("mask", "native")}


def set_forms(model: "AlexNet", conv: str = "grouped", lrn: str = "shifted-sum", dropout: str = "mask") -> None:
    """How the model computes its function (FORMS), never what it computes: the parameters, the
    checkpoints and Architecture stay as they are."""
    for kind, value in (("conv", conv), ("lrn", lrn), ("dropout", dropout)):
        if value not in FORMS[kind]:
            raise ValueError(f"{kind} form {value!r}: expected one of {', '.join(FORMS[kind])}")
    for module in model.modules():
        if isinstance(module, TowerConv2d):
            module.form = conv
        elif isinstance(module, LocalResponseNorm):
            module.form = lrn
        elif isinstance(module, Dropout):
            module.form = dropout


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, arch: Architecture = Architecture()):
        super().__init__()
        self.arch = arch
        k1, k2, k3, k4, k5 = KERNELS[arch.towers]
        g = 2 if arch.towers == "two" else 1  # §3.2: each GPU sees only its own maps here
        self.conv1_pads = conv1_pads(arch.crop, arch.conv1_padding)
        self.conv1 = nn.Conv2d(3, k1, 11, stride=4)  # §3.5: 96x55x55 (padding applied in forward)
        self.conv2 = TowerConv2d(k1, k2, 5, padding=2, groups=g)  # §3.5: 256x27x27 (after pool1)
        self.conv3 = nn.Conv2d(k2, k3, 3, padding=1)  # §3.5: 384x13x13, sees both GPUs' maps
        self.conv4 = TowerConv2d(k3, k4, 3, padding=1, groups=g)  # §3.5: 384x13x13
        self.conv5 = TowerConv2d(k4, k5, 3, padding=1, groups=g)  # §3.5: 256x13x13
        side = feature_side(arch)
        self.fc6 = nn.Linear(k5 * side * side, FC_WIDTH)  # §3.5: 4096 (input: pool5 256x6x6)
        self.fc7 = nn.Linear(FC_WIDTH, FC_WIDTH)  # §3.5: 4096
        self.fc8 = nn.Linear(FC_WIDTH, num_classes)  # §3.5: 1000-way softmax
        self.norm1 = build_norm(arch, g)  # §3.3, after conv1's ReLU, before pool1
        self.norm2 = build_norm(arch, g)  # §3.3, after conv2's ReLU, before pool2
        self.pool = nn.MaxPool2d(arch.pool_size, stride=2)  # §3.4: z=3, s=2
        self.dropout = Dropout(arch.dropout, arch.dropout_mode)  # §4.2, on fc6 and fc7 outputs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        before, after = self.conv1_pads
        x = F.pad(x, (before, after, before, after))
        x = self.pool(self.norm1(F.relu(self.conv1(x))))  # 96x55x55 -> 96x27x27
        x = self.pool(self.norm2(F.relu(self.conv2(x))))  # 256x27x27 -> 256x13x13
        x = F.relu(self.conv3(x))  # 384x13x13
        x = F.relu(self.conv4(x))  # 384x13x13
        x = self.pool(F.relu(self.conv5(x)))  # 256x13x13 -> 256x6x6
        return torch.flatten(x, 1)  # 9216

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 activations (4096-d, before dropout): the feature space of Figure 4's neighbours."""
        x = self.dropout(F.relu(self.fc6(self.features(x))))
        return F.relu(self.fc7(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.dropout(self.penultimate(x)))


LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
BIASED_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")  # §5: "initialized the neuron biases ... with the constant 1"
# layer -> (weight std, bias in BIASED_LAYERS); all other biases are 0.
INIT_SCHEMES = {
    # §5: "zero-mean Gaussian distribution with standard deviation 0.01", biases 1
    "paper": {"weight_std": {name: 0.01 for name in LAYERS}, "bias": 1.0},
    # BVLC's bvlc_alexnet (models/bvlc_alexnet/train_val.prototxt): fc6, fc7 std 0.005, biases
    # 0.1 -- "initialization to 1 gave flat loss" (its readme)
    "caffe": {"weight_std": {**{name: 0.01 for name in LAYERS}, "fc6": 0.005, "fc7": 0.005}, "bias": 0.1},
}


def init_weights(model: AlexNet, scheme: str = "caffe") -> None:
    """§5's initialisation ("paper"), or bvlc_alexnet's ("caffe", the default: see docs/variants.md
    for what each did on real images)."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init {scheme!r}: expected one of {', '.join(INIT_SCHEMES)}")
    plan = INIT_SCHEMES[scheme]
    for name in LAYERS:
        layer = getattr(model, name)
        nn.init.normal_(layer.weight, 0.0, plan["weight_std"][name])
        nn.init.constant_(layer.bias, plan["bias"] if name in BIASED_LAYERS else 0.0)


def build_model(num_classes: int, arch: Architecture = Architecture(), init: str = "caffe") -> AlexNet:
    model = AlexNet(num_classes, arch)
    init_weights(model, init)
    return model
