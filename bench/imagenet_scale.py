"""ImageNet's size on this machine before anyone spends a GPU-week on it: ILSVRC-2012's shape built
exactly (1,281,167 training images in 1,000 class folders of 732 to 1,300, 50,000 val images
with LOC_val_solution.csv, the Kaggle layout), every file a hard link to one of a few hundred
real JPEGs, then every stage run over it, beside the same at 1/50 of the size, in one run:

    python bench/imagenet_scale.py --src ../shared/data/imagenet-kaggle-mini --work /work/scale
    python bench/imagenet_scale.py --src ... --work /tmp/s --scales 0.001 --stages build,prep,stats,verify

Stages (each scale's results go to WORK/results.json as they are measured, so a run stopped part
way resumes with the stages still missing):
  build    the tree (hard links: inodes, not data)
  prep     alexnet-prep shard with every core: wall time, images/s, peak RSS of all its processes,
           bytes written, manifest size, seconds before the first shard file appears (walk + plan)
  kill     the same prep again, SIGKILLed when half its shards are done, then the same command:
           the shards it found complete, the resume's time, and every shard's sha256 against the
           uninterrupted run's manifest
  stats, verify   alexnet-prep stats and verify: wall time, peak RSS
  loader   one whole epoch of the train shards through the training loader (1 worker) against
           bare decoding (bench/loader_throughput.py), peak RSS
  ddp      bench/epoch_keys.py under torchrun, 2 ranks (gloo): every train key counted over the
           ranks in one epoch, batches per rank, no hang at its end, holdout and val counts exact
  model    alexnet-train for --model-steps steps with a mid-epoch checkpoint, stopped (SIGTERM)
           and resumed: time to the first step, last.pt's size and its save time
The table prints per-image costs and each full/small ratio (goal: within 10%).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IMAGES, VAL_IMAGES, CLASSES, MIN_CLASS, MAX_CLASS = 1_281_167, 50_000, 1_000, 732, 1_300
STAGES = ("build", "prep", "kill", "stats", "verify", "loader", "ddp", "model")


# ---- the tree ------------------------------------------------------------------------------------------
def class_sizes(scale: float) -> list[int]:
    """ILSVRC-2012's totals: 1,000 classes of 732..1,300 summing to 1,281,167 (deterministic: the
    18,833 images short of 1,300 each are taken from every 7th class, the first down to 732), then
    scaled, at least one image a class."""
    sizes = [MAX_CLASS] * CLASSES
    short = MAX_CLASS * CLASSES - TRAIN_IMAGES
    sizes[0] = MIN_CLASS
    short -= MAX_CLASS - MIN_CLASS
    takers = list(range(7, CLASSES, 7))
    for i, c in enumerate(takers):
        sizes[c] -= short // len(takers) + (i < short % len(takers))
    assert sum(sizes) == TRAIN_IMAGES and min(sizes) == MIN_CLASS and max(sizes) == MAX_CLASS
    return sizes if scale == 1 else [max(1, round(n * scale)) for n in sizes]


def build_tree(src: Path, tree: Path, scale: float) -> dict:
    """The Kaggle layout at `scale` of ILSVRC-2012's size, hard links to the JPEGs of `src`
    (copied once into the work folder, so that the links stay on one filesystem)."""
    start = time.perf_counter()
    pool_dir = tree.parent / "pool"
    if not pool_dir.is_dir():
        pool_dir.mkdir(parents=True)
        for i, path in enumerate(sorted(src.rglob("*.JPEG"))):
            shutil.copy(path, pool_dir / f"{i:04d}.JPEG")
    pool = sorted(pool_dir.glob("*.JPEG"))
    wnids = [line.split()[0] for line in (src / "LOC_synset_mapping.txt").read_text().splitlines() if line.strip()]
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "ILSVRC/Data/CLS-LOC/val").mkdir(parents=True)
    shutil.copy(src / "LOC_synset_mapping.txt", tree / "LOC_synset_mapping.txt")
    n = 0
    for wnid, size in zip(wnids, class_sizes(scale)):
        folder = tree / "ILSVRC/Data/CLS-LOC/train" / wnid
        folder.mkdir(parents=True)
        for k in range(size):
            os.link(pool[n % len(pool)], folder / f"{wnid}_{k}.JPEG")
            n += 1
    val = max(CLASSES, round(VAL_IMAGES * scale))
    rows = ["ImageId,PredictionString"]
    for k in range(1, val + 1):
        os.link(pool[(n + k) % len(pool)], tree / f"ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_{k:08d}.JPEG")
        rows.append(f"ILSVRC2012_val_{k:08d},{wnids[(k - 1) % CLASSES]} 0 0 10 10")
    (tree / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return {"train_images": n, "val_images": val, "seconds": time.perf_counter() - start}


# ---- measuring a command ---------------------------------------------------------------------------------
def tree_memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process and all its descendants, summed (kB). Forked workers share the
    main process's pages, which the summed RSS counts once per process and PSS divides."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    rss, pss, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
            rss += int(re.search(r"^Rss:\s+(\d+)", text, re.M).group(1))
            pss += int(re.search(r"^Pss:\s+(\d+)", text, re.M).group(1))
        except (OSError, AttributeError):
            continue
    return rss, pss


def measure(cmd: list[str], watch=None, stop_when=None, log: Path | None = None) -> dict:
    """Run `cmd` in its own process group; wall time, peak RSS of its tree; `watch(elapsed)` is
    polled (its first non-None answer is kept), `stop_when()` SIGKILLs the group when true."""
    start = time.perf_counter()
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    peak, peak_pss, seen, killed = 0, 0, None, False
    while proc.poll() is None:
        rss, pss = tree_memory_kb(proc.pid)
        peak, peak_pss = max(peak, rss), max(peak_pss, pss)
        if watch is not None and seen is None:
            seen = watch(time.perf_counter() - start)
        if stop_when is not None and not killed and stop_when():
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.2)
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak / 1024, "peak_pss_mb": peak_pss / 1024,
            "status": proc.returncode, "watched": seen, "killed": killed}


def startup_seconds(log: Path, total_s: float) -> float | None:
    """Seconds before prep's progress bar started (the walk, the plan and, on a resume, checking
    the shards already complete): the command's wall time less the bar's own elapsed time."""
    found = re.findall(r"\[(?:(\d+):)?(\d+):(\d+)<", log.read_text().replace("\r", "\n")) if log.is_file() else []
    if not found:
        return None
    h, m, s = found[-1]
    return total_s - (int(h or 0) * 3600 + int(m) * 60 + int(s))


def du_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def first_shard_file(out: Path):
    return lambda elapsed: elapsed if out.is_dir() and any(out.glob("*.tar*")) else None


# ---- the stages -----------------------------------------------------------------------------------------
def stage_prep(work: Path, py: str) -> dict:
    tree, out = work / "tree", work / "shards"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [py, "-m", "prep", "shard", "--src", str(tree), "--output-dir", str(out), "--workers", str(os.cpu_count())]
    r = measure(cmd, watch=first_shard_file(out), log=work / "prep.log")
    manifest = json.loads((out / "manifest.json").read_text())
    images = sum(sum(s["shard_samples"]) for s in manifest["splits"].values())
    shutil.copy(out / "manifest.json", work / "manifest.uninterrupted.json")
    return {**r, "images": images, "images_per_s": images / r["seconds"], "bytes": du_bytes(out),
            "manifest_bytes": (out / "manifest.json").stat().st_size, "first_shard_s": r["watched"]}


def stage_kill(work: Path, py: str) -> dict:
    tree, out = work / "tree", work / "shards"
    total = sum(len(s["shards"]) for s in json.loads((work / "manifest.uninterrupted.json").read_text())
                ["splits"].values())
    shutil.rmtree(out, ignore_errors=True)
    cmd = [py, "-m", "prep", "shard", "--src", str(tree), "--output-dir", str(out), "--workers", str(os.cpu_count())]
    done = lambda: len(list((out / ".shard-info").glob("*.tar.json"))) if (out / ".shard-info").is_dir() else 0  # noqa: E731
    first = measure(cmd, stop_when=lambda: done() >= total // 2)
    at_kill = done()
    second = measure(cmd, log=work / "resume.log")
    text = (work / "resume.log").read_text()
    found = re.search(r"resuming: (\d+) of (\d+) shards", text)
    ours = json.loads((out / "manifest.json").read_text())["splits"]
    theirs = json.loads((work / "manifest.uninterrupted.json").read_text())["splits"]
    same = {name: ours[name]["shard_sha256"] == theirs[name]["shard_sha256"] for name in theirs}
    return {"killed_after_s": first["seconds"], "records_at_kill": at_kill, "shards": total,
            "found_complete": int(found.group(1)) if found else 0, "resume_s": second["seconds"],
            "status": second["status"], "byte_identical": all(same.values()), "by_split": same}


def stage_simple(work: Path, py: str, args: list[str]) -> dict:
    return measure([py, "-m", "prep", *args, "--shards", str(work / "shards")])


def stage_loader(work: Path, py: str) -> dict:
    manifest = json.loads((work / "shards" / "manifest.json").read_text())
    images = sum(manifest["splits"]["train"]["shard_samples"])
    log = work / "loader.log"
    r = measure([py, "bench/loader_throughput.py", "--shards", str(work / "shards"), "--images", str(images),
                 "--workers", "1", "--decoders", "simplejpeg"], log=log)
    rates = dict(re.findall(r"\| (bare decode \(simplejpeg\)[^|]*|loader, 1 worker\(s\)) \| (\d+)", log.read_text()))
    bare = next((float(v) for k, v in rates.items() if k.startswith("bare")), None)
    loader = float(rates["loader, 1 worker(s)"]) if "loader, 1 worker(s)" in rates else None
    return {**r, "images": images, "bare_per_s": bare, "loader_per_s": loader,
            "ratio": loader / bare if bare and loader else None}


def stage_ddp(work: Path, py: str) -> dict:
    log = work / "ddp.log"
    r = measure([py, "-m", "torch.distributed.run", "--nproc_per_node", "2", "bench/epoch_keys.py", "--shards",
                 str(work / "shards"), "--workers", "1"], log=log)
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return {**r, **(json.loads(lines[-1]) if lines else {"error": log.read_text()[-2000:]})}


def stage_model(work: Path, py: str, steps: int) -> dict:
    runs, shards = work / "runs", work / "shards"
    shutil.rmtree(runs, ignore_errors=True)
    base = [py, "-m", "train.cli", "--shards", str(shards), "--steps-per-epoch", str(steps), "--epochs", "1",
            "--workers", "1", "--no-figures", "--output-dir", str(runs), "--run-name", "m", "--checkpoint-every", "1"]
    last = runs / "m" / "last.pt"
    first = measure(base, log=work / "model.log", stop_when=lambda: last.is_file())
    text = (work / "model.log").read_text()
    size = last.stat().st_size if last.is_file() else None
    import torch  # the save time, on this disk: the state as it is, written again

    state = torch.load(last, map_location="cpu", weights_only=True)
    start = time.perf_counter()
    torch.save(state, runs / "m" / "probe.pt")
    save_s = time.perf_counter() - start
    (runs / "m" / "probe.pt").unlink()
    step = state.get("in_epoch", {}).get("step")
    resumed = measure(base + ["--resume", str(last)], log=work / "model-resume.log",
                      watch=lambda elapsed: elapsed if re.search(rf"\| {(step or 0) + 1}/{steps}",
                                                                 (work / "model-resume.log").read_text()) else None,
                      stop_when=lambda: "holdout" in (work / "model-resume.log").read_text())
    first_step = re.search(r"\| 1/%d" % steps, text)
    return {"checkpoint_bytes": size, "save_s": save_s, "saved_at_step": step, "first_run_s": first["seconds"],
            "resume_first_step_s": resumed["watched"], "first_step_seen": bool(first_step),
            "peak_rss_mb": max(first["peak_rss_mb"], resumed["peak_rss_mb"])}


# ---- the run and its table --------------------------------------------------------------------------------
def run_scale(src: Path, work: Path, scale: float, stages: list[str], py: str, model_steps: int) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    for stage in stages:
        if stage in results:
            continue
        print(f"== {time.strftime('%H:%M:%S')} scale {scale}: {stage}", file=sys.stderr, flush=True)
        if stage == "build":
            results[stage] = build_tree(src, work / "tree", scale)
        elif stage == "prep":
            results[stage] = stage_prep(work, py)
        elif stage == "kill":
            results[stage] = stage_kill(work, py)
        elif stage in ("stats", "verify"):
            results[stage] = stage_simple(work, py, [stage] + (["--workers", str(os.cpu_count())]
                                                                if stage == "stats" else []))
        elif stage == "loader":
            results[stage] = stage_loader(work, py)
        elif stage == "ddp":
            results[stage] = stage_ddp(work, py)
        elif stage == "model":
            results[stage] = stage_model(work, py, model_steps)
        path.write_text(json.dumps(results, indent=1))
    for stage, log, total in (("prep", "prep.log", "seconds"), ("kill", "resume.log", "resume_s")):
        if stage in results and "startup_s" not in results[stage]:  # also for results measured before
            results[stage]["startup_s"] = startup_seconds(work / log, results[stage][total])
    path.write_text(json.dumps(results, indent=1))
    return results


def per_image(results: dict, stage: str) -> float | None:
    images = results.get("prep", {}).get("images") or results.get("build", {}).get("train_images")
    seconds = results.get(stage, {}).get("seconds")
    return seconds / images * 1e3 if seconds and images else None


def print_table(by_scale: dict[float, dict]) -> None:
    scales = sorted(by_scale, reverse=True)
    print(f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, git "
          f"{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}")
    head = " | ".join(f"scale {s:g}" for s in scales)
    print(f"| measurement | {head} | ratio (first / last) |\n|---|" + "---|" * len(scales) + "---|")
    rows = [("images (train + holdout + val)", lambda r: r.get("prep", {}).get("images"), "{:,}"),
            ("build: seconds", lambda r: r.get("build", {}).get("seconds"), "{:.0f}"),
            ("prep: ms per image", lambda r: per_image(r, "prep"), "{:.2f}"),
            ("prep: images/s", lambda r: r.get("prep", {}).get("images_per_s"), "{:.0f}"),
            ("prep: peak RSS, all processes (MB)", lambda r: r.get("prep", {}).get("peak_rss_mb"), "{:.0f}"),
            ("prep: peak PSS, all processes (MB)", lambda r: r.get("prep", {}).get("peak_pss_mb"), "{:.0f}"),
            ("prep: seconds before the first shard file", lambda r: r.get("prep", {}).get("first_shard_s"), "{:.1f}"),
            ("prep: bytes written per image", lambda r: (r.get("prep", {}).get("bytes") or 0)
             / max(1, r.get("prep", {}).get("images") or 1), "{:,.0f}"),
            ("manifest.json bytes", lambda r: r.get("prep", {}).get("manifest_bytes"), "{:,}"),
            ("kill: shards found complete / of", lambda r: (f"{r['kill']['found_complete']} / {r['kill']['shards']}"
                                                            if "kill" in r else None), "{}"),
            ("kill: resumed byte-identical", lambda r: r.get("kill", {}).get("byte_identical"), "{}"),
            ("prep: seconds before the progress bar (walk, plan)", lambda r: r.get("prep", {}).get("startup_s"),
             "{:.0f}"),
            ("kill: the resume's seconds before its bar (+ checking kept shards)",
             lambda r: r.get("kill", {}).get("startup_s"), "{:.0f}"),
            ("kill: killed run + resume / uninterrupted (wall)", lambda r: (
                (r["kill"]["killed_after_s"] + r["kill"]["resume_s"]) / r["prep"]["seconds"]
                if "kill" in r and "prep" in r else None), "{:.2f}"),
            ("stats: ms per image", lambda r: per_image(r, "stats"), "{:.2f}"),
            ("stats: peak RSS (MB)", lambda r: r.get("stats", {}).get("peak_rss_mb"), "{:.0f}"),
            ("verify: ms per image", lambda r: per_image(r, "verify"), "{:.3f}"),
            ("verify: peak RSS (MB)", lambda r: r.get("verify", {}).get("peak_rss_mb"), "{:.0f}"),
            ("loader: images/s / bare decode", lambda r: r.get("loader", {}).get("ratio"), "{:.2f}"),
            ("loader: peak RSS (MB)", lambda r: r.get("loader", {}).get("peak_rss_mb"), "{:.0f}"),
            ("ddp, 2 ranks: train keys seen / expected", lambda r: (f"{r['ddp']['keys_seen']:,} / "
                                                                  f"{r['ddp']['expected']:,}" if "keys_seen" in
                                                                  r.get("ddp", {}) else None), "{}"),
            ("ddp: keys twice, keys never seen", lambda r: (f"{r['ddp']['keys_twice']}, {r['ddp']['keys_not_seen']}"
                                                            if "keys_twice" in r.get("ddp", {}) else None), "{}"),
            ("ddp: batches per rank; hang at the end", lambda r: (f"{r['ddp']['batches_per_rank']}; "
                                                                  f"{r['ddp']['hang_at_end']}" if "hang_at_end" in
                                                                  r.get("ddp", {}) else None), "{}"),
            ("ddp: holdout, val counted = manifest", lambda r: (all(v["counted"] == v["manifest"] for v in
                                                                    r["ddp"]["eval"].values())
                                                                if "eval" in r.get("ddp", {}) else None), "{}"),
            ("ddp: loader images/s per rank", lambda r: (sum(r["ddp"]["images_per_s_per_rank"]) / 2
                                                         if "images_per_s_per_rank" in r.get("ddp", {}) else None),
             "{:.0f}"),
            ("model: last.pt bytes", lambda r: r.get("model", {}).get("checkpoint_bytes"), "{:,}"),
            ("model: save seconds", lambda r: r.get("model", {}).get("save_s"), "{:.1f}"),
            ("model: resume to its first step (s)", lambda r: r.get("model", {}).get("resume_first_step_s"),
             "{:.0f}")]
    for name, get, fmt in rows:
        values = [get(by_scale[s]) for s in scales]
        cells = [fmt.format(v) if v is not None else "–" for v in values]
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        ratio = f"{numeric[0] / numeric[-1]:.2f}" if len(numeric) == len(values) > 1 and numeric[-1] else "–"
        print(f"| {name} | {' | '.join(cells)} | {ratio} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, required=True, help="a Kaggle-layout folder of real JPEGs (its mapping file)")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (outside the repository)")
    ap.add_argument("--scales", default="1,0.02", help="fractions of ILSVRC-2012's size [1,0.02]")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {','.join(STAGES)}")
    ap.add_argument("--model-steps", type=int, default=300)
    args = ap.parse_args()
    stages = args.stages.split(",")
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f"--stages: unknown {sorted(unknown)}")
    by_scale = {float(s): run_scale(args.src, args.work / f"scale-{s}", float(s), stages, sys.executable,
                                    args.model_steps) for s in args.scales.split(",")}
    print_table(by_scale)


if __name__ == "__main__":
    main()
