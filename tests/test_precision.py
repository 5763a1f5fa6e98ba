"""--precision auto (bf16 where the hardware has it), what stays fp32 under it, and its record
in config.json; the CPU allocator setting."""
import json

import pytest
import torch
import torch.nn.functional as F

import train.device as device_mod
from train.config import TrainConfig
from train.device import Precision, autocast_for, keep_freed_memory, resolve_precision
from train.loop import train
from small_run import SMALL

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("units, used", [(["AVX512-BF16"], "bf16"), (["AMX", "AVX512-BF16"], "bf16"), ([], "fp32")])
def test_auto_is_bf16_only_on_a_cpu_with_bf16_units(monkeypatch, units, used):
    monkeypatch.setattr(device_mod, "cpu_bf16_units", lambda: units)
    p = resolve_precision(CPU, "auto")
    assert (p.used, p.requested) == (used, "auto")
    assert all(u in p.why for u in units) and (units or "without bf16 units" in p.why)


def test_cuda_and_explicit_choices(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_bf16_units", lambda: [])
    assert resolve_precision(CUDA, "auto").used == "bf16"
    assert resolve_precision(CPU, "bf16").used == "bf16" and resolve_precision(CPU, "fp32").used == "fp32"
    monkeypatch.setattr(device_mod, "cpu_bf16_units", lambda: ["AMX"])
    assert resolve_precision(CPU, "fp32").used == "fp32"  # asked for: never overridden


def test_the_probe_asks_torch(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert device_mod.cpu_bf16_units() == ["AMX"]


def test_under_bf16_autocast_the_loss_and_the_weights_stay_fp32():
    from train.model import build_model
    from train.optim import build_optimizer

    model = build_model(4).to(memory_format=torch.channels_last)
    opt = build_optimizer(model, "sgd", 0.01, 0.9, 0.0005)
    x = torch.randn(2, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with autocast_for(CPU, Precision("bf16", "auto", "test")):
        logits = model(x)
        loss = F.cross_entropy(logits, torch.tensor([0, 1]))
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    opt.step()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert all(s["velocity"].dtype == torch.float32 for s in opt.state.values())


def test_config_json_records_the_precision_and_cpu_settings(tiny_shards, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(device_mod, "cpu_bf16_units", lambda: [])
    train(TrainConfig(shards=tiny_shards, fast_dev_run=True, logdir=tmp_path, run_name="fp32", **SMALL))
    monkeypatch.setattr(device_mod, "cpu_bf16_units", lambda: ["AVX512-BF16"])
    train(TrainConfig(shards=tiny_shards, fast_dev_run=True, logdir=tmp_path, run_name="bf16", **SMALL))
    err = capsys.readouterr().err
    assert "cpu, fp32 (cpu without bf16 units (AMX or AVX512-BF16))" in err
    assert "cpu, bf16 (the CPU has AVX512-BF16)" in err
    for name in ("fp32", "bf16"):
        config = json.loads((tmp_path / name / "config.json").read_text())
        assert config["precision"] == {"used": name, "requested": "auto", "why": config["precision"]["why"]}
        assert config["config"]["precision"] == "auto" and config["compile"] is False
        settings = config["device_settings"]
        assert settings["threads"] == torch.get_num_threads() and settings["cpu_capability"]
        assert settings["malloc_keeps_freed_memory"] is True  # glibc, as on every machine this project runs on


def test_keep_freed_memory_is_a_glibc_setting_that_can_be_missing(monkeypatch):
    class NoMallopt:
        def __init__(self, *_):
            pass
    monkeypatch.setattr(device_mod.ctypes, "CDLL", NoMallopt)
    assert keep_freed_memory() is False


def test_workers_default_per_device_is_resolved_into_the_config(tiny_shards, tmp_path):
    from train.device import default_workers

    assert default_workers(CPU) == 1 and default_workers(CUDA) == 4
    given = {k: v for k, v in SMALL.items() if k != "workers"}
    train(TrainConfig(shards=tiny_shards, fast_dev_run=True, logdir=tmp_path, run_name="w", **given))
    assert json.loads((tmp_path / "w" / "config.json").read_text())["config"]["workers"] == 1


def test_cpu_evaluations_decode_in_line_on_a_small_cpu(monkeypatch):
    """A loader worker forked from the training process costs every evaluation seconds of
    copy-on-write faults on the 2-core machine (docs/performance.md): none there, as asked
    elsewhere; CUDA evaluations keep their workers."""
    import os

    from train.device import SMALL_CPU, eval_workers

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert eval_workers(1, cpu) == 0 and eval_workers(4, cuda) == 4
    monkeypatch.setattr(os, "cpu_count", lambda: SMALL_CPU + 12)
    assert eval_workers(3, cpu) == 3
