"""The contract between `prep` (writer) and `train` (reader).

Only what both stages must agree on lives here: shard file names and sample keys
(`shared.shards`), the dataset manifest (`shared.manifest`) and the training-set
statistics (`shared.stats`), each with its reader and writer.
"""
