"""The training stage's one config. Defaults are the paper's values (section, units)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

TASKS = ("mnist", "fashion-mnist", "cifar10", "cifar100", "tiny-imagenet", "imagenet")
OPTIMIZERS = ("sgd", "adam")
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-4}  # §5 | the reference implementation's Adam


@dataclass
class TrainConfig:
    shards: Path | None = None  # dataset folder written by alexnet-prep
    shard_urls: str | None = None  # read shards from "...{name}..." URLs; manifest/stats from `shards`
    task: str | None = None  # shortcut for --shards shards/<task>
    epochs: int = 90  # §5: "roughly 90 cycles through the training set"
    batch_size: int = 128  # §5: 128 examples, GLOBAL (split across ranks; see README)
    optimizer: str = "sgd"  # §5 update rule (train/optim.py), or the reference's "adam"
    learn_rate: float | None = None  # None -> DEFAULT_LR[optimizer]; §5: 0.01
    momentum: float = 0.9  # §5
    weight_decay: float = 0.0005  # §5 (on weights, not biases); sgd only
    lr_patience: int = 5  # epochs without holdout improvement before lr /= 10 (§5: "stopped improving")
    lr_drops: int = 3  # §5: the paper reduced the rate three times
    dropout: float = 0.5  # §4.2
    # §5 biases 1 ("paper") or 0.1 ("caffe"). "paper" diverged (NaN) under §5's SGD and lagged
    # under Adam in bench/compare_init.py (README, "Initialisation"); BVLC saw flat loss with it.
    init: str = "caffe"
    crop: int = 224  # §4.1: random 224x224 patches of the 256x256 images
    pca_std: float = 0.1  # §4.1: alpha_i ~ N(0, 0.1), times sigma_i = sqrt(lambda_i) in 0-255 units
    normalize: str = "mean"  # §2 subtract per-channel mean only; "std" also divides by the std
    seed: int = 12331  # the reference implementation's
    workers: int = 4  # loader processes per rank
    shuffle_buffer: int = 2000  # samples per loader worker, shuffled before decoding
    # "worker": libjpeg-turbo in the loader processes; "device": batched on the training
    # device (nvJPEG on CUDA). Compare with bench/train_throughput.py --decode both.
    decode: str = "worker"
    steps_per_epoch: int | None = None  # None = train samples // batch_size
    eval_batch_size: int = 256
    device: str = "auto"  # auto = cuda if available, else cpu
    precision: str = "auto"  # auto = bf16 autocast on cuda, fp32 on cpu; or fp32 | bf16
    compile: bool | None = None  # None = on for cuda (torch.compile)
    logdir: Path = Path("runs")
    run_name: str | None = None  # None = <task>-<timestamp>
    extra_logging: bool = False  # parameter and gradient histograms each epoch
    fast_dev_run: bool = False  # a few steps of train, holdout and val to check everything works
    resume: Path | None = None  # checkpoint to continue from
    figures: bool = True  # Figure 3 kernels each epoch; Figure 4 after the final evaluation

    def resolved(self) -> "TrainConfig":
        cfg = replace(self)
        if cfg.shards is None:
            if cfg.task is None:
                raise ValueError("give --shards DIR or --task " + "|".join(TASKS))
            if cfg.task not in TASKS:
                raise ValueError(f"--task {cfg.task!r}: expected one of {', '.join(TASKS)}")
            cfg.shards = Path("shards") / cfg.task
        if cfg.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer {cfg.optimizer!r}: expected one of {OPTIMIZERS}")
        if cfg.learn_rate is None:
            cfg.learn_rate = DEFAULT_LR[cfg.optimizer]
        if cfg.normalize not in ("mean", "std"):
            raise ValueError(f"--normalize {cfg.normalize!r}: expected mean or std")
        if cfg.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"--precision {cfg.precision!r}: expected auto, fp32 or bf16")
        return cfg

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        paths = {f.name for f in fields(cls) if "Path" in str(f.type)}
        return cls(**{k: (Path(v) if k in paths and v is not None else v) for k, v in d.items()})


# Named like their flags (torchvision references' style): `--preset demo`.
PRESETS = {
    # 2 CPU cores, ~5 minutes: the generated shapes dataset (README "Demo").
    # Adam at 1e-4 reached zero training loss in ~30 steps there; 5e-4 and §5's SGD did not.
    "demo": dict(epochs=6, batch_size=16, optimizer="adam", workers=2, shuffle_buffer=200,
                 eval_batch_size=64, lr_patience=2),
}
