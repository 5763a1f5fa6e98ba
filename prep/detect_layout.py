"""Recognise what `--src` holds and read it into a `Source`: the first form of prep/forms/
whose `detect` answers (or the one --form names), then the rules every form shares -- a
dataset with something to train on, keys that follow ImageNet's splits, no ambiguous image id,
keys unique across the dataset, every archive member that was not read listed."""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from shared.manifest import Skip

from .archives import ARCHIVE_SUFFIXES, archive_root, archives_under, is_archive
from .forms import TASKS, modules, tasks_of
from .forms.devkit import keep_split_keys
from .sources import Source, drop_ambiguous_keys, ensure_unique_keys


def looked_for(forms=None) -> str:
    """What --src may hold, form by form (the forms' HOLDS)."""
    return "\n".join(f"  {', '.join(tasks_of(m)):14s} {m.HOLDS}" for m in (forms or modules()))


def detect_form(src):
    """(form module, task) of the first form that recognises `src`."""
    if not src.is_dir():
        raise FileNotFoundError(f"--src {src}: no such folder. Give --form to download "
                                f"mnist, fashion-mnist, cifar10 or cifar100 there.")
    for form in modules():
        task = form.detect(src)
        if task is not None:
            return form, task
    raise ValueError(f"--src {src}: no known layout found. Looked for:\n{looked_for()}\n"
                     f"Pass --form ({'|'.join(TASKS)}) to force one.")


def detect_task(src: Path) -> str:
    return detect_form(src)[1]


def form_for(src, task: str):
    """The form that reads `task` from `src`, which must fit it: the one that recognises it
    (ImageNet has four), or the one that downloads it there. A named form that does not fit is
    refused saying what src looks like (`--form folder` on Kaggle's layout made a one-class
    dataset named "Data" with exit 0)."""
    forms = [m for m in modules() if task in tasks_of(m)]
    for form in forms:
        if getattr(form, "DOWNLOADS", False):
            if src.is_dir() and form.detect(src) is None and (seen := looks_like(src)) is not None:
                raise ValueError(f"--src {src}: holds {seen}, not {task}; drop --form, or give --src a folder of "
                                 f"its own for {task} (it is downloaded there when missing)")
            return form
    if not src.is_dir():
        raise FileNotFoundError(f"--src {src}: no such folder")
    for form in forms:
        if form.fits(src) if hasattr(form, "fits") else form.detect(src) == task:
            return form
    seen = looks_like(src)
    raise ValueError(f"--src {src}: not {task} in a form this tool reads"
                     + (f"; it holds {seen}: drop --form" if seen else "") + f". Expected:\n{looked_for(forms)}")


def looks_like(src) -> str | None:
    """What detection finds in `src` ("imagenet (layout kaggle-imagenet)"), or None."""
    try:
        form, task = detect_form(src)
    except (ValueError, FileNotFoundError):
        return None
    return f"{task} (layout {form.LAYOUT})"


def open_src(src: Path):
    """--src as the layouts read it: the folder (resolved: listing never leaves it), or the
    archive's top -- its single top folder if it has one (prep/archives.py)."""
    if src.is_file() and is_archive(src):
        try:
            return archive_root(src)
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
            raise ValueError(f"--src {src}: not a readable archive ({exc})") from None
    if src.is_file():
        raise ValueError(f"--src {src}: a file, but not an archive this tool reads ({', '.join(ARCHIVE_SUFFIXES)})")
    return src.resolve()


def read_source(src: Path, task: str | None) -> Source:
    if task is not None and task not in TASKS:
        raise ValueError(f"--form {task!r}: expected one of {', '.join(TASKS)}")
    src = open_src(Path(src))
    form, task = detect_form(src) if task is None else (form_for(src, task), task)
    source = form.read(src, task)
    source.read_record = getattr(form, "read_record", None)
    needed = "val" if source.layout == "imagenetv2" else "train"  # ImageNetV2 is a test set only
    if not source.items.get(needed):
        raise ValueError(f"--src {src}: no labelled {'training' if needed == 'train' else 'test'} images found for "
                         f"layout {source.layout} ({len(source.skipped)} inputs skipped)")
    if source.task == "imagenet":
        keep_split_keys(source)
    if form.OWN_IDS:
        drop_ambiguous_keys(source)
    source.items = ensure_unique_keys(source.items)  # unique across the whole dataset
    for prefix, archive in archives_under(src):  # members never read: unsafe names, duplicates, links, bombs
        source.skipped += [Skip(prefix + name, "archive", why) for name, why in archive.problems]
    return source
