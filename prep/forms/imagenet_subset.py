"""An ImageNet subset as people hold it -- fast.ai's Imagenette and Imagewoof, ImageNet-100:
`train/<wnid>/`, `val/<wnid>/` naming some of ILSVRC-2012's classes.

It is a dataset of its own: its classes are its folders in wnid order, named from ILSVRC-2012's
table (shipped with the project), and every image is kept whatever its file name says about its
origin -- Imagewoof2's train/ holds images named ILSVRC2012_val_NNNNNNNN on purpose, and most of
its val/ images are named like training images. Keys and labels are those of `--form folder`
(`<wnid>_<stem>`), so nothing in a file name can collide with another split's. Which trees are
subsets and which are ImageNet: prep/forms/imagenet_folders.py."""
from __future__ import annotations

from shared.ilsvrc import ilsvrc_table
from shared.manifest import ClassInfo

from ..sources import Source
from .class_folders import read_class_folders
from .imagenet_folders import reading, wnid_folder_names


def read_imagenet_subset(src) -> Source:
    source = read_class_folders(src)
    names = dict(ilsvrc_table())
    # a wnid of the full ImageNet (21k) has no ILSVRC-2012 name: the wnid names it
    source.classes = [ClassInfo(c.index, c.name, names.get(c.name, c.name)) for c in source.classes]
    source.layout = LAYOUT
    return source


# ---- the form (prep/forms/__init__.py) --------------------------------------------------------
LAYOUT = "imagenet-subset"
HOLDS = ("an ImageNet subset (Imagenette, Imagewoof, ImageNet-100): `train/<wnid>/`, `val/<wnid>/` naming some of "
         "ILSVRC-2012's classes; a dataset of its own named after the folder, every image kept")
OWN_IDS = False


def detect(src) -> str | None:
    found = reading(src)
    return "imagenet-subset" if found and found[0] == "imagenet-subset" else None


def fits(src) -> bool:
    """--form imagenet-subset: any tree of wnid class folders may be read as a dataset of its own."""
    return bool(wnid_folder_names(src))


def read(src, task: str) -> Source:
    source = read_imagenet_subset(src)
    found = reading(src)
    source.reading = found[1] if found and found[0] == "imagenet-subset" else \
        f"read as a {len(source.classes):,}-class ImageNet subset (--form imagenet-subset)"
    return source
