"""Functions run in spawned processes by tests/test_distributed.py (gloo, CPU)."""
import itertools
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from train.augment import DeviceAugment, input_stats
from train.loader import EvalShards, SampleRules, make_loader
from train.dataset_folder import load_dataset
from train.device import Compute
from train.distributed import Dist
from train.evaluation import evaluate
from train.loop import seed_epoch, train_one_epoch
from train.model import AlexNet, Architecture, build_model
from train.optim import build_optimizer

STEPS = 4


def rules(manifest) -> SampleRules:
    return SampleRules(manifest.patch_size, manifest.num_classes)


def fixed_batch(shards: Path, n: int):
    manifest, _ = load_dataset(shards)
    images, labels = zip(*itertools.islice(EvalShards(manifest.shard_paths(shards, "train"), rules(manifest)), n))
    return torch.stack([img[:, 16:240, 16:240] for img in images]), torch.tensor(labels)


def train_fixed_batch(shards: Path, rank: int, world: int, global_batch: int) -> dict:
    """STEPS steps on one fixed global batch, this rank's slice of it; deterministic
    (no dropout, no lighting noise)."""
    torch.manual_seed(0)
    manifest, stats = load_dataset(shards)
    images, labels = fixed_batch(shards, global_batch)
    per = global_batch // world
    local = (images[rank * per:(rank + 1) * per], labels[rank * per:(rank + 1) * per], None)
    model = build_model(manifest.num_classes, Architecture(dropout=0.0), init="caffe")
    net = DistributedDataParallel(model) if world > 1 else model
    opt = build_optimizer(model, "sgd", 0.001, 0.9, 0.0005)
    norm = DeviceAugment(input_stats(stats, "mean", 224), 0.0, torch.device("cpu"))
    d = Dist(rank, world)
    compute = Compute(torch.device("cpu"), torch.autocast("cpu", enabled=False), d, norm)
    losses = [train_one_epoch(net, opt, itertools.repeat(local), compute, steps=1, generator=torch.Generator(),
                              epoch=step)["loss"] for step in range(STEPS)]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    return {"losses": losses, "checksum": float(flat.double().sum()), "flat": flat}


def evaluate_sharded(shards: Path, rank: int, world: int) -> dict:
    torch.manual_seed(0)
    manifest, stats = load_dataset(shards)
    model = build_model(manifest.num_classes)
    norm = DeviceAugment(input_stats(stats, "mean", 224), 0.0, torch.device("cpu"))
    out = {}
    for split in ("holdout", "val"):
        loader = make_loader(EvalShards(manifest.shard_paths(shards, split), rules(manifest), rank, world), 8, 2, False)
        compute = Compute(torch.device("cpu"), torch.autocast("cpu", enabled=False), Dist(rank, world), norm)
        out[split] = evaluate(model, loader, compute, crop=224, views=10)
    return out


def worker(rank: int, world: int, shards: str, out_dir: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = train_fixed_batch(Path(shards), rank, world, 8)
        gathered = [torch.zeros_like(result["flat"]) for _ in range(world)]
        dist.all_gather(gathered, result["flat"])
        identical = all(torch.equal(gathered[0], g) for g in gathered)
        evals = evaluate_sharded(Path(shards), rank, world)
        draws = epoch_draws(Path(shards), rank)
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(
            {"losses": result["losses"], "identical": identical, "evals": evals, "draws": draws}))
    finally:
        dist.destroy_process_group()


def epoch_draws(shards: Path, rank: int, seed: int = 12331, epoch: int = 2) -> dict:
    """What the loop's per-epoch seeding gives this rank: a dropout mask (through the model's
    own dropout layer) and the PCA lighting draws (through DeviceAugment)."""
    _, stats = load_dataset(shards)
    dropout = AlexNet(3, Architecture()).dropout.train()
    generator = seed_epoch(seed, rank, epoch)
    mask = dropout(torch.ones(64)).tolist()
    alphas = DeviceAugment(input_stats(stats, "mean", 224), 0.1, torch.device("cpu")).draw_alphas(4, generator).tolist()
    return {"mask": mask, "alphas": alphas}
