"""The contract between `prep` (writer) and `train` (reader).

Only what both stages must agree on lives here: shard file names and sample keys
(`shared.shards`), the dataset manifest (`shared.manifest`), the training-set statistics
(`shared.stats`), each with its reader and writer, how an image becomes a stored patch
(`shared.patch`: prep writes shards with it, predict prepares images with it) and the
atomic writes both stages use (`shared.json_files`).
"""
