"""The training options of every end-to-end training test, in one place: batch 8, one loader
worker, small evaluation batches, no figures, the CPU whatever the machine has. Seconds per
run on two cores; as TrainConfig keywords (SMALL) and as the same alexnet-train flags."""
SMALL = dict(batch_size=8, workers=1, eval_batch_size=16, figures=False, shuffle_buffer=16, device="cpu")
SMALL_FLAGS = [arg for key, value in SMALL.items() if key != "figures"
               for arg in (f"--{key.replace('_', '-')}", str(value))] + ["--no-figures"]
