"""Which ONNX Runtime execution providers to ask for.

onnxruntime-gpu lists CUDA as available even where CUDA is missing; asking for
it there logs an ERROR and silently runs on CPU. So CUDA is requested only when
its libraries load, and callers report `session.get_providers()`, what really runs
(a model that still falls back is logged as a WARNING, reported by GetModel and
exported as `lookalike_encoder_provider_fallback`).

`pip install 'lookalike[gpu]'` brings CUDA's and cuDNN's libraries as Python
packages (nvidia-*), which the dynamic loader does not search: they are loaded
first, by ONNX Runtime's own `preload_dlls`, so a machine with only a driver runs
on CUDA.
"""

import contextlib
import ctypes
import importlib.util
import io
import logging

import onnxruntime

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def _cuda_libraries(cuda_version: str) -> list[str]:
    major = cuda_version.split(".")[0]
    return [f"libcudart.so.{major}", f"libcublasLt.so.{major}", "libcudnn.so.9"]


def cuda_loadable() -> bool:
    if CUDA not in onnxruntime.get_available_providers():
        return False
    from onnxruntime.capi import build_and_package_info

    cuda_version = getattr(build_and_package_info, "cuda_version", "")
    if not cuda_version:
        return False
    _preload_python_packages()
    try:
        for library in _cuda_libraries(cuda_version):
            ctypes.CDLL(library)
    except OSError as missing:
        log.info("CUDA not usable, running on CPU", extra={"fields": {"reason": str(missing)}})
        return False
    return True


def providers_for(device: str) -> list[str]:
    """`auto`: CUDA when it loads, else CPU; `cuda`: CUDA or an error; `cpu`: CPU."""
    if device == "cpu":
        return [CPU]
    if cuda_loadable():
        return [CUDA, CPU]
    if device == "cuda":
        raise RuntimeError("device=cuda but the CUDA libraries ONNX Runtime needs cannot be loaded")
    return [CPU]


def _preload_python_packages() -> None:
    """Loads the CUDA libraries of the `gpu` extra's nvidia-* packages, when they are installed."""
    if importlib.util.find_spec("nvidia") is None:
        return
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # preload_dlls prints; this process's stdout is JSON log lines
        onnxruntime.preload_dlls(directory="")
    if printed.getvalue().strip():
        log.info("CUDA libraries from Python packages", extra={"fields": {"preload": printed.getvalue().strip()}})
