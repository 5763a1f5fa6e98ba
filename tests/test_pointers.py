"""Every repository path and docs anchor the code, docs and README name exists, so a pointer
cannot go stale unnoticed (a module renamed, a section retitled)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("prep", "train", "shared", "tests", "bench", "docs", ".ci")
# a path inside the repository, as text names one: prep/forms/kaggle.py, or a docs page with a #heading anchor
POINTER = re.compile(r"(?<![\w./-])((?:%s)/[\w./-]*\w)(#[\w-]+)?" % "|".join(re.escape(t) for t in TOP))
SUFFIXES = (".py", ".md", ".toml", ".sh", ".json", ".txt", ".png")


def tracked() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if n.endswith((".py", ".md", ".toml", ".sh", ".cfg")) or n in ("Makefile",)]


def anchors(markdown: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for line in markdown.read_text().splitlines():
        if not line.startswith("#"):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def pointers() -> list[tuple[str, str, str | None]]:
    found = []
    for path in tracked():
        for match in POINTER.finditer(path.read_text(errors="replace")):
            target, anchor = match.group(1).rstrip("."), match.group(2)
            if "*" in target or "<" in target or "{" in target or not target.endswith(SUFFIXES):
                continue  # a pattern, or not a file (a TensorBoard tag, a path inside a test's dataset)
            found.append((str(path.relative_to(ROOT)), target, anchor[1:] if anchor else None))
    return found


def test_every_named_path_and_anchor_exists():
    missing = []
    for where, target, anchor in pointers():
        full = ROOT / target
        if not full.exists():
            missing.append(f"{where}: {target}")
        elif anchor and full.suffix == ".md" and anchor not in anchors(full):
            missing.append(f"{where}: {target}#{anchor}")
    assert not missing, "\n".join(sorted(set(missing)))


def test_the_check_sees_pointers():
    assert ("README.md", "docs/trust.md", None) in pointers()
    assert any(a for _, t, a in pointers() if t.endswith(".md"))
