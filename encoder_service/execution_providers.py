"""Which ONNX Runtime execution providers to ask for.

onnxruntime-gpu lists CUDA (and TensorRT) as available even where they are
missing; asking for them there logs an ERROR and silently runs on CPU. So CUDA is requested only when
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
TENSORRT = "TensorrtExecutionProvider"
TENSORRT_LIBRARY = "libnvinfer.so.10"  # TensorRT 10, which onnxruntime-gpu 1.31 is built against


def _cuda_libraries(cuda_version: str) -> list[str]:
    """The driver (the host's: no package brings it, so a host without a GPU stops here) and the
    libraries onnxruntime-gpu loads (the `gpu` extra's packages, or the system's)."""
    major = cuda_version.split(".")[0]
    return ["libcuda.so.1", f"libcudart.so.{major}", f"libcublasLt.so.{major}", "libcudnn.so.9"]


def cuda_missing() -> str:
    """Why CUDA cannot run here: "" when it can, else what is missing, for the log or the refusal."""
    if CUDA not in onnxruntime.get_available_providers():
        return "this onnxruntime build has no CUDA execution provider (install the gpu extra)"
    from onnxruntime.capi import build_and_package_info

    cuda_version = getattr(build_and_package_info, "cuda_version", "")
    if not cuda_version:
        return "this onnxruntime build names no CUDA version"
    _preload_python_packages()
    try:
        for library in _cuda_libraries(cuda_version):
            ctypes.CDLL(library)
    except OSError as missing:
        return str(missing)
    return ""


def tensorrt_loadable() -> bool:
    """TensorRT is optional and not in the `gpu` extra: it runs when its library is on the loader path."""
    if TENSORRT not in onnxruntime.get_available_providers():
        return False
    try:
        ctypes.CDLL(TENSORRT_LIBRARY)
    except OSError as missing:
        log.info("TensorRT not usable", extra={"fields": {"reason": str(missing)}})
        return False
    return True


class DeviceUnavailable(RuntimeError):
    """The device asked for cannot run here: the server refuses to start rather than run elsewhere."""


def providers_for(device: str) -> list[str]:
    """`auto`: CUDA when it loads, else CPU; `cuda`: CUDA or an error; `tensorrt`: TensorRT then CUDA
    (for what TensorRT does not take), or an error; `cpu`: CPU."""
    if device == "cpu":
        return [CPU]
    missing = cuda_missing()
    if device == "tensorrt":
        if missing or not tensorrt_loadable():
            raise DeviceUnavailable(f"device=tensorrt but {TENSORRT_LIBRARY} or the CUDA libraries cannot be loaded: {missing or 'TensorRT'}")
        return [TENSORRT, CUDA, CPU]
    if not missing:
        return [CUDA, CPU]
    if device == "cuda":
        raise DeviceUnavailable(f"device=cuda but CUDA cannot run here: {missing}")
    log.info("CUDA not usable, running on CPU", extra={"fields": {"reason": missing}})
    return [CPU]


def session_providers(providers: list[str], engine_cache: str) -> list:
    """`providers` as InferenceSession takes them. TensorRT builds an engine per model and input
    shape, which takes seconds to minutes: it keeps them in `engine_cache` (the encoder's
    tensorrt_engine_cache setting), so a restart or a replica sharing that volume reuses them. The queue runs one shape on a GPU
    (encoder_service/batching.py), so each model version builds one engine."""
    return [
        (name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": engine_cache, "trt_timing_cache_enable": True})
        if name == TENSORRT
        else name
        for name in providers
    ]


def _preload_python_packages() -> None:
    """Loads the CUDA libraries of the `gpu` extra's nvidia-* packages, when they are installed."""
    if importlib.util.find_spec("nvidia") is None:
        return
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # preload_dlls prints; this process's stdout is JSON log lines
        onnxruntime.preload_dlls(directory="")
    if printed.getvalue().strip():
        log.info("CUDA libraries from Python packages", extra={"fields": {"preload": printed.getvalue().strip()}})
