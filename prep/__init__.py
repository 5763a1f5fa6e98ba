"""Offline stage: raw datasets -> 256x256 WebDataset shards + training-set statistics."""
