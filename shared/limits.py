"""Numbers and names both stages (and both command lines) agree on, importable without numpy
or Pillow: `alexnet-prep --help` reads them."""

MAX_PATCH_SIZE = 2048  # px: one 10-view batch of 32 such patches is 1.2 GB of crops; ImageNet uses 256
DEFAULT_MAX_PIXELS = 100_000_000  # --max-pixels: ImageNet's largest image has ~30 million
RESAMPLERS = ("bilinear", "bicubic", "lanczos")  # --resample: Pillow's filters, antialiased like torchvision's
