"""Data layer: MNIST and Fashion-MNIST as verified uint8 tensors (see :mod:`mimmx.data.datasets`)."""

from mimmx.data.datasets import (
    DATASETS,
    ENV_VAR,
    DatasetCorruptedError,
    DatasetNotFoundError,
    FileStatus,
    Split,
    download,
    file_status,
    load,
    locate,
    search_roots,
)
from mimmx.data.idx import IDXFormatError, parse_idx, read_idx, write_idx

__all__ = [
    "DATASETS", "ENV_VAR", "DatasetCorruptedError", "DatasetNotFoundError", "FileStatus", "Split",
    "download", "file_status", "load", "locate", "search_roots",
    "IDXFormatError", "parse_idx", "read_idx", "write_idx",
]
