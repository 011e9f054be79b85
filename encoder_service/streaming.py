"""A bidirectional stream's requests worked on ahead, its responses sent in request order.

`in_order` reads the requests in a thread of its own and starts each (decoding, queueing) as it
arrives, up to `depth` ahead of the response being sent; the handler's thread waits for the
oldest and sends it. So a client that sends everything at once keeps the pool and the model busy,
and a client that waits for each response before sending the next request is not deadlocked (the
reader does not hold a response back until the next request comes).

When the stream ends early (an error, the client gone), the work started and not sent is
abandoned: `abandon` is called for each, so its room in the queue and the budgets is released.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

Request, Started, Response = TypeVar("Request"), TypeVar("Started"), TypeVar("Response")
_END = object()


def in_order(
    requests: Iterator[Request],
    start: Callable[[int, Request], Started],
    finish: Callable[[Started], Response],
    abandon: Callable[[Started], None],
    *,
    depth: int,
) -> Iterator[Response]:
    """finish(start(i, request)) for each request, in order, with up to `depth` started ahead."""
    ahead: collections.deque = collections.deque()
    changed = threading.Condition()
    stopped = False

    def hand_over(item) -> bool:
        with changed:
            while len(ahead) >= depth and not stopped:
                changed.wait()
            if stopped:
                return False
            ahead.append(item)
            changed.notify_all()
            return True

    def read() -> None:
        try:
            for index, request in enumerate(requests):
                item = start(index, request)
                if not hand_over(item):
                    abandon(item)
                    return
            hand_over(_END)
        except BaseException as error:  # the request stream broke (cancelled, malformed): the handler raises it
            hand_over(error)

    # The reader may stay blocked on the next request after the handler is done; gRPC ends the
    # request stream with the call, and the thread with it.
    threading.Thread(target=read, name="stream-reader", daemon=True).start()
    try:
        while True:
            with changed:
                while not ahead:
                    changed.wait()
                item = ahead.popleft()
                changed.notify_all()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield finish(item)
    finally:
        with changed:
            stopped = True
            left = [item for item in ahead if item is not _END and not isinstance(item, BaseException)]
            ahead.clear()
            changed.notify_all()
        for item in left:
            abandon(item)
