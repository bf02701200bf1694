"""Data layer: MNIST and Fashion-MNIST as verified uint8 tensors (see :mod:`mimmx.data.datasets`)."""

from mimmx.data.datasets import (
    CACHE_ENV_VAR,
    DATASETS,
    ENV_VAR,
    DatasetCorruptedError,
    DatasetNotFoundError,
    FileStatus,
    Split,
    cache_dir,
    download,
    file_status,
    load,
    locate,
    search_roots,
)
from mimmx.data.idx import IDXFormatError, parse_idx, read_idx, write_idx

__all__ = [
    "CACHE_ENV_VAR", "DATASETS", "ENV_VAR", "cache_dir", "DatasetCorruptedError", "DatasetNotFoundError", "FileStatus", "Split",
    "download", "file_status", "load", "locate", "search_roots",
    "IDXFormatError", "parse_idx", "read_idx", "write_idx",
]
