"""Mutation check: does the suite fail when the paper is broken?

    python bench/mutation_check.py                 # every mutant, ~15 minutes on 2 cores
    python bench/mutation_check.py --only lrn-alpha --only sgd-decay-lr

Each mutant is one deliberate bug in a paper-critical place (architecture, LRN, init, the SGD
rule, decay, schedule, crops, flips, lighting, the ten views, top-k, statistics, resizing,
holdout, shuffling, resume, per-rank seeding, the untrusted-input checks). It is applied to a
temporary copy of the repository, and only the tests that should catch it are run there; a
mutant is caught when they fail. Equivalent mutants (no behaviour change) are listed with the
reason and not counted. Prints a Markdown table and the score; exit status 1 below --goal.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions
    what: str


M = Mutant
MUTANTS = [
    M("lrn-pool-order", "train/model.py", "x = self.pool(self.norm1(F.relu(self.conv1(x))))",
      "x = self.norm1(self.pool(F.relu(self.conv1(x))))", ("tests/test_model.py",), "LRN and max-pool swapped after conv1"),
    M("lrn-alpha", "train/model.py", "return LocalResponseNorm(LRN_SCALE / LRN_SIZE, groups=groups)",
      "return LocalResponseNorm(LRN_SCALE, groups=groups)", ("tests/test_model.py",), "LRN alpha per term, not alpha/n"),
    M("lrn-groups", "train/model.py", "return LocalResponseNorm(LRN_SCALE / LRN_SIZE, groups=groups)",
      "return LocalResponseNorm(LRN_SCALE / LRN_SIZE, groups=1)", ("tests/test_model.py",), "LRN mixes the two GPUs' maps"),
    M("lrn-k", "train/model.py", "LRN_K, LRN_SIZE, LRN_SCALE, LRN_BETA = 2.0, 5, 1e-4, 0.75",
      "LRN_K, LRN_SIZE, LRN_SCALE, LRN_BETA = 1.0, 5, 1e-4, 0.75", ("tests/test_model.py",), "LRN k = 1"),
    M("conv1-padding", "train/model.py", "return 0, (modules - 1) * 4 + 11 - side", "return 2, 2",
      ("tests/test_model.py",), "conv1 padded 2 on every side by default"),
    M("conv4-groups", "train/model.py", "self.conv4 = nn.Conv2d(k3, k4, 3, padding=1, groups=g)",
      "self.conv4 = nn.Conv2d(k3, k4, 3, padding=1)", ("tests/test_model.py",), "conv4 sees both GPUs' maps"),
    M("pool-stride", "train/model.py", "self.pool = nn.MaxPool2d(arch.pool_size, stride=2)",
      "self.pool = nn.MaxPool2d(arch.pool_size, stride=arch.pool_size)", ("tests/test_model.py",),
      "non-overlapping pooling by default"),
    M("dropout-train-scale", "train/model.py", "return x * keep if self.mode == \"paper\" else",
      "return x * keep * 2 if self.mode == \"paper\" else", ("tests/test_model.py",), "paper dropout rescales in training"),
    M("dropout-test-scale", "train/model.py", "return x * (1 - self.p) if self.mode == \"paper\" else x",
      "return x", ("tests/test_model.py",), "paper dropout without the test-time x0.5"),
    M("init-bias", "train/model.py", "\"caffe\": {\"weight_std\": {**{name: 0.01 for name in LAYERS}, \"fc6\": 0.005, \"fc7\": 0.005}, \"bias\": 0.1}",
      "\"caffe\": {\"weight_std\": {**{name: 0.01 for name in LAYERS}, \"fc6\": 0.005, \"fc7\": 0.005}, \"bias\": 1.0}",
      ("tests/test_model.py",), "Caffe init with biases 1"),
    M("init-fc-std", "train/model.py", "\"fc6\": 0.005, \"fc7\": 0.005}", "\"fc6\": 0.01, \"fc7\": 0.01}",
      ("tests/test_model.py",), "Caffe init without fc6/fc7 std 0.005"),
    M("sgd-decay-lr", "train/optim.py", "v.mul_(m).add_(p, alpha=-wd * lr)", "v.mul_(m).add_(p, alpha=-wd)",
      ("tests/test_optim.py",), "weight decay not scaled by the learning rate"),
    M("sgd-momentum", "train/optim.py", "v.mul_(m).add_(p, alpha=-wd * lr)", "v.mul_(m * m).add_(p, alpha=-wd * lr)",
      ("tests/test_optim.py",), "momentum applied twice"),
    M("bias-decay", "train/optim.py", "{\"params\": no_decay, \"weight_decay\": 0.0,",
      "{\"params\": no_decay, \"weight_decay\": weight_decay,", ("tests/test_optim.py",), "biases get weight decay"),
    M("bias-lr", "train/optim.py", "group[\"lr\"] = lr * group[\"lr_mult\"]", "group[\"lr\"] = lr",
      ("tests/test_optim.py",), "biases at the weights' rate"),
    M("schedule-direction", "train/schedule.py", "return before - last < self.min_delta",
      "return last - before < self.min_delta", ("tests/test_schedule.py",), "plateau rule compares the wrong way"),
    M("schedule-delta", "train/schedule.py", "self.min_delta, self.max_drops = patience, min_delta_points / 100, max_drops",
      "self.min_delta, self.max_drops = patience, 0.0, max_drops", ("tests/test_schedule.py",),
      "plateau rule without a minimum improvement"),
    M("schedule-milestone", "train/schedule.py", "return epoch + 1 in self.milestones", "return epoch in self.milestones",
      ("tests/test_schedule.py",), "step milestones one epoch late"),
    M("loop-no-schedule", "train/loop.py", "drop = run.schedule.step(epoch, held[\"error@1\"])", "drop = None",
      ("tests/test_train_loop.py", "-k", "schedule"), "the loop never steps the schedule"),
    M("loop-no-flips", "train/loop.py", "x = augment(images, alphas, flips)", "x = augment(images, alphas)",
      ("tests/test_train_loop.py", "-k", "mirrors"), "the loop drops the mirror flags"),
    M("crop-range", "train/augment.py", "return rng.randint(0, height - crop), rng.randint(0, width - crop)",
      "return rng.randint(0, height - crop - 1), rng.randint(0, width - crop)", ("tests/test_augment.py",),
      "random crops never touch the bottom edge"),
    M("flip-rate", "train/augment.py", "rng.random() < 0.5", "rng.random() < 0.3", ("tests/test_augment.py",),
      "mirroring with p = 0.3"),
    M("lighting-lambda", "train/augment.py", "sigma = inputs.eigenvalues.clamp(min=0).sqrt()",
      "sigma = inputs.eigenvalues.clamp(min=0)", ("tests/test_augment.py",), "lighting scaled by lambda, not sigma"),
    M("mean-image-corner", "train/augment.py", "mean = centre_crop(torch.from_numpy(", "mean = (lambda m, c: m[..., :c, :c])(torch.from_numpy(",
      ("tests/test_augment.py",), "top-left crop of the mean image"),
    M("ten-views-logits", "train/loop.py", "probs.append(F.softmax(model(augment(chunk)).float(), dim=1))",
      "probs.append(model(augment(chunk)).float())", ("tests/test_augment.py",), "10 views: logits averaged, not softmax"),
    M("top-k", "train/loop.py", "def count_topk_correct(probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5))",
      "def count_topk_correct(probs: torch.Tensor, labels: torch.Tensor, ks=(1, 4))", ("tests/test_augment.py",),
      "top-4 reported as top-5"),
    M("ten-views-corner", "train/augment.py", "x[..., h - crop:, w - crop:], centre_crop(x, crop)]",
      "x[..., h - crop:, :crop], centre_crop(x, crop)]", ("tests/test_augment.py",), "one corner view repeated"),
    M("stats-partial-chunk", "prep/compute_stats.py", "    if chunk:\n        _accumulate_chunk(chunk, acc)\n", "\n",
      ("tests/test_prep_stats.py",), "stats skip each shard's last partial chunk"),
    M("stats-covariance", "prep/compute_stats.py", "cov = [[(n * outer[i][j] - sums[i] * sums[j]) / (n * n)",
      "cov = [[(n * outer[i][j]) / (n * n)", ("tests/test_prep_stats.py",), "covariance not centred"),
    M("resize-longer-side", "shared/patch.py", "scale = size / min(width, height)", "scale = size / max(width, height)",
      ("tests/test_prep_images.py",), "longer side to 256"),
    M("holdout-unstratified", "prep/plan.py", "    holdout = [it for it in items if it.key in chosen]",
      "    chosen = {it.key for it in items[:count]}\n    holdout = [it for it in items if it.key in chosen]",
      ("tests/test_prep_layouts.py", "-k", "stratified"), "holdout = the first images listed (one class)"),
    M("shuffle-buffer", "train/data.py", "i = rng.randrange(size)", "i = 0", ("tests/test_data.py",),
      "the shuffle buffer yields in file order"),
    M("resume-velocity", "train/loop.py", "run.optimizer.load_state_dict(state[\"optimizer\"])", "pass",
      ("tests/test_train_loop.py", "-k", "resume"), "resume forgets the optimizer's velocity"),
    M("rank-seeding", "train/loop.py", "torch.manual_seed(derive_seed(seed, rank, epoch, \"dropout\"))",
      "torch.manual_seed(derive_seed(seed, 0, epoch, \"dropout\"))", ("tests/test_distributed.py", "-k", "differ"),
      "every rank draws the same dropout masks"),
    M("unpickler-open", "prep/array_layouts.py", "if (module, name) not in ALLOWED_GLOBALS:", "if False:",
      ("tests/test_untrusted_prep.py", "-k", "pickle"), "CIFAR pickles may name any global"),
    M("shard-names", "shared/manifest.py", "if not match or match.group(1) != split or int(match.group(2)) != index:",
      "if False:", ("tests/test_untrusted_prep.py", "-k", "shard_names"), "manifest shard names unchecked"),
    M("label-range", "shared/shards.py", "if not 0 <= label < classes:", "if label < 0:",
      ("tests/test_data.py", "-k", "labels"), "class index 999 of 3 accepted"),
    M("shard-size-check", "shared/shards.py", "if actual != size:", "if False:",
      ("tests/test_untrusted_train.py", "-k", "cut_at"), "a cut shard's size unchecked"),
    M("strict-decode", "train/data.py", "return simplejpeg.decode_jpeg(data, colorspace=\"RGB\", strict=True)",
      "return simplejpeg.decode_jpeg(data, colorspace=\"RGB\", strict=False)", ("tests/test_data.py", "-k", "corrupt"),
      "damaged JPEGs decoded silently in training"),
    M("stats-nan", "shared/stats.py", "if problems:\n        raise ValueError", "if False:\n        raise ValueError",
      ("tests/test_untrusted_train.py", "-k", "statistics"), "NaN statistics accepted"),
    M("class-order", "train/checkpoint.py", "    if theirs == ours:\n        return", "    if len(theirs) == len(ours):\n        return",
      ("tests/test_untrusted_train.py", "-k", "class_order"), "classes in another order accepted"),
    M("pixel-limit", "shared/patch.py", "if width * height > max_pixels:", "if False:",
      ("tests/test_untrusted_prep.py", "-k", "huge"), "no pixel limit"),
]

EQUIVALENT = [
    ("max-pool ceil_mode=True", "for z=3, s=2 the floor and the ceiling give the same sizes (55, 27, 13 -> 27, 13, 6)"),
    ("LRN computed in fp64 instead of fp32", "the tests compare in fp64 already; only the speed changes"),
    ("draw_alphas with torch.randn(3, batch).T", "the same distribution; only which random number goes where"),
]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


def copy_repo(dst: Path) -> None:
    for rel in tracked_files():
        if (ROOT / rel).is_file():  # uncommitted deletions
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)


def run_tests(repo: Path, tests: tuple[str, ...], timeout: int) -> tuple[bool, float]:
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                              cwd=repo, capture_output=True, text=True, timeout=timeout,
                              env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "HOME": str(repo)})
        passed = proc.returncode == 0
    except subprocess.TimeoutExpired:
        passed = False  # a hang counts as caught: the suite did not pass
    return passed, time.perf_counter() - start


def check(mutant: Mutant, timeout: int) -> tuple[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        copy_repo(repo)
        path = repo / mutant.path
        text = path.read_text()
        if text.count(mutant.old) != 1:
            return f"not applied ({text.count(mutant.old)} matches: update the mutant)", 0.0
        path.write_text(text.replace(mutant.old, mutant.new))
        passed, seconds = run_tests(repo, mutant.tests, timeout)
    return ("survived" if passed else "caught"), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", help="run the named mutants only")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--goal", type=float, default=0.95)
    ap.add_argument("--dry", action="store_true", help="only check that every mutant applies")
    args = ap.parse_args()
    if args.dry:
        bad = [m.name for m in MUTANTS if (ROOT / m.path).read_text().count(m.old) != 1]
        print(f"{len(MUTANTS)} mutants, {len(MUTANTS) - len(bad)} apply" + (f"; not: {bad}" if bad else ""))
        sys.exit(1 if bad else 0)
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    start = time.perf_counter()
    rows, caught = [], 0
    for m in chosen:
        status, seconds = check(m, args.timeout)
        caught += status == "caught"
        rows.append(f"| {m.name} | {m.what} | `{m.path}` | {' '.join(m.tests)} | {status} | {seconds:.0f} s |")
        print(rows[-1], flush=True)
    score = caught / len(chosen)
    print("\n| mutant | the bug | where | tests run | result | time |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nEquivalent mutants (not counted):")
    for name, why in EQUIVALENT:
        print(f"- {name}: {why}")
    print(f"\nscore: {caught}/{len(chosen)} = {score:.0%} caught, {time.perf_counter() - start:.0f} s in all")
    sys.exit(0 if score >= args.goal else 1)


if __name__ == "__main__":
    main()
