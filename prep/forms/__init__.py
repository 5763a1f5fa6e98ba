"""The input forms `alexnet-prep shard` reads: one module each, one ordered list.

Each module holds its own rules and says, at its end, what the registry needs: LAYOUT (its name
in manifest.json), HOLDS (what --src holds: the "looked for" refusal and the README's table are
made of these), OWN_IDS (file stems are the dataset's own image ids: a repeat is ambiguous),
`detect(src)` (the --form value it sees in src, or None; it may refuse a near miss naming what
does not match), `read(src, task)` -> Source, and where it applies `fits(src)` (whether a --form
naming it may read src, where that is wider than what detection gives it: ImageNet and a subset of
it share one shape), DOWNLOADS (torchvision fetches it into --src) and `read_record` (array files:
a record -> image). Detection is the first form of FORMS whose `detect` answers. Adding a form
touches its module and this list.

Nothing is imported here but the list: `alexnet-prep --help` and prep/config.py read TASKS."""
from __future__ import annotations

import importlib

# (module, the --form values it reads), in the order detection tries them: tiny-imagenet before
# the ImageNet folders (its train/ holds wnid folders too), the generic class folders last.
FORMS = (
    ("tiny_imagenet", ("tiny-imagenet",)),
    ("kaggle", ("imagenet",)),
    ("ilsvrc_archives", ("imagenet",)),
    ("huggingface", ("imagenet",)),
    ("imagenet_folders", ("imagenet",)),
    ("imagenet_subset", ("imagenet-subset",)),
    ("imagenetv2", ("imagenetv2",)),
    ("cifar", ("cifar10", "cifar100")),
    ("idx", ("mnist", "fashion-mnist")),
    ("class_folders", ("folder",)),
)
TASKS = tuple(dict.fromkeys(task for _, tasks in FORMS for task in tasks))  # the --form choices


def modules() -> list:
    """The form modules, in FORMS order (imported on first use: they bring numpy and Pillow)."""
    return [importlib.import_module(f"{__name__}.{name}") for name, _ in FORMS]


def tasks_of(module) -> tuple[str, ...]:
    return dict(FORMS)[module.__name__.rpartition(".")[2]]


def markdown_table() -> str:
    """The README's table of forms, made from the registry (tests/test_readme.py compares)."""
    rows = ["| `--form` | `--src` holds |", "|---|---|"]
    rows += [f"| {', '.join(tasks_of(m))} | {m.HOLDS} |" for m in modules()]
    return "\n".join(rows)
