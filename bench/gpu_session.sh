#!/usr/bin/env bash
# One lent-GPU session, in one go (device tool: run with carry [".whl", ".carry"], timeout ~540 s).
# It builds nothing the CPU tests do not cover; it measures what only a GPU can:
#   1. bench/train_throughput.py (a) model-only, (b) end-to-end, (c) 10-view crops/s
#   2. CIFAR-10 (class folders) prepped and trained with the defaults; holdout error per epoch
#   3. a 1-GPU torchrun fast-dev-run
#   4. a short CIFAR-10 ablation: the defaults vs each paper ablation flag, same seed and budget
# Prepare on the CPU machine first (the device image has torch, torchvision, tqdm, pyyaml,
# matplotlib, typer, tensorboard, Pillow under Python 3.12; it lacks webdataset, braceexpand and
# simplejpeg, and its typer may predate Literal choices -- carry all four):
#   echo /.whl/ >> .git/info/exclude; echo /.carry/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl webdataset==1.0.2 braceexpand typer==0.29.2
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl simplejpeg==1.9.0
#   mkdir -p .carry && tar czf .carry/cifar10-train.tgz -C ../shared/data cifar10-train   # 16 MB
# Dry run on the CPU machine (catches script errors, no GPU figures):
#   PATH=$PWD/.venv/bin:$PATH TRAIN_SECONDS=60 OUT=/tmp/gpu-dry bash bench/gpu_session.sh
set -euo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT" /tmp/data
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
workers=$(( $(nproc) - 1 ))
nvidia-smi --query-gpu=name,memory.total --format=csv 2>&1 | tee "$OUT/gpu.txt" || true
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"

tar xzf .carry/cifar10-train.tgz -C /tmp/data
python3 -m prep shard --src /tmp/data/cifar10-train --out /tmp/shards/cifar10 --shard-size 500 \
    --workers "$(nproc)" 2>&1 | grep -v 'img/s' | tee "$OUT/prep.txt"
python3 -m prep stats --shards /tmp/shards/cifar10 2>&1 | tail -1 | tee -a "$OUT/prep.txt"

python3 bench/train_throughput.py --shards /tmp/shards/cifar10 --workers "$workers" 2>&1 \
    | grep -v 'it/s' | tee "$OUT/throughput.md"
python3 bench/loader_throughput.py --shards /tmp/shards/cifar10 --workers 1 "$workers" 2>&1 \
    | tee "$OUT/loader.md"

python3 -m torch.distributed.run --nproc_per_node=1 -m train.cli --shards /tmp/shards/cifar10 \
    --fast-dev-run --no-figures --workers 4 --logdir "$OUT/runs" --run-name torchrun-1gpu 2>&1 \
    | grep -v 'it/s' | tail -5 | tee "$OUT/torchrun.txt"

# The defaults (90 epochs, §5 SGD, batch 128); whatever the time limit leaves is reported.
timeout "${TRAIN_SECONDS:-300}" python3 -m train.cli --shards /tmp/shards/cifar10 --workers "$workers" \
    --no-figures --logdir "$OUT/runs" --run-name cifar10-defaults 2>&1 | grep -v 'it/s' \
    | tee "$OUT/cifar10.txt" || true
tail -3 "$OUT/runs/cifar10-defaults/metrics.jsonl" > "$OUT/cifar10-metrics-tail.jsonl" || true

# The paper's ablations (README, "The paper's ablations"): defaults vs each flag, same seed, same
# short budget; metrics.jsonl of each run says how far it got.
for flags in "" "--lrn none" "--pool-size 2" "--pca-std 0" "--dropout 0" "--towers one"; do
    name="ablation${flags// /}"
    timeout "${ABLATION_SECONDS:-35}" python3 -m train.cli --shards /tmp/shards/cifar10 --workers "$workers" \
        --no-figures --epochs 2 --seed 1 $flags --logdir "$OUT/runs" --run-name "$name" 2>&1 \
        | grep -v 'it/s' | grep '^epoch' | tee "$OUT/$name.txt" || true
done
