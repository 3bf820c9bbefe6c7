"""The Delta lake: the session factory (:mod:`.spark`), the table catalog (:mod:`.tables`) and
idempotent I/O (:mod:`.io`, re-exported here: ``lake.read``, ``lake.replace_range`` ...)."""

from pipelines.lake.io import (
    LayerResult,
    date_between,
    exists,
    merge,
    newest_per_symbol,
    overwrite,
    preview,
    read,
    replace_partition,
    replace_range,
    table_version,
)

__all__ = ["LayerResult", "date_between", "exists", "merge", "newest_per_symbol", "overwrite", "preview", "read", "replace_partition", "replace_range",
           "table_version"]
