"""Remote inputs and outputs through fsspec: ``s3://``, ``gs://``, ``memory://``, ``https://``…

One idea per module: which strings are remote and which filesystem serves them (`_stores`), a
result put into its store only once whole (`_sinks`), a batch's remote output folder with its
provenance (`_tree`), and a manifest kept in a store (`_manifest`); remote inputs are opened
through `_stores` by `rembg_async._inputs`. Nothing here imports fsspec until a remote URL is
met, so that ``import rembg_async`` stays cheap and works without the ``fsspec`` extra.
"""
