"""Market data sources behind one interface (:class:`Source`), chosen once from the config:
the built-in synthetic market, files (CSV/Parquet), and a small real sample."""

from __future__ import annotations

from config.schemas.data import DataSettings
from pipelines.ingest.sources.arch_sample import ArchSource
from pipelines.ingest.sources.base import Source
from pipelines.ingest.sources.files import FileSource
from pipelines.ingest.sources.synthetic import SyntheticSource

SOURCES = {"synthetic": SyntheticSource, "files": FileSource, "arch": ArchSource}


def source_for(data: DataSettings) -> Source:
    """The source ``data_config.yaml`` selects (``source``), built from its section."""
    return SOURCES[data.source](getattr(data, data.source))


__all__ = ["Source", "source_for", "SOURCES"]
