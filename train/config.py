"""The training stage's one config. Defaults are what produced the paper's numbers; each
field's help names the paper section (or the code) behind it and its unit. The CLI
(train/cli.py) derives one flag per field from this class and only overrides it."""
from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Literal, Optional

from shared.manifest import TASKS

from .architecture import (CONV1_PADDINGS, DROPOUT_MODES, LRN_MODES, MIN_CROP, POOL_SIZES, TOWERS,
                           Architecture, dropout_in_range)
from .schedule import SCHEDULES

FAST_DEV_STEPS = 3  # --fast-dev-run: train steps per epoch, eval batches per worker
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-4}  # §5 | the PyTorch replication's Adam (README, "Sources")


def option(default, help: str, **extra):
    """A config field with its help text (the CLI's --help shows it)."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    # ---- data
    shards: Optional[Path] = option(None, "Dataset folder written by alexnet-prep (manifest.json, stats.json).")
    task: Optional[str] = option(None, f"Shortcut for --shards shards/<task>: {', '.join(TASKS)}.")
    shard_urls: Optional[str] = option(
        None, "Read shards from URLs: '{name}' is replaced by each shard's file name (shell-quoted in pipe: "
              "commands), e.g. 'pipe:aws s3 cp s3://b/imagenet/{name} -'. Manifest and stats still come from --shards.")
    real_labels: Optional[Path] = option(
        None, "ReaL labels (real.json of google-research/reassessed-imagenet): the final evaluation also reports "
              "ReaL error@1/@5 on ImageNet's val set.")
    verify_checksums: bool = option(False, "Check every shard's sha256 against the manifest before the first step "
                                           "(sizes and sample counts are always checked).")
    # ---- schedule and optimiser (§5)
    epochs: int = option(90, "§5: 'roughly 90 cycles through the training set'.")
    batch_size: int = option(128, "§5: 128 images per step, GLOBAL: split over ranks.")
    optimizer: Literal["sgd", "adam"] = option("sgd", "sgd = §5's update rule; adam = the PyTorch replication's.")
    learn_rate: Optional[float] = option(None, "ε, §5: 0.01 for sgd (1e-4 for adam); default per optimizer.")
    bias_lr_mult: float = option(2.0, "Biases learn at this multiple of ε: 2 in cuda-convnet (epsB = 2 epsW) and "
                                      "Caffe (lr_mult 2); 1 = §5's 'equal learning rate' read literally.")
    momentum: float = option(0.9, "§5 momentum.")
    weight_decay: float = option(0.0005, "§5 weight decay, on weights only (cuda-convnet, Caffe).")
    lr_schedule: Literal[SCHEDULES] = option(
        "plateau", "§5: ε ÷ 10 when the holdout error stops improving ('plateau'), or at --lr-milestones ('step').")
    lr_patience: int = option(5, "plateau: epochs per window; ε ÷ 10 when the last window's mean holdout error@1 "
                                 "is not --lr-min-delta below the window before's.")
    lr_min_delta: float = option(0.25, "plateau: smallest improvement that counts, in percentage points of holdout "
                                      "error@1 between the two windows' means.")
    lr_milestones: str = option("20,40,60", "step: epochs after which ε ÷ 10 (Caffe's bvlc_alexnet: every 100,000 "
                                            "iterations of 256 = 20 epochs).")
    lr_drops: int = option(3, "§5: the rate was reduced three times; at most this many drops.")
    # ---- network (§3, §4.2) and initialisation (§5)
    lrn: Literal[LRN_MODES] = option(
        "as-run", "§3.3 LRN: as-run = cuda-convnet (α/n per term, within each GPU's maps); text = α per term "
                  "across all maps; none = the §3.3 ablation.")
    conv1_padding: Literal[CONV1_PADDINGS] = option(
        "as-run", "conv1: as-run = cuda-convnet's 55x55 (3 zero px right and bottom); symmetric = 2 px per side.")
    dropout: float = option(0.5, "§4.2 probability of zeroing fc6 and fc7 outputs (0 = the ablation).")
    dropout_mode: Literal[DROPOUT_MODES] = option(
        "paper", "§4.2: paper = unscaled in training, x0.5 at test (cuda-convnet2 dropout2); inverted = x2 in "
                 "training (nn.Dropout).")
    pool_size: int = option(3, "§3.4 pooling window z (stride 2): 3 overlapping; 2 = the non-overlapping ablation.")
    towers: Literal[TOWERS] = option(
        "two", "§3.2: two = the two-GPU net; one = the one-GPU net with half the kernels in conv1-conv4.")
    init: Literal["caffe", "paper"] = option(
        "caffe", "caffe = bvlc_alexnet (N(0, 0.01), fc6/fc7 0.005, biases 0.1); paper = §5 exactly (biases 1). "
                 "docs/variants.md.")
    # ---- data augmentation and input (§2, §4.1)
    crop: Optional[int] = option(None, "§4.1 crop side in px; default 224/256 of the shards' patch size.")
    pca_std: float = option(0.1, "§4.1 lighting: α_i ~ N(0, pca_std), times σ_i (0-255 units); 0 = the ablation.")
    normalize: Literal["mean-image", "mean", "std"] = option(
        "mean-image", "§2 'subtracting the mean activity over the training set from each pixel': mean-image = "
                      "cuda-convnet2 (the centre crop of the mean image, from every crop); mean = per channel; std = "
                      "per channel, also divided by the std.")
    # ---- machinery
    seed: int = option(12331, "Seed of init, data order, dropout and lighting (per rank and epoch).")
    workers: Optional[int] = option(
        None, "Loader processes per rank; default 1 on cpu (beside torch's threads: the fastest of the choices "
              "measured on 2 cores, docs/performance.md), 4 on cuda.")
    shuffle_buffer: int = option(2000, "Samples per loader worker shuffled before decoding (webdataset #439).")
    decode: Literal["worker", "device"] = option(
        "worker", "JPEG decoding: worker = loader processes (strict libjpeg-turbo); device = on the training device "
                  "(nvJPEG on CUDA).")
    steps_per_epoch: Optional[int] = option(None, "Steps per epoch; default train samples ÷ batch size.")
    eval_batch_size: int = option(256, "Images per evaluation batch (each gives 1 or 10 crops).")
    device: str = option("auto", "auto (cuda if available) | cpu | cuda | cuda:N.")
    precision: Literal["auto", "fp32", "bf16"] = option(
        "auto", "auto = bf16 autocast on cuda and on a CPU with AMX or AVX512-BF16, fp32 elsewhere (weights, "
                "optimizer state, loss and the LRN's sums stay fp32).")
    compile: Optional[bool] = option(None, "torch.compile; default on for cuda, off on cpu (slower there: "
                                           "docs/performance.md).")
    logdir: Path = option(Path("runs"), "Runs go to <logdir>/<run-name>.")
    run_name: Optional[str] = option(None, "Run folder name; default <task>-<timestamp>.")
    extra_logging: bool = option(False, "Parameter and gradient histograms each epoch.")
    fast_dev_run: bool = option(False, "A few steps of train, holdout and val to check everything works.")
    resume: Optional[Path] = option(None, "Continue from a checkpoint (last.pt): at the next epoch, or at the next "
                                          "step of one saved mid-epoch, with the same data and random draws.")
    checkpoint_every: Optional[float] = option(
        None, "Minutes between mid-epoch checkpoints into last.pt (a kill loses at most this much); default 10 on "
              "cpu, 30 on cuda; 0 = at epoch ends only.")
    figures: bool = option(True, "Figure 3 kernels each epoch; Figure 4 after the final evaluation.")

    def resolved(self, patch_size: int | None = None) -> "TrainConfig":
        """Validated copy with every derived default filled in; `patch_size` (the shards'
        side, from the manifest) fixes the crop."""
        cfg = replace(self)
        check_choices(cfg)
        if cfg.shards is None:
            if cfg.task is None:
                raise ValueError("give --shards DIR or --task " + "|".join(TASKS))
            cfg.shards = Path("shards") / cfg.task
        if cfg.learn_rate is None:
            cfg.learn_rate = DEFAULT_LR[cfg.optimizer]
        if cfg.crop is None and patch_size is not None:
            cfg.crop = crop_for_patch(patch_size)
        check_ranges(cfg, patch_size)
        return cfg

    def architecture(self) -> Architecture:
        return Architecture(lrn=self.lrn, conv1_padding=self.conv1_padding, dropout_mode=self.dropout_mode,
                            dropout=self.dropout, pool_size=self.pool_size, towers=self.towers,
                            crop=self.crop or 224)

    def milestones(self) -> list[int]:
        try:
            return sorted(int(x) for x in self.lr_milestones.split(",") if x.strip())
        except ValueError:
            raise ValueError(f"--lr-milestones {self.lr_milestones!r}: expected epochs like 20,40,60") from None

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict):
            raise ValueError(f"config is a {type(d).__name__}, expected an object")
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"config has unknown fields {unknown}; expected a subset of {sorted(known)}")
        check_types(d, "config")
        paths = {f.name for f in fields(cls) if "Path" in str(f.type)}
        return cls(**{k: (Path(v) if k in paths and v is not None else v) for k, v in d.items()})


def crop_for_patch(patch_size: int) -> int:
    """§4.1: 224 of 256, the same fraction of any other patch size (rounded down to even)."""
    return (patch_size * 224 // 256) // 2 * 2


def choices_of(name: str) -> tuple[str, ...] | None:
    hint = typing.get_type_hints(TrainConfig)[name]
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return None


def check_choices(cfg: TrainConfig) -> None:
    for f in fields(cfg):
        allowed = choices_of(f.name)
        if allowed and getattr(cfg, f.name) not in allowed:
            flag = "--" + f.name.replace("_", "-")
            raise ValueError(f"{flag} {getattr(cfg, f.name)!r}: expected one of {', '.join(allowed)}")
    if cfg.task is not None and cfg.task not in TASKS:
        raise ValueError(f"--task {cfg.task!r}: expected one of {', '.join(TASKS)}")


def finite_in(value, low: float, high: float, low_open: bool = False) -> bool:
    return math.isfinite(value) and (low < value if low_open else low <= value) and value <= high


@dataclass(frozen=True)
class Range:
    """What a field may be: the text --help and the error show, and the rule that enforces it,
    given the value and the shards' patch size (None before the shards are read)."""
    text: str
    holds: typing.Callable[[typing.Any, Optional[int]], bool]


def unless_none(rule):
    return lambda v, patch: v is None or rule(v, patch)


RANGES = {
    "epochs": Range("1..100,000", lambda v, _: 1 <= v <= 100_000),
    "batch_size": Range("1..1,048,576", lambda v, _: 1 <= v <= 1 << 20),
    "learn_rate": Range("(0, 100]", lambda v, _: finite_in(v, 0, 100, low_open=True)),
    "bias_lr_mult": Range("(0, 100]", lambda v, _: finite_in(v, 0, 100, low_open=True)),
    "momentum": Range("[0, 1)", lambda v, _: finite_in(v, 0, 1) and v < 1),
    "weight_decay": Range("[0, 1]", lambda v, _: finite_in(v, 0, 1)),
    "lr_patience": Range("1..1000", lambda v, _: 1 <= v <= 1000),
    "lr_min_delta": Range("0..100 points", lambda v, _: finite_in(v, 0, 100)),
    "lr_drops": Range("0..100", lambda v, _: 0 <= v <= 100),
    "dropout": Range("[0, 1)", lambda v, _: dropout_in_range(v)),
    "pool_size": Range("3 (§3.4) or 2", lambda v, _: v in POOL_SIZES),
    "pca_std": Range("[0, 10]", lambda v, _: finite_in(v, 0, 10)),
    "seed": Range(">= 0", lambda v, _: 0 <= v < 2**63),
    "workers": Range("0..256", unless_none(lambda v, _: 0 <= v <= 256)),
    "shuffle_buffer": Range("1..100,000", lambda v, _: 1 <= v <= 100_000),
    "eval_batch_size": Range("1..65,536", lambda v, _: 1 <= v <= 65_536),
    "steps_per_epoch": Range("1..10^9", unless_none(lambda v, _: 1 <= v <= 10**9)),
    "checkpoint_every": Range("0..1,000,000 minutes", unless_none(lambda v, _: finite_in(v, 0, 10**6))),
    "crop": Range(f"{MIN_CROP}..the shards' patch size",
                  unless_none(lambda v, patch: patch is None or MIN_CROP <= v <= patch)),
    "shard_urls": Range("a template with '{name}'", unless_none(lambda v, _: "{name}" in v)),
    "device": Range("auto, cpu, cuda or cuda:N", lambda v, _: valid_device(v)),
    "run_name": Range("one folder name inside --output-dir (no '/', not '.' or '..')",
                      unless_none(lambda v, _: is_folder_name(v))),
}


def check_ranges(cfg: TrainConfig, patch_size: int | None) -> None:
    """Every number within what the run can use, before anything starts: `--learn-rate inf`,
    1e30 or `--pca-std 1e300` would otherwise end the run in a traceback after its first step."""
    for name, rule in RANGES.items():
        if not rule.holds(getattr(cfg, name), patch_size):
            wanted = rule.text.replace("the shards' patch size", f"the shards' patch size {patch_size}")
            raise ValueError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: expected {wanted}")
    cfg.milestones()


def is_folder_name(name: str) -> bool:
    """One path component: `--run-name ../escape` wrote the run outside --output-dir."""
    return 0 < len(name.encode()) <= 255 and name not in (".", "..") and not set(name) & {"/", "\\", "\0"}


def valid_device(name: str) -> bool:
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


def check_types(values: dict, where: str) -> None:
    """Each value of a config dict (a checkpoint's, a config.json) of its field's type."""
    hints = typing.get_type_hints(TrainConfig)
    for name, value in values.items():
        hint = hints[name]
        args = typing.get_args(hint)
        allowed = tuple(a for a in args if a is not type(None)) if typing.get_origin(hint) is typing.Union else (hint,)
        if value is None and type(None) in args:
            continue
        kinds = tuple({Path: str, float: (int, float)}.get(a, a) if typing.get_origin(a) is not Literal else str
                      for a in allowed)
        flat = tuple(k for kind in kinds for k in (kind if isinstance(kind, tuple) else (kind,)))
        if not isinstance(value, flat) or (isinstance(value, bool) and bool not in flat):
            raise ValueError(f"{where}: {name} {value!r} is a {type(value).__name__}, expected "
                             f"{' or '.join(k.__name__ for k in flat)}")


# What a resume (--resume last.pt) may change: how the run is carried on, never what it trains. The
# dataset may move (--shards, --task, --shard-urls): the checkpoint's dataset fingerprint decides
# whether it is the same one. Any other field must equal the checkpoint's (a resume with --optimizer
# adam on an SGD run, another --seed or --batch-size, is refused naming the flag and both values).
# A mid-epoch checkpoint also holds workers, shuffle_buffer and decode fixed (train/mid_epoch.py).
RESUME_MAY_CHANGE = ("epochs", "workers", "checkpoint_every", "eval_batch_size", "figures", "extra_logging",
                     "verify_checksums", "device", "compile", "decode", "shuffle_buffer", "shards", "task",
                     "shard_urls", "real_labels", "logdir", "run_name", "resume")


def resume_differences(saved: dict, cfg: TrainConfig) -> list[tuple[str, object, object]]:
    """(flag, saved value, cfg's value) for each field outside RESUME_MAY_CHANGE that differs;
    `saved` is a checkpoint's (or a run folder's) config, checked by from_dict."""
    theirs, ours = TrainConfig.from_dict(saved).to_dict(), cfg.to_dict()
    return [(flags_of(name)[0], theirs[name], ours[name]) for name in ours
            if name not in RESUME_MAY_CHANGE and theirs[name] != ours[name]]


# --help's panels, in order; every field in exactly one (tests/test_cli.py)
PANELS = {
    "Data": ["shards", "task", "shard_urls", "real_labels", "verify_checksums"],
    "Optimiser and schedule (§5)": ["epochs", "batch_size", "optimizer", "learn_rate", "bias_lr_mult", "momentum",
                                    "weight_decay", "lr_schedule", "lr_patience", "lr_min_delta", "lr_milestones",
                                    "lr_drops"],
    "Network (§3, §4.2) and initialisation": ["lrn", "conv1_padding", "dropout", "dropout_mode", "pool_size",
                                              "towers", "init"],
    "Augmentation and input (§2, §4.1)": ["crop", "pca_std", "normalize"],
    "Machinery": ["workers", "shuffle_buffer", "decode", "steps_per_epoch", "eval_batch_size", "device",
                  "precision", "compile", "checkpoint_every"],
    "Run": ["logdir", "run_name", "resume", "seed", "fast_dev_run", "extra_logging", "figures"],
}
# The names torchvision's references and timm use, beside ours (the first is the primary name)
FLAGS = {"learn_rate": ("--learn-rate", "--lr"), "batch_size": ("--batch-size", "-b"), "workers": ("--workers", "-j"),
         "weight_decay": ("--weight-decay", "--wd"), "logdir": ("--output-dir", "--logdir")}


def flags_of(name: str) -> tuple[str, ...]:
    return FLAGS.get(name, ("--" + name.replace("_", "-"),))


# A run's config.json replays it (`--config`, timm's `-c`); presets are such files in one folder
# (`--preset demo` reads train/presets/demo.json). A replay is a new run: it never resumes the
# recorded one, whatever its `resume` says.
PRESET_DIR = Path(__file__).parent / "presets"
NOT_REPLAYED = ("resume",)


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def preset_path(name: str) -> Path:
    if name not in preset_names():
        raise ValueError(f"--preset {name!r}: expected one of {', '.join(preset_names())} (files in {PRESET_DIR})")
    return PRESET_DIR / f"{name}.json"


def config_fields(path: Path) -> dict:
    """The TrainConfig fields a file gives: a run's config.json or a preset (`{"config": {...}}`),
    or a flat object of fields. An unknown field, or a value of the wrong type, is refused naming
    it and the file; ranges are checked with the flags (TrainConfig.resolved)."""
    from shared.json_files import read_json

    record = read_json(path, "give a run's config.json or a preset file")
    fields_given = record.get("config", record) if isinstance(record, dict) else None
    if not isinstance(fields_given, dict):
        raise ValueError(f"{path}: expected an object of config fields (or a run's config.json)")
    fields_given = {k: v for k, v in fields_given.items() if k not in NOT_REPLAYED}
    try:
        TrainConfig.from_dict(fields_given)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    return fields_given
