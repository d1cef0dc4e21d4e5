"""The source registry: every source the image knows, what it offers, and how to build it from the settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sync_image.sources.akshare import AkshareSource
from sync_image.sources.baostock import BaostockSource
from sync_image.sources.base import Probe, Source, SourceInfo
from sync_image.sources.fallback import FallbackSource
from sync_image.sources.file import FileSource
from sync_image.sources.tushare import TushareSource

SOURCE_TYPES: dict[str, type[Source]] = {
    "tushare": TushareSource,
    "akshare": AkshareSource,
    "baostock": BaostockSource,
    "file": FileSource,
}
REGISTRY: dict[str, SourceInfo] = {name: cls.info for name, cls in SOURCE_TYPES.items()}


def build(name: str, *, tushare_token: str = "", options: Mapping[str, Any] | None = None) -> Source:
    """A real adapter for `name`, configured from the token and SYNC_OPTIONS."""
    options = options or {}
    timeout = float(options.get("source_timeout_seconds", 30))
    source: Source
    if name == "tushare":
        source = TushareSource(tushare_token, rate_limits=options.get("tushare_rate_limits"), timeout=timeout)
    elif name == "akshare":
        source = AkshareSource(timeout=timeout)
    elif name == "baostock":
        source = BaostockSource(socket_timeout=timeout)
    elif name == "file":
        file_dir = options.get("file_dir")
        source = FileSource(Path(file_dir) if file_dir else None, delay=float(options.get("file_delay_seconds", 0)))
    else:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCE_TYPES)}")
    source.configure(rate_limits=(options.get("source_rate_limits") or {}).get(name),
                     concurrency=(options.get("source_concurrency") or {}).get(name),
                     margin=float(options.get("rate_margin", 0.95)))
    return source


__all__ = ["REGISTRY", "SOURCE_TYPES", "AkshareSource", "BaostockSource", "FallbackSource", "FileSource", "Probe",
           "Source", "SourceInfo", "TushareSource", "build"]
