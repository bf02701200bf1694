import pytest
import torch

from mimmx.device import get_device


def test_default_is_cuda_when_available_else_cpu(monkeypatch):
    monkeypatch.delenv("MIMMX_DEVICE", raising=False)
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_env_override(monkeypatch):
    monkeypatch.setenv("MIMMX_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_bad_device_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MIMMX_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="MIMMX_DEVICE"):
        get_device()
    if not torch.cuda.is_available():
        monkeypatch.setenv("MIMMX_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            get_device()
