"""What a long run shows while it works: a tqdm bar with an ETA on a terminal, and one line per phase.

A phase is a stretch of work with a known size: loading a folder, one epoch, the final evaluation.
On a terminal (and unless progress is turned off) it shows a bar with its rate and ETA while it
runs; in every case it ends with one summary line on stdout, so a log file or CI job (stdout not a
terminal, or `--no-progress`) still shows each phase and how long it took instead of nothing at all.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


def bars_wanted(progress: bool) -> bool:
    """Bars only when asked for and someone is watching: redrawn bars in a log file are noise."""
    return progress and sys.stdout.isatty()


class Phase:
    """One phase of work: `update` as it goes, `finish` with its summary (the seconds are appended).

        with Phase("epoch 3/12", total=steps, unit="batch", progress=True) as phase:
            for ...: phase.update(1, loss=f"{loss:.4f}")
            phase.finish("epoch 3/12: train_loss 0.0123, val_loss 0.0145")
    """

    def __init__(self, desc: str, total: int, unit: str, progress: bool) -> None:
        self.started = time.perf_counter()
        self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not bars_wanted(progress))

    def update(self, n: int = 1, **postfix: str) -> None:
        self.bar.update(n)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def finish(self, summary: str) -> None:
        """Closes the bar and prints `summary, N.N s` as the phase's one line."""
        self.bar.close()
        # tqdm.write keeps an outer bar (e.g. the study's) intact around the line.
        tqdm.write(f"{summary}, {self.seconds:.1f} s", file=sys.stdout)
        sys.stdout.flush()

    def __enter__(self) -> "Phase":
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.close()  # a phase cut short (error, Ctrl-C) leaves no half-drawn bar; finish printed nothing
