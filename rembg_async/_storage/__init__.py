"""Remote inputs and outputs through fsspec: ``s3://``, ``gs://``, ``memory://``, ``https://``…

One idea per module: which strings are remote and which filesystem serves them (`_stores`), a
result put into its store only once whole (`_sinks`), and listings (`_listing`); remote inputs
are opened through `_stores` by `rembg_async._inputs`, a batch's remote output folder and
manifest are in `_outputs`. Nothing here imports fsspec until a remote URL is met, so that
``import rembg_async`` stays cheap and works without the ``fsspec`` extra.
"""
