"""The one place that decides where tensors live.

CUDA when it is available, else the CPU; ``MIMMX_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``)
overrides. Every module that allocates tensors calls :func:`get_device`.
"""

from __future__ import annotations

import os

import torch

ENV_VAR = "MIMMX_DEVICE"


def get_device(name: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on: ``name`` if given, else ``$MIMMX_DEVICE``, else CUDA/CPU."""
    if isinstance(name, torch.device):
        return name
    requested = name or os.environ.get(ENV_VAR, "").strip() or None
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as err:
        raise ValueError(
            f"unknown device {requested!r} (from {'argument' if name else ENV_VAR}); "
            "use 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {requested!r} was requested but CUDA is not available here; "
            f"unset {ENV_VAR} or set it to 'cpu'"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise RuntimeError(
            f"device {requested!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {requested!r} was requested but MPS is not available here")
    return device


def describe_device(device: torch.device | None = None) -> str:
    """Human-readable name of the hardware, for benchmarks and run records."""
    import platform

    device = get_device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {cpu}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores visible"


THREADS_ENV_VAR = "MIMMX_THREADS"


def configure_threads() -> int:
    """Apply ``$MIMMX_THREADS`` (torch CPU threads) if set; return the thread count in use.

    Small models on a busy CPU run faster on one thread than on two that spin-wait for each
    other (``bench/bench_train.py`` measures both)."""
    value = os.environ.get(THREADS_ENV_VAR, "").strip()
    if value:
        try:
            n = int(value)
            if n < 1:
                raise ValueError
        except ValueError:
            raise ValueError(f"{THREADS_ENV_VAR} must be a positive integer, got {value!r}") from None
        torch.set_num_threads(n)
    return torch.get_num_threads()
