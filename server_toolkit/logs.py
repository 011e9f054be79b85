"""JSON log lines on stdout with a severity, the one logging setup of every process.

Log collectors (Kubernetes, Cloud Logging, Loki) parse one JSON object per line;
`severity` is the field they read the level from. Never log image bytes.
"""

import json
import logging
import sys
import time
import warnings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO") -> None:
    """Sends every logger's records to stdout as JSON; call once in a process's main."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    warnings.showwarning = _log_warning


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning (Pillow's DecompressionBombWarning for a picture the service then refuses, a
    library's deprecation) as a log line like the others, instead of raw text on stderr; without
    the file and line it was raised at, which are paths of the server."""
    logging.getLogger("py.warnings").warning(str(message), extra={"fields": {"category": category.__name__}})
