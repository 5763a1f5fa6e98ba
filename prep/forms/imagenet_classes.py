"""An ImageNet form's class table, held to ILSVRC-2012's (shared/ilsvrc.py): the table a
form brings (Kaggle's LOC_synset_mapping.txt, the devkit's meta.mat) decides every label, so
a reversed mapping would give every image the wrong class with exit 0.

- exactly ILSVRC-2012's wnids in sorted order: ImageNet, as given;
- exactly its wnids in another order: ImageNet in sorted-wnid order, with a warning naming
  the file (the labels are the wnids' positions, never the file's line numbers);
- 1,000 classes, or any wnid outside ILSVRC-2012's mixed with a large share of its own: not
  ImageNet, refused naming the file and the wnids that differ;
- a few of its wnids (the demo, a subset): a dataset of its own, `<layout>-N-classes`, in the
  file's order -- never reported beside the paper's ImageNet figures."""
from __future__ import annotations

import sys

from shared.ilsvrc import CLASSES, ilsvrc_wnids
from shared.manifest import ClassInfo

SHOWN = 3  # wnids named in a refusal


def checked_imagenet_table(classes: list[ClassInfo], where: str, layout: str) -> tuple[list[ClassInfo], str]:
    """(classes in the order labels use, task) for a table read from `where`."""
    wnids = [c.wnid for c in classes]
    ilsvrc = ilsvrc_wnids()
    if wnids == ilsvrc:
        return classes, "imagenet"
    if set(wnids) == set(ilsvrc):
        print(f"WARNING: {where}: ILSVRC-2012's 1,000 classes, but not in sorted-wnid order; labels follow "
              f"ILSVRC-2012's order (class i = the i-th wnid in sorted order), not the file's", file=sys.stderr)
        by_wnid = {c.wnid: c for c in classes}
        return [ClassInfo(i, w, by_wnid[w].name) for i, w in enumerate(ilsvrc)], "imagenet"
    strangers = [w for w in wnids if w not in set(ilsvrc)]
    if len(classes) >= CLASSES or (strangers and len(classes) - len(strangers) > CLASSES // 2):
        missing = sorted(set(ilsvrc) - set(wnids))
        raise ValueError(f"{where}: {len(classes):,} classes, not ILSVRC-2012's 1,000: {len(strangers)} wnids are not "
                         f"ILSVRC-2012's (e.g. {', '.join(strangers[:SHOWN]) or '-'}), {len(missing)} of its wnids "
                         f"are missing (e.g. {', '.join(missing[:SHOWN]) or '-'}). An ImageNet form must list "
                         f"ILSVRC-2012's classes (the project ships them: shared/ilsvrc2012_classes.txt)")
    return classes, f"{layout}-{len(classes)}-classes"
