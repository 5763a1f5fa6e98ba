"""The benchmark scripts still run (on the CPU, tiny settings); their figures are not asserted."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from make_fixtures import random_image

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_train_throughput_runs_on_cpu(tiny_shards):
    """Each kind of figure of the CPU plan (train/device.py's settings in a child process,
    the 10-view rate, the loader end to end) and their ratio to (b)."""
    out = run_script("bench/train_throughput.py", "--shards", str(tiny_shards), "--device", "cpu",
                     "--configs", "a,b,e,f1x2", "--batch-size", "4", "--steps", "1", "--warmup", "1",
                     "--eval-batches", "1", "--eval-batch-size", "4", "--repeats", "1")
    for row in ("| (a) |", "| (b) |", "| (e) |", "| (f) | end-to-end from the shards, 1 loader worker(s), 2 torch",
                "| (b)/(a) |", "| (e)/(b) |", "| (f) default/(b) |"):
        assert row in out, out


def test_step_variants_and_the_cuda_plan_run_on_cpu(tiny_shards, tmp_path):
    """bench/gpu_session.sh's issue-45 steps, as its CPU dry run calls them: the forms' check, rows
    with a changed factor and their combination, fastest.json and a profile; then the CUDA plan of
    train_throughput.py (model-only, end-to-end, 10-view) with those forms."""
    out = run_script("bench/step_variants.py", "--device", "cpu", "--rows", "default,opt=foreach,combined",
                     "--compile", "none", "--batch-size", "4", "--steps", "1", "--warmup", "1", "--profile-steps", "1",
                     "--out", str(tmp_path))
    assert "check: conv=block-diagonal lrn=avg-pool" in out and "| opt=foreach | opt=foreach |" in out, out
    assert (tmp_path / "fastest.json").is_file() and list(tmp_path.glob("profile-*.txt")), out
    out = run_script("bench/train_throughput.py", "--shards", str(tiny_shards), "--plan", "cuda", "--device", "cpu",
                     "--workers", "1", "--batch-size", "4", "--steps", "1", "--warmup", "1", "--eval-batches", "1",
                     "--eval-batch-size", "4", "--no-profile", "--no-variants", "--forms", str(tmp_path / "fastest.json"))
    for row in ("| (a) model-only training, batch 4 |", "| (a) model-only training, batch 16 |",
                "| (b)/(a), --decode worker |", "| (c) 10-view evaluation"):
        assert row in out, out


def test_imagenet_scale_builds_ilsvrc_shapes_and_runs_its_stages(tmp_path):
    """bench/imagenet_scale.py at 1/1000 of ImageNet: ILSVRC-2012's class totals, and prep, the
    kill-and-resume check, stats and verify over the tree, in one table."""
    sys.path.insert(0, str(ROOT / "bench"))
    from imagenet_scale import class_sizes

    sizes = class_sizes(1)
    assert (len(sizes), sum(sizes), min(sizes), max(sizes)) == (1000, 1_281_167, 732, 1300)
    src = tmp_path / "src"
    (src / "ILSVRC/Data/CLS-LOC/train/n01440764").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(5):
        random_image(rng, 90 + k, 70).save(src / f"ILSVRC/Data/CLS-LOC/train/n01440764/{k}.JPEG")
    (src / "LOC_synset_mapping.txt").write_text((ROOT / "shared" / "ilsvrc2012_classes.txt").read_text())
    out = run_script("bench/imagenet_scale.py", "--src", str(src), "--work", str(tmp_path / "w"), "--scales",
                     "0.001", "--stages", "build,prep,kill,stats,verify")
    assert "| kill: resumed byte-identical | True |" in out and "| prep: images/s |" in out, out
    assert json.loads((tmp_path / "w" / "scale-0.001" / "results.json").read_text())["build"]["train_images"] == 1000


def test_an_epoch_over_two_ranks_reads_every_train_key_once(tiny_shards):
    """bench/epoch_keys.py under torchrun (gloo, 2 ranks): each key at most once, fewer than one
    global batch left over, equal batches per rank, no hang at the end, eval counts exact."""
    out = run_script("-m", "torch.distributed.run", "--nproc_per_node", "2", "bench/epoch_keys.py", "--shards",
                     str(tiny_shards), "--workers", "2", "--batch-size", "8")
    r = json.loads(out.strip().splitlines()[-1])
    assert r["keys_seen"] == r["expected"] == r["steps"] * 8 and r["keys_twice"] == r["foreign_keys"] == 0, r
    assert r["keys_not_seen"] == r["train_samples"] - r["expected"] < 8, r
    assert r["batches_per_rank"] == [r["steps"]] * 2 and not r["hang_at_end"], r
    assert all(v["counted"] == v["manifest"] for v in r["eval"].values()), r


def test_loader_throughput_runs(tiny_shards):
    out = run_script("bench/loader_throughput.py", "--shards", str(tiny_shards), "--images", "64",
                     "--batch-size", "8", "--buffer", "8", "--workers", "1")
    assert "loader, 1 worker(s)" in out and "bare decode (simplejpeg)" in out


def test_lrn_kernels_runs_against_a_commit():
    """Both kernels load side by side (the other commit's under its own module name) and the
    table has a row per layer; HEAD against this tree, at a tiny batch."""
    out = run_script("bench/lrn_kernels.py", "--against", "HEAD", "--batch-size", "2", "--rounds", "1",
                     "--repeats", "1")
    assert "| conv1 LRN |" in out and "| conv2 LRN |" in out and "this tree / HEAD" in out, out


def test_prep_throughput_runs(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        random_image(rng, 400, 300).save(tmp_path / f"{i}.jpg", quality=90)
    out = run_script("bench/prep_throughput.py", "--src", str(tmp_path), "--no-stock", "--repeats", "1")
    assert "ours (draft + crop-box)" in out and "| 90 |" in out


def test_compare_variants_runs(tiny_shards):
    out = run_script("bench/compare_variants.py", "--shards", str(tiny_shards), "--steps", "2", "--every", "1",
                     "--eval-every", "2", "--batch-size", "4", "--seeds", "1", "--holdout", "4",
                     "--variants", "defaults", "lrn=text,init=paper")
    assert "| defaults | 1 |" in out and "| lrn=text,init=paper | 1 |" in out


def test_every_mutant_still_applies():
    """bench/mutation_check.py's mutants name code that exists (renames would silently empty it)."""
    out = run_script("bench/mutation_check.py", "--dry")
    assert "mutants," in out


def test_archive_throughput_runs(tmp_path):
    src = tmp_path / "set"
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        for i in range(5):
            random_image(rng, 120, 90).save(src / c / f"{i}.jpg", quality=90)
    out = run_script("bench/archive_throughput.py", "--src", str(src), "--repeats", "1", "--workers", "1")
    assert "| zip, stored |" in out and "| zip, deflated |" in out


def test_the_text_check_of_the_mutants_is_never_a_catch(tmp_path):
    """A mutant that only breaks another mutant's `old` text (here: the same covariance,
    written the other way round) makes test_every_mutant_still_applies fail and nothing else:
    it must be reported as survived, not caught."""
    table = tmp_path / "mutants.toml"
    table.write_text('''[[mutant]]
name = "rewritten-covariance"
what = "the covariance written the other way round (same values)"
path = "prep/compute_stats.py"
old = "cov = [[(n * outer[i][j] - sums[i] * sums[j]) / (n * n)"
new = "cov = [[(outer[i][j] * n - sums[j] * sums[i]) / (n * n)"
tests = ["tests/test_benchmarks.py::test_every_mutant_still_applies", "tests/test_prep_stats.py"]
''')
    out = run_script("bench/mutation_check.py", "--mutants", str(table), "--goal", "0")
    assert "| rewritten-covariance |" in out and "survived" in out and "caught" not in out.split("score")[0]
