"""Which ONNX Runtime execution providers to ask for.

onnxruntime-gpu lists CUDA as available even where CUDA is missing; asking for
it there logs an ERROR and silently runs on CPU. So CUDA is requested only when
its libraries load, and callers report `session.get_providers()`, what really runs.
"""

import ctypes
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
