"""Training and evaluation throughput, every figure side by side in one run (ratios: these
machines are shared and noisy).

CPU plan (`--device cpu`), each configuration in a fresh process (the allocator setting of
train/device.py is process-wide), run `--repeats` times round-robin, the median kept:
  (a) today's       the paper's net as this project ran it before issue 27: eager fp32, the
                    torch LRN (train/lrn.py's reference), glibc's default allocator
  (b) new default   what `alexnet-train` now runs on this CPU: --precision auto, eager, the
                    LRN kernels, the allocator setting
  (c) ceiling       the same net with LRN off, bf16, compiled (and eager: the faster is the ceiling)
  (d) peer          torchvision's `alexnet` (one tower, no LRN), eager fp32, default allocator
  (e) 10-view       evaluation crops/s of `evaluate(views=10)` at the new defaults, from the holdout shards
  (f) end-to-end    (b) fed by the loader from the shards, per (--workers, torch threads) choice
(a)-(d) train on one synthetic uint8 batch already in memory (model + step only).

CUDA plan (`--device cuda`, in one process): (a) model-only at --batch-size and 512, its
profile (--profile) and two variants (--variants: LRN off; torchvision's alexnet), (b)
end-to-end with --decode worker and device, (c) 10-view crops/s.

    python bench/train_throughput.py --shards /work/data/mnist --device cpu
    python bench/train_throughput.py --shards shards/imagenet              # CUDA defaults
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.augment import DeviceAugment, input_stats  # noqa: E402
from train.loader import EvalShards, SampleRules, TrainStream, iterate_train_batches, make_loader  # noqa: E402
from train.dataset_folder import load_dataset  # noqa: E402
from train.device import Compute, autocast_for, eval_workers, prepare_device, resolve_precision  # noqa: E402
from train.distributed import Dist  # noqa: E402
from train.evaluation import evaluate  # noqa: E402
from train.loop import train_one_epoch  # noqa: E402
from train.model import Architecture, build_model  # noqa: E402
from train.optim import build_optimizer  # noqa: E402
from train.model import set_forms  # noqa: E402
from step_variants import DEFAULT, DeviceLighting  # noqa: E402  (bench/, the script's own folder)

# name -> (precision, lrn, compile, allocator setting, model); "f" rows add (workers, threads)
CPU_CONFIGS = {
    "a": ("fp32", "reference", False, False, "paper"),
    "b": ("auto", "as-run", False, True, "paper"),
    "c": ("bf16", "none", True, True, "paper"),
    "c-eager": ("bf16", "none", False, True, "paper"),
    "d": ("fp32", "none", False, False, "torchvision"),
    "e": ("auto", "as-run", False, True, "paper"),
}
LOADER_CHOICES = [(1, 2), (2, 2), (1, 1), (0, 2)]  # (loader workers, torch threads) for (f)


def timed_steps(model, opt, batches, steps, warmup, norm, device, amp) -> tuple[float, float]:
    """(images per second over `steps` steps, seconds of the first warm-up step)."""
    gen = torch.Generator().manual_seed(0)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    compute = Compute(device, amp, Dist(), norm)
    start = time.perf_counter()
    train_one_epoch(model, opt, batches, compute, steps=1, generator=gen, epoch=0)  # compile, caches
    sync()
    first = time.perf_counter() - start
    if warmup > 1:
        train_one_epoch(model, opt, batches, compute, steps=warmup - 1, generator=gen, epoch=0)
    sync()
    m = train_one_epoch(model, opt, batches, compute, steps=steps, generator=gen, epoch=1)
    sync()
    assert m["loss"] == m["loss"], "loss is NaN"
    return m["images_per_s"], first


def build(kind: str, lrn: str, classes: int, device):
    if kind == "torchvision":
        import torchvision

        return torchvision.models.alexnet(num_classes=classes).to(device)
    if lrn == "reference":  # the torch formulation everywhere, as before train/lrn.py's kernels
        import train.model as model_module
        from train.lrn import lrn_reference

        model_module.local_response_norm = lrn_reference
        lrn = "as-run"
    torch.manual_seed(0)
    return build_model(classes, Architecture(lrn=lrn)).to(device, memory_format=torch.channels_last)


def synthetic(batch: int, classes: int, device):
    return (torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8, device=device),
            torch.randint(0, classes, (batch,), device=device), torch.rand(batch, device=device) < 0.5)


def eval_rate(model, shards: Path, manifest, norm, device, amp, batch: int, batches: int) -> float:
    rules = SampleRules(manifest.patch_size, manifest.num_classes)
    n = batch * batches
    holdout = make_loader(EvalShards(manifest.shard_paths(shards, "holdout") * 50, rules, limit=n), batch,
                          eval_workers(1, device), device.type == "cuda")  # as alexnet-train's evaluations
    compute = Compute(device, amp, Dist(), norm)
    evaluate(model, itertools.islice(holdout, 1), compute, crop=224, views=10)
    start = time.perf_counter()
    m = evaluate(model, holdout, compute, crop=224, views=10)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return m["samples"] * 10 / (time.perf_counter() - start)


def augment_for_forms(forms: dict, inputs, device) -> DeviceAugment:
    return (DeviceLighting if forms["lighting"] == "device" else DeviceAugment)(inputs, 0.1, device)


def train_stream(shards: Path, manifest, batch: int, steps: int, decode: str = "worker") -> TrainStream:
    return TrainStream.of_train_split(manifest, shards, crop=224, buffer=2000, seed=0, steps=steps, batch_size=batch,
                                      decode=decode)


def one_cpu_config(args) -> dict:
    """Runs in a child process: one configuration, one JSON line."""
    name = args.one
    workers, threads = None, None
    if name.startswith("f"):
        workers, threads = (int(x) for x in name[1:].split("x"))
        torch.set_num_threads(threads)
        precision, lrn, compiled, tune, kind = CPU_CONFIGS["b"]
    else:
        precision, lrn, compiled, tune, kind = CPU_CONFIGS[name]
    device = torch.device("cpu")
    if tune:
        prepare_device(device)
    manifest, stats = load_dataset(args.shards)
    amp = autocast_for(device, resolve_precision(device, precision))
    norm = DeviceAugment(input_stats(stats, "mean", 224), 0.1, device)
    model = build(kind, lrn, manifest.num_classes, device)
    result = {"name": name, "threads": torch.get_num_threads()}
    if name == "e":
        result["rate"] = eval_rate(model, args.shards, manifest, norm, device, amp, args.eval_batch_size,
                                   args.eval_batches)
        return result
    opt = build_optimizer(model, "sgd", 0.01, 0.9, 0.0005)
    net = torch.compile(model) if compiled else model
    if workers is None:
        batches = itertools.repeat(synthetic(args.batch_size, manifest.num_classes, device))
    else:
        batches = iterate_train_batches(train_stream(args.shards, manifest, args.batch_size, args.warmup + args.steps), workers, False, device)
    result["rate"], result["first_step_s"] = timed_steps(net, opt, batches, args.steps, args.warmup, norm, device, amp)
    return result


ALL_CPU = list(CPU_CONFIGS) + [f"f{w}x{t}" for w, t in LOADER_CHOICES]


def cpu_plan(args) -> None:
    names = args.configs.split(",") if args.configs else ALL_CPU
    unknown = sorted(set(names) - set(ALL_CPU))
    if unknown:
        raise SystemExit(f"--configs: unknown {unknown}; choose from {','.join(ALL_CPU)}")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:
            cmd = [sys.executable, __file__, "--one", name, "--shards", str(args.shards), "--device", "cpu",
                   "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--eval-batches", str(args.eval_batches), "--eval-batch-size", str(args.eval_batch_size)]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if out.returncode:
                raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    rate = {n: statistics.median(r["rate"] for r in rs) for n, rs in runs.items()}
    first = {n: statistics.median(r.get("first_step_s", 0) for r in rs) for n, rs in runs.items()}
    print_cpu_table(args, rate, first, runs)


def print_cpu_table(args, rate: dict, first: dict, runs: dict) -> None:
    print(f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, bf16 units "
          f"{prepare_units()}, batch {args.batch_size}, {args.steps} timed steps after {args.warmup}, median of "
          f"{args.repeats} runs each (round robin), shards {args.shards}")
    what = {"a": ("(a)", "the paper's net, eager fp32, torch LRN, default allocator (before)", "img/s"),
            "b": ("(b)", "the paper's net, new CPU default (bf16, LRN kernels, allocator)", "img/s"),
            "c": ("(c)", f"LRN off, bf16, compiled (first step {first.get('c', 0):.0f} s)", "img/s"),
            "c-eager": ("(c')", "LRN off, bf16, eager", "img/s"),
            "d": ("(d)", "torchvision alexnet, eager fp32, default allocator", "img/s"),
            "e": ("(e)", f"10-view evaluation at the new defaults (batch {args.eval_batch_size} images)", "crops/s")}
    what |= {f"f{w}x{t}": ("(f)", f"end-to-end from the shards, {w} loader worker(s), {t} torch thread(s)", "img/s")
             for w, t in LOADER_CHOICES}
    print("| figure | configuration | rate |\n|---|---|---|")
    for name in (n for n in ALL_CPU if n in rate):
        fig, text, unit = what[name]
        print(f"| {fig} | {text} | {rate[name]:,.1f} {unit} |")
    ceiling = max(rate.get("c", 0), rate.get("c-eager", 0)) or None
    f_default = rate.get(f"f{LOADER_CHOICES[0][0]}x{LOADER_CHOICES[0][1]}")
    b = rate.get("b")
    ratios = [("(b)/(a)", b, rate.get("a"), 2.5), ("(b)/ceiling, ceiling = max((c), (c'))", b, ceiling, 0.85),
              ("(b)/(c) as the issue defines (c)", b, rate.get("c"), 0.85), ("(b)/(d)", b, rate.get("d"), 1.3),
              ("(e)/(b)", rate.get("e"), b, 2.5), ("(f) default/(b)", f_default, b, 0.9)]
    print("\n| ratio | measured | goal |\n|---|---|---|")
    for label, top, bottom, goal in ratios:
        if top and bottom:
            value = top / bottom
            print(f"| {label} | {value:.2f} | >= {goal} {'(met)' if value >= goal else '(MISSED)'} |")
    print("\nall runs: " + json.dumps({n: [round(r["rate"], 1) for r in rs] for n, rs in runs.items()}))


def prepare_units() -> str:
    from train.device import cpu_bf16_units

    return ", ".join(cpu_bf16_units()) or "none"


def profile_steps(net, opt, classes: int, norm, device, amp, batch: int, steps: int = 10) -> None:
    """torch.profiler over `steps` compiled steps: where (a)'s time goes, by CUDA time."""
    from torch.profiler import ProfilerActivity, profile

    batches = itertools.repeat(synthetic(batch, classes, device))
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        train_one_epoch(net, opt, batches, Compute(device, amp, Dist(), norm), steps=steps,
                        generator=torch.Generator().manual_seed(0), epoch=0)
        torch.cuda.synchronize()
    print(f"\ntop operators over {steps} steps, batch {batch}, by CUDA time:")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15, max_name_column_width=60), flush=True)


def cuda_plan(args) -> None:
    """Each row printed as soon as it is measured: a lent GPU's minutes are few, and a run cut off
    by its time limit still reports what it reached."""
    device = torch.device(args.device)  # "cpu" only in a dry run of this plan's logic
    manifest, stats = load_dataset(args.shards)
    amp = autocast_for(device, resolve_precision(device, "auto"))
    # the step's forms: today's, or those bench/step_variants.py found fastest (its fastest.json)
    forms = json.loads(args.forms.read_text()) if args.forms else dict(DEFAULT)
    norm = augment_for_forms(forms, input_stats(stats, "mean", 224), device)
    model = build("paper", "as-run", manifest.num_classes, device)
    set_forms(model, conv=forms["conv"], lrn=forms["lrn"], dropout=forms["dropout"])
    opt = build_optimizer(model, "sgd", 0.01, 0.9, 0.0005, impl=forms["opt"])
    net = model if forms["compile"] == "none" else \
        torch.compile(model, mode=None if forms["compile"] == "default" else forms["compile"])
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, bf16 autocast, channels_last, forms "
          f"{json.dumps(forms)}, loader workers {args.workers}, {args.steps} timed steps")
    print("| measurement | rate |\n|---|---|", flush=True)
    a = {}
    for b in (args.batch_size, 4 * args.batch_size):  # §5's 128 and 512
        start = time.perf_counter()
        a[b], first = timed_steps(net, opt, itertools.repeat(synthetic(b, manifest.num_classes, device)),
                                  args.steps, args.warmup, norm, device, amp)
        print(f"| (a) model-only training, batch {b} | {a[b]:,.0f} images/s (first step {first:.0f} s, "
              f"all {time.perf_counter() - start:.0f} s) |", flush=True)
    for decode in ("worker", "device"):
        batches = iterate_train_batches(train_stream(args.shards, manifest, args.batch_size, args.warmup + args.steps, decode), args.workers,
                                        True, device)
        try:
            rate = timed_steps(net, opt, batches, args.steps, args.warmup, norm, device, amp)[0]
        except Exception as exc:  # one path failing must not cost the other rows their measurement
            print(f"| (b) end-to-end training from shards, --decode {decode} | failed: {exc!r:.300} |", flush=True)
            continue
        finally:
            batches.close()
        print(f"| (b) end-to-end training from shards, --decode {decode} | {rate:,.0f} images/s |")
        print(f"| (b)/(a), --decode {decode} | {rate / a[args.batch_size]:.2f} |", flush=True)
    c = eval_rate(model, args.shards, manifest, norm, device, amp, args.eval_batch_size, args.eval_batches)
    print(f"| (c) 10-view evaluation, eager, batch {args.eval_batch_size} | {c:,.0f} crops/s |", flush=True)
    # last: where (a)'s time goes, and what the LRN and the towers cost (a compile each)
    if args.profile:
        profile_steps(net, opt, manifest.num_classes, norm, device, amp, args.batch_size)
    variants = (("LRN off", "paper"), ("torchvision's alexnet (one tower, no LRN)", "torchvision"))
    for name, kind in variants if args.variants else ():
        other = build(kind, "none", manifest.num_classes, device).to(memory_format=torch.channels_last)
        rate = timed_steps(torch.compile(other), build_optimizer(other, "sgd", 0.01, 0.9, 0.0005),
                           itertools.repeat(synthetic(args.batch_size, manifest.num_classes, device)), args.steps,
                           args.warmup, norm, device, amp)[0]
        print(f"| (a) model-only, {name}, batch {args.batch_size} | {rate:,.0f} images/s |", flush=True)
        del other


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch-size", type=int, default=128, help="§5's 128")
    ap.add_argument("--steps", type=int, default=None, help="timed steps [200 on cuda, 8 on cpu]")
    ap.add_argument("--warmup", type=int, default=None, help="[30 on cuda, 4 on cpu]")
    ap.add_argument("--workers", type=int, default=None, help="loader workers on cuda [cores - 1]")
    ap.add_argument("--eval-batches", type=int, default=None, help="[20 on cuda, 2 on cpu]")
    ap.add_argument("--eval-batch-size", type=int, default=None, help="images per batch [512 on cuda, 256 on cpu]")
    ap.add_argument("--repeats", type=int, default=2, help="cpu: runs of each configuration")
    ap.add_argument("--configs", help=f"cpu: a comma-separated subset of {','.join(ALL_CPU)} [all]")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                    help="cuda: torch.profiler's top operators of (a) [on]")
    ap.add_argument("--variants", action=argparse.BooleanOptionalAction, default=True,
                    help="cuda: (a) also with LRN off and for torchvision's alexnet, ~40 s of compile each [on]")
    ap.add_argument("--forms", type=Path, help="cuda: the step's forms, a fastest.json of bench/step_variants.py "
                                               "[today's]")
    ap.add_argument("--plan", choices=["cpu", "cuda"], help="which plan [the device's]: --plan cuda --device cpu "
                                                         "dry-runs the CUDA plan's logic (bench/gpu_session.sh)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cuda = args.device == "cuda"
    args.steps = args.steps or (200 if cuda else 8)
    # CPU: 4 warm-up steps, as the first steps after a loader worker forks pay its copy-on-write
    # faults (~4-6 s on this machine; once per epoch in a run, 0.6% of one): (f) is the steady state
    args.warmup = args.warmup or (30 if cuda else 4)
    args.eval_batches = args.eval_batches or (20 if cuda else 2)
    args.eval_batch_size = args.eval_batch_size or (512 if cuda else 256)
    args.workers = args.workers if args.workers is not None else max(1, (torch.multiprocessing.cpu_count() or 2) - 1)
    if args.one:
        print(json.dumps(one_cpu_config(args)))
    elif (args.plan or args.device) == "cuda":
        cuda_plan(args)
    else:
        cpu_plan(args)


if __name__ == "__main__":
    main()
