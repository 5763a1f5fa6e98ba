"""Mutation check: does the suite fail when the paper is broken?

    python bench/mutation_check.py                 # every mutant, 7.5 minutes on 2 cores (2026-11-27)
    python bench/mutation_check.py --only lrn-alpha --only sgd-decay-lr

The mutants live in bench/mutants.toml.
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
import tomllib
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


MUTANTS_FILE = ROOT / "bench" / "mutants.toml"


def load_mutants(path: Path = MUTANTS_FILE) -> tuple[list[Mutant], list[tuple[str, str]]]:
    table = tomllib.loads(path.read_text())
    mutants = [Mutant(m["name"], m["path"], m["old"], m["new"], tuple(m["tests"]), m["what"]) for m in table["mutant"]]
    return mutants, [(e["name"], e["why"]) for e in table.get("equivalent", [])]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line]


def copy_repo(dst: Path) -> None:
    for rel in tracked_files():
        if (ROOT / rel).is_file():  # uncommitted deletions
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)


# The text check that each listed mutant still applies fails on every mutated copy (the mutant's
# `old` text is gone): it must never count as a catch.
NOT_A_CATCH = "tests/test_benchmarks.py::test_every_mutant_still_applies"


def run_tests(repo: Path, tests: tuple[str, ...], timeout: int) -> tuple[int, float]:
    """pytest's exit status (0 passed, 1 a test failed, 2+ errors) and the seconds taken."""
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               "--deselect", NOT_A_CATCH, *tests],
                              cwd=repo, capture_output=True, text=True, timeout=timeout,
                              env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin", "HOME": str(repo)})
        status = proc.returncode
    except subprocess.TimeoutExpired:
        status = 124  # a hang counts as caught: the suite did not pass
    return status, time.perf_counter() - start


def check_baselines(mutants: list[Mutant], timeout: int) -> list[str]:
    """Each selection of tests must pass on the unmutated copy: otherwise a broken environment
    (a missing module, a failing test) would read as every mutant caught."""
    failing = []
    with tempfile.TemporaryDirectory() as tmp:
        copy_repo(Path(tmp))
        for tests in dict.fromkeys(m.tests for m in mutants):
            status, _ = run_tests(Path(tmp), tests, timeout)
            if status != 0:
                failing.append(f"{' '.join(tests)} (pytest exit status {status})")
    return failing


def check(mutant: Mutant, timeout: int) -> tuple[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        copy_repo(repo)
        path = repo / mutant.path
        text = path.read_text()
        if text.count(mutant.old) != 1:
            return f"not applied ({text.count(mutant.old)} matches: update the mutant)", 0.0
        path.write_text(text.replace(mutant.old, mutant.new))
        status, seconds = run_tests(repo, mutant.tests, timeout)
    # 1: a test failed on the mutant; anything else non-zero (an import error, a hang) still
    # stops the suite but names no test, so it is shown apart
    if status == 5:
        return "not judged (no test ran)", seconds
    return {0: "survived", 1: "caught"}.get(status, f"caught (pytest exit status {status})"), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", help="run the named mutants only")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--goal", type=float, default=0.95)
    ap.add_argument("--dry", action="store_true", help="only check that every mutant applies")
    ap.add_argument("--mutants", type=Path, default=MUTANTS_FILE, help="the mutants' table")
    args = ap.parse_args()
    mutants, equivalent = load_mutants(args.mutants)
    if args.dry:
        bad = [m.name for m in mutants if (ROOT / m.path).read_text().count(m.old) != 1]
        print(f"{len(mutants)} mutants, {len(mutants) - len(bad)} apply" + (f"; not: {bad}" if bad else ""))
        sys.exit(1 if bad else 0)
    chosen = [m for m in mutants if not args.only or m.name in args.only]
    start = time.perf_counter()
    failing = check_baselines(chosen, args.timeout)
    if failing:
        sys.exit("these tests fail without any mutant, so no mutant can be judged: " + "; ".join(failing))
    rows, caught = [], 0
    for m in chosen:
        status, seconds = check(m, args.timeout)
        caught += status.startswith("caught")
        rows.append(f"| {m.name} | {m.what} | `{m.path}` | {' '.join(m.tests)} | {status} | {seconds:.0f} s |")
        print(rows[-1], flush=True)
    score = caught / len(chosen)
    print("\n| mutant | the bug | where | tests run | result | time |\n|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nEquivalent mutants (not counted):")
    for name, why in equivalent:
        print(f"- {name}: {why}")
    print(f"\nscore: {caught}/{len(chosen)} = {score:.0%} caught, {time.perf_counter() - start:.0f} s in all "
          "(including one unmutated run of each test selection)")
    sys.exit(0 if score >= args.goal else 1)


if __name__ == "__main__":
    main()
