import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from mimmx import data
from mimmx.data.idx import IDXFormatError, parse_idx, read_idx, write_idx

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_roundtrip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    path = tmp_path / f"tiny-images-idx3-ubyte{suffix}"
    write_idx(path, arr)
    out = read_idx(path)
    assert out.dtype == torch.uint8 and tuple(out.shape) == (5, 3, 4)
    assert np.array_equal(out.numpy(), arr)


def test_idx_hand_written_bytes():
    # magic 0x00000801 (uint8, 1 dim), N = 3, then the labels 7, 0, 255
    raw = bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 255])
    assert parse_idx(raw).tolist() == [7, 0, 255]
    # big-endian int32 payload is converted to native order
    raw32 = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + np.array([1, -2], dtype=">i4").tobytes()
    assert parse_idx(raw32).tolist() == [1, -2]


@pytest.mark.parametrize("raw, msg", [
    (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "magic"),
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "type code"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 4, 5]), "header says shape"),
])
def test_idx_rejects_malformed(raw, msg):
    with pytest.raises(IDXFormatError, match=msg):
        parse_idx(raw)


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    roots = data.search_roots(tmp_path / "explicit")
    assert roots[:3] == [tmp_path / "explicit", tmp_path / "env", tmp_path / "data"]
    # last, the checkout's own data/ (notebooks run from notebooks/ still find the cache)
    from pathlib import Path

    assert roots[3:] == [Path(data.__file__).resolve().parents[2] / "data"]


def test_cache_dir_is_the_checkouts_unless_set(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.delenv(data.CACHE_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert data.cache_dir() == Path(data.__file__).resolve().parents[2] / "data" / "cache"
    monkeypatch.setenv(data.CACHE_ENV_VAR, str(tmp_path / "c"))
    assert data.cache_dir("x") == tmp_path / "c" / "x" and (tmp_path / "c" / "x").is_dir()


def test_missing_data_message_names_every_folder_and_both_fixes(tmp_path, monkeypatch):
    from pathlib import Path

    if any((Path(data.__file__).resolve().parents[2] / "data").glob("**/*-ubyte*")):
        pytest.skip("the checkout's data/ holds downloaded datasets, which every search finds")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("mnist", "train", root=tmp_path / "explicit")
    msg = str(info.value)
    for folder in ["explicit/mnist", "explicit/MNIST/raw", "env/mnist", "env/MNIST/raw", "data/mnist"]:
        assert str(tmp_path / folder) in msg
    assert "MIMMX_DATA" in msg and "python -m mimmx data download" in msg


def test_corrupted_copy_is_reported_never_used(real_data, tmp_path, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "copy" / "mnist"
    copy.mkdir(parents=True)
    for f in (real_data / "mnist").iterdir():
        shutil.copy(f, copy / f.name)
    labels = copy / "t10k-labels-idx1-ubyte.gz"
    labels.chmod(0o644)
    blob = bytearray(labels.read_bytes())
    blob[-20] ^= 0xFF  # one flipped byte inside the gzip stream
    labels.write_bytes(bytes(blob))

    with pytest.raises(data.DatasetCorruptedError, match="corrupted"):
        data.load("mnist", "test", root=copy.parent)
    states = {s.stem: s.state for s in data.file_status("mnist", copy.parent)}
    assert states["t10k-labels-idx1-ubyte"] == "corrupted"
    assert states["t10k-images-idx3-ubyte"] == "verified"
    # the train split, untouched, still loads from the copy
    assert len(data.load("mnist", "train", root=copy.parent).labels) == 60000


def test_plain_uncompressed_files_verify(real_data, tmp_path):
    import gzip

    folder = tmp_path / "MNIST" / "raw"  # torchvision's layout
    folder.mkdir(parents=True)
    for stem in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        (folder / stem).write_bytes(gzip.decompress((real_data / "mnist" / f"{stem}.gz").read_bytes()))
    split = data.load("mnist", "test", root=tmp_path)
    assert split.images.shape == (10000, 28, 28)


@pytest.mark.parametrize("name, train_counts, test_counts", [
    ("mnist", MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS),
    ("fashion-mnist", [6000] * 10, [1000] * 10),
])
def test_real_datasets(real_data, name, train_counts, test_counts):
    for split, counts in [("train", train_counts), ("test", test_counts)]:
        images, labels = data.load(name, split)
        n = sum(counts)
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert torch.bincount(labels, minlength=10).tolist() == counts
        assert images.max() == 255 and images.min() == 0


def test_cli_reports_all_eight_files_verified(real_data):
    out = subprocess.run([sys.executable, "-m", "mimmx", "data"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(" verified ") == 8


def test_cli_missing_data_exits_nonzero(tmp_path):
    from pathlib import Path

    if any((Path(data.__file__).resolve().parents[2] / "data").glob("*/*-ubyte*")) or \
            any((Path(data.__file__).resolve().parents[2] / "data").glob("*/raw/*-ubyte*")):
        pytest.skip("the checkout's data/ holds downloaded datasets, which every search finds")
    env = {"MIMMX_DATA": str(tmp_path / "nothing"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "mimmx", "data"], capture_output=True,
                         text=True, cwd=tmp_path, env=env)
    assert out.returncode == 1
    assert out.stdout.count(" missing ") == 8 and "data download" in out.stderr
