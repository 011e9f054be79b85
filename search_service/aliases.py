"""Aliases: stable names that point at collections, kept in `<data_dir>/aliases.json`.

A client that searches "shop" keeps doing so while the collection behind "shop" is replaced by
one embedded with a new model version (docs/model-upgrades.md). The table is small and changes
rarely, so it is one JSON file rewritten whole on every change through
`server_toolkit.durable_files.write_atomically` (temporary file, fsync, rename, fsync of the
directory): after a crash at any moment the file holds the table from before the change or from
after it, never a mix, and a switch that was acknowledged survives a power cut. It carries a
CRC32 like collection.json; a table that does not check out stops the server from starting,
since serving without it would silently send clients' alias calls to NOT_FOUND.

The table does no locking of its own: the collection store calls it under its lock, which also
keeps alias names and collection names one namespace.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from server_toolkit.durable_files import json_checksum, write_atomically

FILE = "aliases.json"
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Alias:
    name: str
    collection: str  # where it points
    previous_collection: str  # where it pointed before its last switch; "" if never switched
    changed_at_unix_ms: int


class AliasTableUnreadable(RuntimeError):
    """aliases.json exists but cannot be trusted; the message names the file, not its directory."""


class AliasTable:
    def __init__(self, data_dir: Path, *, fsync: bool = True) -> None:
        self._path = Path(data_dir) / FILE
        self._fsync = fsync
        self._aliases: dict[str, Alias] = self._read() if self._path.exists() else {}

    def get(self, name: str) -> Alias | None:
        return self._aliases.get(name)

    def all(self) -> list[Alias]:
        return sorted(self._aliases.values(), key=lambda alias: alias.name)

    def pointing_at(self, collection: str) -> list[str]:
        return sorted(alias.name for alias in self._aliases.values() if alias.collection == collection)

    def put(self, name: str, collection: str) -> Alias:
        """Creates or switches `name`; durable when it returns."""
        before = self._aliases.get(name)
        if before is None:
            previous = ""
        elif before.collection == collection:
            previous = before.previous_collection
        else:
            previous = before.collection
        alias = Alias(name, collection, previous, int(time.time() * 1000))
        self._write({**self._aliases, name: alias})
        return alias

    def remove(self, name: str) -> None:
        self._write({key: alias for key, alias in self._aliases.items() if key != name})

    def _write(self, table: dict[str, Alias]) -> None:
        document = {"format": FORMAT, "aliases": [dataclasses.asdict(alias) for alias in sorted(table.values(), key=lambda a: a.name)]}
        document["crc32"] = json_checksum(document)
        text = (json.dumps(document, indent=2) + "\n").encode("utf-8")
        write_atomically(self._path, lambda f: f.write(text), fsync=self._fsync)
        self._aliases = table  # only once the file says so: a failed write changes nothing

    def _read(self) -> dict[str, Alias]:
        try:
            document = json.loads(self._path.read_bytes())
            if not isinstance(document, dict) or document.get("format") != FORMAT:
                raise ValueError("unknown format")
            if document.pop("crc32", None) != json_checksum(document):
                raise ValueError("checksum mismatch")
            aliases = [Alias(**entry) for entry in document["aliases"]]
        except OSError as error:  # its text names the path
            raise AliasTableUnreadable(f"{FILE} is unreadable ({error.strerror or type(error).__name__})") from None
        except (ValueError, KeyError, TypeError) as error:
            raise AliasTableUnreadable(f"{FILE} is unreadable ({type(error).__name__}: {error})") from None
        return {alias.name: alias for alias in aliases}
