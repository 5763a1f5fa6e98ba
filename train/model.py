"""AlexNet as in Krizhevsky, Sutskever & Hinton (2012), §3 and Figure 2.

Shapes below are for one 3x224x224 input. The two-GPU split is emulated with grouped
convolutions (groups=2) in conv2, conv4 and conv5; conv3 and the fc layers see both halves.

Deviations from the paper, each deliberate:
- Input 224x224 with conv1 padding 2 gives the paper's 55x55 map; the paper says 224 but
  its arithmetic needs 227 ((227-11)/4+1 = 55). Padding 2 keeps the 224 crops of §4.1.
- Layer-1 activations are 55*55*96 = 290,400; the paper's 253,440 is a misprint.
- Dropout acts on the outputs of fc6 and fc7 (as in cuda-convnet and Caffe's bvlc_alexnet);
  the paper says only "the first two fully-connected layers".
- Weight decay is applied to weights, not biases (cuda-convnet's layer params); the paper's
  update rule (§5) does not say.
- The default initialisation is "caffe": bias 0.1 where §5 says 1. With 1, §5's SGD diverged
  in bench/compare_init.py (README, "Initialisation"); `--init paper` gives the paper's.
- LRN is computed as a 5-term shifted sum over channels (exactly the §3.3 formula), which
  torch.compile fuses; nn.LocalResponseNorm gives the same values (tests/test_model.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ARCH = "alexnet-krizhevsky-2012"
# §3.3: b = a / (k + alpha * sum_{j=i-n/2}^{i+n/2} a_j^2)^beta, hyper-parameters from the paper.
LRN_K, LRN_N, LRN_ALPHA, LRN_BETA = 2.0, 5, 1e-4, 0.75
INIT_WEIGHT_STD = 0.01  # §5: zero-mean Gaussian, standard deviation 0.01
ONE_BIAS_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")  # §5: biases initialised to 1
INIT_BIAS = {"paper": 1.0, "caffe": 0.1}


class LocalResponseNorm(nn.Module):
    """§3.3 across-channel normalisation. Unlike nn.LocalResponseNorm, `alpha` is the
    paper's (PyTorch divides its alpha by n, so it would need alpha * n)."""

    def __init__(self, n: int = LRN_N, k: float = LRN_K, alpha: float = LRN_ALPHA, beta: float = LRN_BETA):
        super().__init__()
        self.n, self.k, self.alpha, self.beta = n, k, alpha, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # at least fp32: a bf16 sum of squares would lose the small alpha * sum term
        xf = x.to(torch.promote_types(x.dtype, torch.float32))
        sq = xf.square()
        half = self.n // 2
        padded = F.pad(sq, (0, 0, 0, 0, half, self.n - 1 - half))  # zero channels at both ends
        channels = x.shape[1]
        window = sum(padded[:, j:j + channels] for j in range(self.n))
        return (xf / (self.k + self.alpha * window).pow(self.beta)).to(x.dtype)

    def extra_repr(self) -> str:
        return f"n={self.n}, k={self.k}, alpha={self.alpha}, beta={self.beta}"


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4, padding=2)  # §3.5: 96x55x55
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)  # §3.5: 256x27x27 (after pool1)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)  # §3.5: 384x13x13, sees both groups
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)  # §3.5: 384x13x13
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)  # §3.5: 256x13x13
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)  # §3.5: 4096 (input: pool5 256x6x6)
        self.fc7 = nn.Linear(4096, 4096)  # §3.5: 4096
        self.fc8 = nn.Linear(4096, num_classes)  # §3.5: 1000-way softmax
        self.norm = LocalResponseNorm()  # §3.3, after ReLU of conv1 and conv2
        self.pool = nn.MaxPool2d(3, stride=2)  # §3.4: overlapping pooling, z=3, s=2
        self.dropout = nn.Dropout(dropout)  # §4.2

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.norm(F.relu(self.conv1(x))))  # 96x55x55 -> 96x27x27
        x = self.pool(self.norm(F.relu(self.conv2(x))))  # 256x27x27 -> 256x13x13
        x = F.relu(self.conv3(x))  # 384x13x13
        x = F.relu(self.conv4(x))  # 384x13x13
        x = self.pool(F.relu(self.conv5(x)))  # 256x13x13 -> 256x6x6
        return torch.flatten(x, 1)  # 9216

    def penultimate(self, x: torch.Tensor) -> torch.Tensor:
        """fc7 activations (4096-d): the feature space of Figure 4's neighbours."""
        x = self.dropout(F.relu(self.fc6(self.features(x))))
        return F.relu(self.fc7(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.dropout(self.penultimate(x)))


def init_weights(model: AlexNet, scheme: str = "paper") -> None:
    """§5: weights ~ N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0
    ("caffe": 0.1 instead of 1, as BVLC's reproduction did)."""
    if scheme not in INIT_BIAS:
        raise ValueError(f"init {scheme!r}: expected one of {sorted(INIT_BIAS)}")
    for name, module in model.named_children():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, INIT_WEIGHT_STD)
            nn.init.constant_(module.bias, INIT_BIAS[scheme] if name in ONE_BIAS_LAYERS else 0.0)


def build_model(num_classes: int, dropout: float = 0.5, init: str = "caffe") -> AlexNet:
    model = AlexNet(num_classes, dropout)
    init_weights(model, init)
    return model
