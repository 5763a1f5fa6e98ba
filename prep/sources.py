"""What a source folder holds: classes, labelled items per split, and what was left out.

Each layout module turns a `--src` folder into a `Source`; nothing here decodes images.
Every path under --src ends up as a sample, a skip (an input that should have been a
sample) or an ignored entry (a file or folder that is not part of the layout's data), each
with its reason. Listing never leaves --src: a symlink pointing outside it is a skip, a
symlink loop or an unreadable folder is a skip, never a crash or a silent gap.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from shared.manifest import ClassInfo, Skip

from .archives import ArchivePath


HIDDEN = "hidden"  # the one reason for a hidden entry, wherever it is (tests/test_prep_layouts.py)


def is_hidden(name: str) -> bool:
    """Dot files (.DS_Store, .git) and macOS's `__MACOSX` resource-fork folder in zips."""
    return name.startswith(".") or name == "__MACOSX"


@dataclass(frozen=True, slots=True)
class Item:
    key: str  # webdataset-safe sample key, unique within the dataset
    label: int
    source: str  # path relative to --src ("file#n" for the n-th record of an array file)
    member: int = -1  # record index inside an array file (MNIST idx, CIFAR pickle); -1 = image file


@dataclass
class Source:
    task: str
    layout: str
    root: Path  # --src resolved, or an ArchivePath
    classes: list[ClassInfo]
    items: dict[str, list[Item]]  # "train" and optionally "val"
    skipped: list[Skip] = field(default_factory=list)  # inputs that cannot be labelled
    ignored: list[dict] = field(default_factory=list)  # folders/files deliberately left out
    read_record: Callable | None = None  # array forms: (root, item) -> the record's PIL image
    reading: str = ""  # one line: why this reading of an ambiguous shape (ImageNet or a subset of it)

    def skip(self, path: Path, split: str, reason: str) -> None:
        self.skipped.append(Skip(relative(path, self.root), split, reason))

    def ignore(self, path: Path, reason: str) -> None:
        """A file or folder left out; a hidden one is "hidden" whichever part of a layout it is in."""
        reason = HIDDEN if is_hidden(path.name) else reason
        self.ignored.append({"path": relative(path, self.root) or ".", "reason": reason})


def read_text_file(path) -> str:
    """A label or class file's text (a folder's file or an archive member): UTF-8 (a BOM is
    dropped), or UTF-16 with its BOM as Windows tools save it; anything else is refused
    naming the file, never a bare codec error."""
    data = path.read_bytes()
    try:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start:,}); save it "
                         f"as UTF-8") from None


def relative(path, root) -> str:
    """`path` relative to --src, POSIX style ("" for --src itself); folders or archives. A
    name that is not UTF-8 comes out escaped (`\\xff.jpg`): such files are skips (list_folder),
    and the manifest names them in plain text."""
    if isinstance(path, ArchivePath) and isinstance(root, ArchivePath):
        rel = str(path.relative_to(root))
    elif isinstance(path, ArchivePath):  # a member of an archive in a --src folder
        rel = "/".join(p for p in (Path(os.path.relpath(path.archive.path, root)).as_posix(), path.member) if p)
    else:
        rel = Path(os.path.relpath(path, root)).as_posix()
    rel = rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "" if rel == "." else rel


def is_utf8(name: str) -> bool:
    """os.scandir gives undecodable bytes as lone surrogates (PEP 383)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class Listing:
    """One folder's entries, sorted by name, each in exactly one list."""
    files: list[Path] = field(default_factory=list)  # regular files (or links to files inside --src)
    dirs: list[Path] = field(default_factory=list)  # folders (or links to folders inside --src)
    hidden: list[Path] = field(default_factory=list)  # names starting with '.'
    problems: list[tuple[Path, str]] = field(default_factory=list)  # what cannot be read, with the reason


def _link_problem(entry: os.DirEntry, root: Path) -> str | None:
    """Why a symlink is not read, or None for a link to a file inside --src. Links to
    folders are never followed: their files would be listed twice, or forever (a loop)."""
    try:
        os.stat(entry.path)
    except OSError as exc:
        return "symlink loop" if exc.errno == errno.ELOOP else f"broken symlink ({exc.strerror})"
    target = os.path.realpath(entry.path)
    if os.path.commonpath([target, str(root)]) != str(root):
        return f"symlink to {target}, outside --src"
    if entry.is_dir():
        if os.path.commonpath([target, entry.path]) == target:
            return "symlink loop"
        return "symlink to a folder inside --src (not followed: its files would be listed twice)"
    return None


def list_archive_folder(folder: ArchivePath) -> Listing:
    out = Listing()
    for path in folder.iterdir():
        (out.hidden if is_hidden(path.name) else out.dirs if path.is_dir() else out.files).append(path)
    return out


def list_folder(folder: Path, root: Path) -> Listing:
    """`folder`'s entries; `root` is --src resolved (symlinks may not lead out of it)."""
    if isinstance(folder, ArchivePath):
        return list_archive_folder(folder)
    out = Listing()
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        out.problems.append((folder, f"unreadable folder ({exc.strerror})"))
        return out
    for e in entries:
        path = Path(e.path)
        problem = _link_problem(e, root) if e.is_symlink() else None
        if not is_utf8(e.name):
            out.problems.append((path, "its name is not valid UTF-8 (rename it to read it)"))
        elif is_hidden(e.name):
            out.hidden.append(path)
        elif problem:
            out.problems.append((path, problem))
        elif e.is_dir():
            out.dirs.append(path)
        elif e.is_file():
            out.files.append(path)
        else:
            out.problems.append((path, "not a regular file"))
    return out


@dataclass
class Tree:
    """Everything below a folder: files at any depth, empty folders, hidden entries, problems."""
    files: list[Path] = field(default_factory=list)
    empty_dirs: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)


def walk(folder: Path, root: Path) -> Tree:
    """All entries below `folder` (real folders only: see _link_problem), files sorted."""
    tree = Tree()
    stack = [folder]
    while stack:
        current = stack.pop()
        listing = list_folder(current, root)
        tree.files += listing.files
        tree.hidden += listing.hidden
        tree.problems += listing.problems
        if not (listing.files or listing.dirs or listing.hidden or listing.problems):
            tree.empty_dirs.append(current)
        stack += reversed(listing.dirs)
    tree.files.sort()
    return tree


def account_tree(source: "Source", tree: Tree, split: str) -> None:
    """A tree's problems are skips (inputs that could not be read), hidden entries and empty
    folders ignored entries."""
    for path, reason in tree.problems:
        source.skip(path, split, reason)
    for path in tree.hidden:
        source.ignore(path, HIDDEN)
    for path in tree.empty_dirs:
        source.ignore(path, "empty folder")


SHOWN_COPIES = 3  # other copies named in an ambiguous image's skip


def drop_ambiguous_keys(source: Source) -> None:
    """In a form whose file stems are the dataset's own image ids (ImageNet's, tiny-imagenet's),
    one id twice -- a class tar listed twice, one file in two Hugging Face parts -- is
    ambiguous: every copy is a skip naming the others, never a `-dupN` sample in two
    classes or in train and holdout at once."""
    where: dict[str, list[tuple[str, Item]]] = {}
    for split, items in source.items.items():
        for item in items:
            where.setdefault(item.key, []).append((split, item))
    repeated = {key: copies for key, copies in where.items() if len(copies) > 1}
    if not repeated:
        return
    for split, items in source.items.items():
        source.items[split] = [item for item in items if item.key not in repeated]
    for key, copies in repeated.items():
        for split, item in copies:
            others = [other.source for _, other in copies if other is not item]
            named = ", ".join(others[:SHOWN_COPIES]) + (", ..." if len(others) > SHOWN_COPIES else "")
            source.skipped.append(Skip(item.source, split, f"image id {key!r} appears {len(copies)} times (also "
                                                           f"{named}): ambiguous, not read"))


def ensure_unique_keys(splits: dict[str, list[Item]]) -> dict[str, list[Item]]:
    """Sample keys unique across the dataset by construction. Keys come from file names made
    safe (`a b.jpg` and `a_b.jpg` both give `a_b`; `1.jpg` and `1.png` both `1`): the first item
    with a key keeps it; a later one gets the first `<key>-dupN` that no item holds or will hold
    (every natural key is reserved first, so a file named `1-dup1` keeps its own key).
    Deterministic: splits and items in listing order."""
    reserved = {item.key for items in splits.values() for item in items}
    used: set[str] = set()
    out: dict[str, list[Item]] = {}
    for split, items in splits.items():
        out[split] = []
        for item in items:
            key = item.key
            if key in used:
                n = 1
                while f"{item.key}-dup{n}" in used or f"{item.key}-dup{n}" in reserved:
                    n += 1
                key = f"{item.key}-dup{n}"
            used.add(key)
            out[split].append(item if key == item.key else Item(key, item.label, item.source, item.member))
    return out


def array_items(labels, num_classes: int, split: str, file_rel: str, key_prefix: str,
                   skipped: list[Skip]) -> list[Item]:
    """One item per record of an array file; a label outside the classes is a skip."""
    items = []
    for i, label in enumerate(int(x) for x in labels):
        source = f"{file_rel}#{i}"
        if 0 <= label < num_classes:
            items.append(Item(f"{key_prefix}_{i:05d}", label, source, i))
        else:
            skipped.append(Skip(source, split, f"label {label} outside 0..{num_classes - 1}"))
    return items


def ignore_rest(source: Source, folder: Path, used: set[str], reason: str) -> None:
    """Entries of `folder` not in `used` are ignored: the layout's other parts (boxes, lists)."""
    listing = list_folder(folder, source.root)
    for path in listing.files + listing.dirs + listing.hidden:
        if path.name not in used:
            source.ignore(path, reason)
    for path, problem in listing.problems:
        if path.name not in used:
            source.ignore(path, problem)


def ignore_all_but(source: Source, used: set[Path], reason: str) -> None:
    """Every entry under --src that is neither a used file nor a folder leading to one is an
    ignored entry (the array layouts: MNIST's idx files, CIFAR's pickles)."""
    on_the_way = {parent for path in used for parent in path.parents}
    stack = [source.root]
    while stack:
        listing = list_folder(stack.pop(), source.root)
        for path in listing.files + listing.hidden + [p for p, _ in listing.problems]:
            if path not in used:
                source.ignore(path, reason)
        for folder in listing.dirs:
            if folder in on_the_way:
                stack.append(folder)
            else:
                source.ignore(folder, reason)
