"""Every allow-list tested by its complement, not only by the obvious attack: the CIFAR
unpickler's globals (other globals of the allowed modules, dotted names, `_codecs`,
`numpy.load`), archive member names (every way of climbing out) and shard names (every
near miss of `{split}-NNNNNN.tar`)."""
import io
import json
import shutil
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from make_fixtures import write_class_folders
from prep.archives import open_archive
from prep.forms.cifar import ALLOWED_GLOBALS, read_cifar_pickle
from shared.manifest import read_manifest

# globals a crafted pickle might name: each allowed module's other functions, attribute paths
# through an allowed global (protocol 4 resolves dotted names), and the usual code runners
REFUSED_GLOBALS = [
    ("numpy", "load"), ("numpy", "save"), ("numpy", "frombuffer"), ("numpy", "fromfile"), ("numpy", "array"),
    ("numpy", "ndarray.tofile"), ("numpy", "dtype.__new__"), ("numpy", "ndarray.__reduce_ex__"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct.__globals__"), ("numpy._core.multiarray", "fromfile"),
    ("numpy.core.numeric", "_frombuffer.__code__"), ("numpy._core.numeric", "ones"),
    ("_codecs", "decode"), ("_codecs", "lookup"), ("_codecs", "encode.__self__"), ("_codecs", "open"),
    ("builtins", "exec"), ("builtins", "eval"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("os", "system"), ("posix", "system"), ("subprocess", "Popen"), ("copyreg", "_reconstructor"),
    ("numpy.lib.npyio", "load"), ("numpy.lib.format", "read_array"), ("torch", "load"),
]


def short_unicode(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def calling_pickle(module: str, name: str, arg: str, protocol: int) -> bytes:
    """A pickle that calls module.name(arg) when loaded: GLOBAL (protocol 2) or STACK_GLOBAL
    (protocol 4, which resolves dotted names)."""
    if protocol == 2:
        head = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n"
        return head + b"X" + struct.pack("<I", len(arg.encode())) + arg.encode() + b"\x85R."
    return b"\x80\x04" + short_unicode(module) + short_unicode(name) + b"\x93" + short_unicode(arg) + b"\x85R."


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("module,name", REFUSED_GLOBALS)
def test_unpickler_refuses_every_other_global(tmp_path, module, name, protocol):
    path = tmp_path / "batches.meta"
    target = tmp_path / "PWNED"
    path.write_bytes(calling_pickle(module, name, str(target), protocol))
    with pytest.raises(ValueError, match=f"refused global {module}.{name}"):
        read_cifar_pickle(path)
    assert not target.exists() and not (tmp_path / "PWNED.npy").exists()


def test_the_allowed_globals_are_exactly_those_a_numpy_array_needs():
    """The complement's other side: what real CIFAR pickles (Python 2 cPickle files, numpy 1
    and 2 re-pickles at protocols 2-5) name, and nothing else."""
    assert ALLOWED_GLOBALS == {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
    assert not {g for g in REFUSED_GLOBALS} & ALLOWED_GLOBALS


# ---- archive member names --------------------------------------------------------------------
CLIMBING = ["/etc/cat.jpg", "../cat.jpg", "myset/../../cat.jpg", "myset/cat/../../../x.jpg", "./../cat.jpg",
            "myset/./../../cat.jpg", "myset/cat/..", "..", "//etc/cat.jpg"]


def write_archive(kind: str, path: Path, members: dict[str, bytes]) -> Path:
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(zipfile.ZipInfo(name), data)
    else:
        with tarfile.open(path, "w:gz" if kind == "tar.gz" else "w") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz"])
def test_no_member_name_climbs_out(tmp_path, kind):
    src = tmp_path / "myset"
    write_class_folders(src)
    members = {f"myset/{p.relative_to(src).as_posix()}": p.read_bytes() for p in sorted(src.rglob("*.jpg"))}
    image = next(iter(members.values()))
    members.update({name: image for name in CLIMBING})
    archive = open_archive(write_archive(kind, tmp_path / f"myset.{kind}", members))
    refused = {name for name, why in archive.problems if "unsafe member name" in why}
    assert refused == set(CLIMBING), sorted(set(CLIMBING) ^ refused)
    assert all(not name.startswith(("/", "..")) and ".." not in name.split("/") for name in archive.files)
    assert len(archive.files) == len(members) - len(CLIMBING)


# ---- shard names ------------------------------------------------------------------------------
NEAR_MISSES = ["train-00000.tar", "train-0000000.tar", "train-000000.tar.gz", "TRAIN-000000.tar",
               "train-000000.tar\n", " train-000000.tar", "train-000000.tar/", "./train-000000.tar",
               "x/train-000000.tar", "../train-000000.tar", "train_000000.tar", "train-00000a.tar",
               "train-\u0660\u0660\u0660\u0660\u0660\u0660.tar", "holdout-000000.tar", "val-000000.tar",
               "train-000001.tar", "train-000000.TAR", "pipe:cat train-000000.tar", "/abs/train-000000.tar",
               "train-000000.tar; touch X"]


@pytest.mark.parametrize("name", NEAR_MISSES)
def test_every_near_miss_of_a_shard_name_is_refused(tiny_shards, tmp_path, name):
    copy = tmp_path / "d"
    shutil.copytree(tiny_shards, copy)
    d = json.loads((copy / "manifest.json").read_text())
    d["splits"]["train"]["shards"][0] = name
    (copy / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="shard name .* expected 'train-000000.tar'"):
        read_manifest(copy)
