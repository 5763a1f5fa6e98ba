"""The four torchvision datasets, downloaded when `--src` lacks them.

torchvision downloads into a fresh folder beside `--src`; only a complete download is moved
into `--src`. A download that fails (no network, a mirror down, a bad checksum) is a refusal
naming the URLs and where the files go, and leaves `--src` as it was: before this, an offline
`--task mnist` printed a traceback and left an empty `MNIST/raw/` behind."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

TORCHVISION_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST",
                       "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


def dataset_urls(task: str) -> tuple[list[str], str]:
    """The files torchvision fetches for `task` (first mirror) and the folder under --src
    they belong in; read from torchvision's own class, so they follow its mirrors."""
    import torchvision.datasets as tvd  # imported here: only downloading needs torchvision

    cls = getattr(tvd, TORCHVISION_CLASSES[task])
    if hasattr(cls, "mirrors"):
        return [f"{cls.mirrors[0]}{name}" for name, _ in cls.resources], f"{cls.__name__}/raw/"
    return [cls.url], f"{cls.base_folder}/ (the archive unpacked)"


def _merge_into(new: Path, dest: Path) -> None:
    """Moves every file of `new` to the same place under `dest` (never replacing one)."""
    for path in sorted(new.rglob("*")):
        target = dest / path.relative_to(new)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        elif not target.exists():
            os.replace(path, target)


def download(src: Path, task: str) -> None:
    import torchvision.datasets as tvd

    cls = getattr(tvd, TORCHVISION_CLASSES[task])
    urls, where = dataset_urls(task)
    parent = src.resolve().parent
    if not parent.is_dir():
        raise FileNotFoundError(f"--src {src}: its parent folder {parent} does not exist")
    print(f"{src}: no {task} files found; downloading {len(urls)} files through torchvision "
          f"({urls[0].rsplit('/', 1)[0]}/)", file=sys.stderr)
    staging = Path(tempfile.mkdtemp(prefix=f".{src.name}.download-", dir=parent))
    try:
        for train in (True, False):
            cls(root=str(staging), train=train, download=True)
        src.mkdir(exist_ok=True)
        _merge_into(staging, src)
    except Exception as exc:  # torchvision raises RuntimeError, URLError, HTTPError, OSError, ...
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"--src {src}: no {task} files there, and downloading them failed ({reason}). Download "
                         f"{', '.join(urls)} yourself and put them in {src / where}, or pass --src where they "
                         f"are") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_if_missing(src, task: str, find: Callable[[], object], looked_for: str):
    """The folder `find()` returns, downloading the dataset first if it returns None."""
    folder = find()
    if folder is not None:
        return folder
    if not isinstance(src, Path):
        raise ValueError(f"--src {src}: the archive holds no {task} files; looked for {looked_for}")
    download(src, task)
    folder = find()
    if folder is None:
        raise ValueError(f"--src {src}: torchvision's download left no {task} files there; looked for {looked_for}")
    return folder
