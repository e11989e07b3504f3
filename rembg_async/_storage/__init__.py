"""Remote inputs and outputs through fsspec (``s3://``, ``gs://``, ``memory://``, ``https://``…):
which strings are remote and their filesystems (`_stores`), results put whole (`_sinks`),
listings (`_listing`). fsspec is imported only once a remote URL is met."""
