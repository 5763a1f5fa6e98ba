"""The paper's training step in exact reformulations, timed side by side in one process: which part
keeps the paper's net on a GPU below a one-tower net with nn.LocalResponseNorm (docs/performance.md:
two thirds of its rate on an H200)?

Each row changes one factor of today's CUDA step (the `default` row) and times train/loop.py's
train_one_epoch on one synthetic batch already on the device (model + step only):
  conv      grouped | per-tower | block-diagonal     (train/model.py TowerConv2d)
  lrn       shifted-sum | avg-pool                   (train/lrn.py)
  compile   default | max-autotune-no-cudagraphs | reduce-overhead (CUDA graphs) | none (eager)
  batch     128 (§5) | 512
  opt       loop | foreach | fused                   (train/optim.py: §5's rule in each)
  dropout   mask | native                            (the same distribution, another random stream)
  lighting  cpu | device                             (where the PCA lighting's alphas are drawn)
The forms compute today's function (tests/test_step_variants.py checks them on the CPU, to fp32
rounding, forward and backward); on the device each conv and LRN form is checked again in fp32
against the default before any timing. After the single factors, `combined` takes the fastest
value of each factor at batch 128; torch.profiler's top kernels over 20 steps of the default and
of the fastest batch-128 row go to OUT/profile-<row>.txt, and OUT/fastest.json holds that row's
forms for bench/train_throughput.py --forms.

    python bench/step_variants.py --out /tmp/out                        # on a GPU: every row
    python bench/step_variants.py --device cpu --rows default,conv=per-tower --steps 2 --warmup 1 \
        --batch-size 4 --compile none --out /tmp/dry                   # the logic, on the CPU
"""
from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.architecture import Architecture  # noqa: E402
from train.augment import DeviceAugment, InputStats  # noqa: E402
from train.device import Compute  # noqa: E402
from train.distributed import Dist  # noqa: E402
from train.loop import train_one_epoch  # noqa: E402
from train.model import FORMS, build_model, set_forms  # noqa: E402
from train.optim import IMPLS, build_optimizer  # noqa: E402

FACTORS = {**FORMS, "compile": ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "none"),
           "opt": IMPLS, "lighting": ("cpu", "device"), "batch": ("128", "512")}
DEFAULT = {name: values[0] for name, values in FACTORS.items()}
# the order rows are timed in: most telling first, the slowest compile (autotuning) last
SINGLE = ["conv=per-tower", "conv=block-diagonal", "lrn=avg-pool", "opt=foreach", "opt=fused", "dropout=native",
          "lighting=device", "compile=reduce-overhead", "compile=none", "batch=512", "compile=max-autotune-no-cudagraphs"]


class DeviceLighting(DeviceAugment):
    """§4.1's lighting with its alphas drawn by a generator on the device (no host-to-device copy
    per step); seeded from the loop's CPU generator once."""

    def draw_alphas(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        if not hasattr(self, "device_generator"):
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            self.device_generator = torch.Generator(self.sigma_p.device).manual_seed(seed)
        return torch.randn(batch, 3, generator=self.device_generator, device=self.sigma_p.device) * self.pca_std


def parse_row(row: str, base: dict) -> dict:
    forms = dict(base)
    if row in ("default", "combined"):
        return forms
    for part in row.split("+"):
        name, _, value = part.partition("=")
        if name not in FACTORS or value not in FACTORS[name]:
            raise SystemExit(f"row {row!r}: {part!r} is not one of {sorted(f'{k}={v}' for k in FACTORS for v in FACTORS[k])}")
        forms[name] = value
    return forms


def synthetic_inputs(device, classes: int, batch: int):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, 224, 224), dtype=torch.uint8, generator=gen).to(device)
    return images, torch.randint(0, classes, (batch,), generator=gen).to(device), \
        (torch.rand(batch, generator=gen) < 0.5).to(device)


def augment_for(forms: dict, device) -> DeviceAugment:
    """Plausible ImageNet statistics: the step's cost does not depend on their values."""
    inputs = InputStats(torch.full((3, 224, 224), 118.0), torch.ones(3, 1, 1), torch.tensor([5000.0, 600.0, 200.0]),
                        torch.eye(3))
    return (DeviceLighting if forms["lighting"] == "device" else DeviceAugment)(inputs, 0.1, device)


def build_step(forms: dict, classes: int, device):
    torch.manual_seed(0)
    model = build_model(classes, Architecture()).to(device, memory_format=torch.channels_last)
    set_forms(model, conv=forms["conv"], lrn=forms["lrn"], dropout=forms["dropout"])
    opt = build_optimizer(model, "sgd", 0.01, 0.9, 0.0005, impl=forms["opt"])
    net = model if forms["compile"] == "none" else \
        torch.compile(model, mode=None if forms["compile"] == "default" else forms["compile"])
    return model, net, opt


def run_steps(net, opt, forms, args, device, steps: int, epoch: int = 0) -> dict:
    """train_one_epoch on one synthetic batch; --batch-size scales the rows' 128 and 512 (a dry run)."""
    batch = synthetic_inputs(device, args.classes, int(forms["batch"]) * args.batch_size // 128)
    amp = torch.autocast(device.type, dtype=torch.bfloat16)
    return train_one_epoch(net, opt, itertools.repeat(batch), Compute(device, amp, Dist(), augment_for(forms, device)),
                           steps=steps, generator=torch.Generator().manual_seed(epoch), epoch=epoch)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class RowTimeout(Exception):
    pass


def time_row(forms: dict, args, device, seconds: float) -> dict:
    """images/s over args.steps steps after args.warmup (the compile among them), within `seconds`."""
    def expire(*_):
        raise RowTimeout()
    signal.signal(signal.SIGALRM, expire)
    signal.alarm(max(1, int(seconds)))
    try:
        torch._dynamo.reset()
        start = time.perf_counter()
        model, net, opt = build_step(forms, args.classes, device)
        run_steps(net, opt, forms, args, device, args.warmup)
        sync(device)
        first = time.perf_counter() - start
        result = run_steps(net, opt, forms, args, device, args.steps, epoch=1)
        sync(device)
        return {"images_per_s": result["images_per_s"], "warmup_s": first, "loss": result["loss"]}
    finally:
        signal.alarm(0)


def check_forms_on_device(args, device) -> list[str]:
    """Each conv and LRN form against the default in fp32 on the device: its kernels, not the CPU's."""
    torch.manual_seed(1)
    model = build_model(args.classes, Architecture()).to(device, memory_format=torch.channels_last).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    x = (torch.randn(4, 3, 224, 224, device=device) * 50).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        reference = model(x)
        lines = []
        for conv, lrn in itertools.product(FORMS["conv"], FORMS["lrn"]):
            set_forms(model, conv=conv, lrn=lrn)
            err = ((model(x) - reference).abs().max() / reference.abs().max()).item()
            lines.append(f"conv={conv} lrn={lrn}: max |difference| / max |output| = {err:.1e} (fp32, batch 4)")
        set_forms(model)
    return lines


def profile_row(name: str, forms: dict, args, device) -> None:
    from torch.profiler import ProfilerActivity, profile

    torch._dynamo.reset()
    model, net, opt = build_step(forms, args.classes, device)
    run_steps(net, opt, forms, args, device, args.warmup)
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        run_steps(net, opt, forms, args, device, args.profile_steps, epoch=1)
        sync(device)
    key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    table = prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=70)
    (args.out / f"profile-{name}.txt").write_text(f"{name}: {json.dumps(forms)}\n{args.profile_steps} steps\n{table}\n")
    print(f"profile of {name} -> {args.out / f'profile-{name}.txt'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the JSON lines, profiles, fastest.json")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rows", help=f"comma-separated rows [default,{','.join(SINGLE)},combined]")
    ap.add_argument("--classes", type=int, default=1000, help="fc8's width [1000: ImageNet]")
    ap.add_argument("--steps", type=int, default=100, help="timed steps per row [100]")
    ap.add_argument("--warmup", type=int, default=15, help="steps before timing, the compile among them [15]")
    ap.add_argument("--profile-steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=128, help="the rows' 128 (§5), scaled (a CPU dry run) [128]")
    ap.add_argument("--compile", choices=FACTORS["compile"], help="replaces the default compile mode in every row")
    ap.add_argument("--deadline", type=float, default=400, help="seconds for all rows and profiles [400]")
    ap.add_argument("--row-limit", type=float, default=150, help="seconds at most per row [150]")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device, began = torch.device(args.device), time.perf_counter()
    base = dict(DEFAULT, **({"compile": args.compile} if args.compile else {}))
    rows = args.rows.split(",") if args.rows else ["default", *SINGLE, "combined"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}, torch {torch.__version__}, bf16 autocast, channels_last, {args.classes} classes, "
          f"{args.steps} timed steps after {args.warmup}, synthetic batch on the device", flush=True)
    for line in check_forms_on_device(args, device):
        print("  check: " + line, flush=True)
    print("| row | forms | images/s | x default | warm-up s |\n|---|---|---|---|---|", flush=True)
    results: dict[str, dict] = {}
    for row in rows:
        forms = parse_row(row, base)
        if row == "combined":
            forms = fastest_of_each(results, base)
        left = args.deadline - (time.perf_counter() - began)
        if left < 20:
            print(f"| {row} | deadline reached | | | |", flush=True)
            continue
        try:
            r = time_row(forms, args, device, min(args.row_limit, left - 10))
        except RowTimeout:
            print(f"| {row} | {fmt(forms, base)} | over {min(args.row_limit, left - 10):.0f} s | | |", flush=True)
            continue
        except Exception as exc:  # noqa: BLE001 -- a failing form must not cost the other rows their figure
            print(f"| {row} | {fmt(forms, base)} | failed: {exc!r:.200} | | |", flush=True)
            continue
        results[row] = {"forms": forms, **r}
        ratio = r["images_per_s"] / results["default"]["images_per_s"] if "default" in results else float("nan")
        print(f"| {row} | {fmt(forms, base)} | {r['images_per_s']:,.0f} | {ratio:.2f} | {r['warmup_s']:.0f} |",
              flush=True)
        with (args.out / "step_variants.jsonl").open("a") as f:
            f.write(json.dumps({"row": row, "device": name, "torch": torch.__version__, **results[row]}) + "\n")
    at_base = {k: v for k, v in results.items() if v["forms"]["batch"] == base["batch"]}
    if at_base:
        best = max(at_base, key=lambda k: at_base[k]["images_per_s"])
        (args.out / "fastest.json").write_text(json.dumps(at_base[best]["forms"]) + "\n")
        print(f"fastest at batch {base['batch']}: {best} -> {args.out / 'fastest.json'}", flush=True)
        for row in dict.fromkeys(["default", best]):
            if args.deadline - (time.perf_counter() - began) > 30 and row in results:
                profile_row(row.replace("=", "-").replace("+", "_"), results[row]["forms"], args, device)


def fastest_of_each(results: dict, base: dict) -> dict:
    """Each factor's fastest measured value at the base batch (the default where none beat it)."""
    forms = dict(base)
    for factor in FACTORS:
        if factor == "batch":
            continue
        measured = {r["forms"][factor]: r["images_per_s"] for r in results.values()
                    if r["forms"]["batch"] == base["batch"]
                    and all(r["forms"][f] == base[f] for f in FACTORS if f != factor)}
        if measured:
            forms[factor] = max(measured, key=measured.get)
    return forms


def fmt(forms: dict, base: dict) -> str:
    changed = [f"{k}={v}" for k, v in forms.items() if v != base[k]]
    return ", ".join(changed) or "today's CUDA step"


if __name__ == "__main__":
    main()
