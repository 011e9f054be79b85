"""How many threads decode and how many run the model, so that together they fit the cores.

Three kinds of threads do the encoder's CPU work: gRPC's workers (parse requests, build responses:
short turns, mostly waiting), the decode pool (PNG/JPEG decoding and preprocessing: Pillow
releases the GIL while it decodes), and ONNX Runtime's intra-op threads, used by the one batching
thread of each model. More busy threads than cores only makes them take turns, and ONNX Runtime's
pool makes it worse: its threads spin while they wait for work (measured here on 2 cores: with
one intra-op thread instead of the default two, a one-image call cost half the CPU and its p99
fell from 3.7 to 0.9 ms). So, unless the settings fix them:

- intra-op threads: half the cores, at least 1, and spinning off (a thread that spins takes a core
  from the decoders it waits for);
- decode threads: the other cores, at least 1.

On 2 cores that is one thread each: the model runs in the batching thread while the pool decodes
the next images. A GPU does the model's work itself, so there all cores but one decode.
"""

from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class ThreadPlan:
    cores: int
    intra_op_threads: int  # per ONNX Runtime session
    decode_threads: int  # the decode pool, shared by every model

    @classmethod
    def choose(cls, intra_op_threads: int = 0, decode_threads: int = 0, *, gpu: bool = False, cores: int | None = None) -> ThreadPlan:
        """The plan for this machine; a setting above 0 is taken as it is."""
        cores = cores or available_cores()
        model_share = 1 if gpu else max(1, cores // 2)
        return cls(
            cores=cores,
            intra_op_threads=intra_op_threads or model_share,
            decode_threads=decode_threads or max(1, cores - model_share),
        )


def available_cores() -> int:
    """The cores this process may run on (a container's CPU set), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
