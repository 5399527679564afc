"""Files launchkit writes: owner-only modes, and the one CSV writer.

Everything launchkit creates can hold personal data (addresses, names, live unsubscribe and
download links), so folders are created 0700 and files 0600, whatever the umask. Every CSV
(audience export, import rejects, ``analyze --csv`` tables) goes through ``write_csv`` or
``CsvFile``: UTF-8, owner-only, written to ``NAME.part`` then renamed, and every cell a
spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage
return) prefixed with a quote, as OWASP recommends for CSV injection.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
DIR_MODE = 0o700
CELL_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def private_opener(path: str, flags: int) -> int:
    """``open(..., opener=private_opener)``: a new file is created 0600 whatever the umask."""
    return os.open(path, flags, FILE_MODE)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) 0700; an existing folder is left as it is."""
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        path.chmod(DIR_MODE)  # mkdir's mode is masked by the umask


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and folders created inside the block are owner-only (umask 077).

    The umask is process-wide: use it only around one-off writes (``launchkit init``).
    """
    before = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(before)


def neutralize_cell(value: str) -> str:
    """Prefix a cell a spreadsheet would run as a formula with a quote (OWASP CSV injection)."""
    return "'" + value if value.startswith(CELL_TRIGGERS) else value


def _cell(value: Any) -> Any:
    return neutralize_cell(value) if isinstance(value, str) else value


class CsvFile:
    """A CSV being written row by row; it appears at ``path`` only when ``close(ok=True)``."""

    def __init__(self, path: Path, header: Iterable[str]):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".part")
        make_private_dir(self.path.parent)
        self._handle: IO[str] = open(  # noqa: SIM115 - closed by close()
            self.tmp, "w", encoding="utf-8", newline="", opener=private_opener
        )
        os.chmod(self.tmp, FILE_MODE)  # an old .part left behind keeps its mode otherwise
        self._writer = csv.writer(self._handle)
        self._writer.writerow([_cell(name) for name in header])

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([_cell(value) for value in row])

    def close(self, ok: bool = True) -> None:
        """Finish: rename into place when ``ok``, else remove the partial file."""
        if self._handle.closed:
            return
        self._handle.close()
        if ok:
            self.tmp.replace(self.path)
        else:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        self.close(ok=kind is None)


def write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> int:
    """Write a whole CSV (see ``CsvFile``); returns the number of data rows."""
    count = 0
    with CsvFile(path, header) as out:
        for row in rows:
            out.writerow(row)
            count += 1
    return count
