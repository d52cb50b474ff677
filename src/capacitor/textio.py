"""Read a user's text file or fail with one line: the one place capacitor opens input files.

:func:`read_text` returns the contents of a UTF-8 text file (a UTF-8 byte-order mark is
dropped) or raises the caller's :class:`~capacitor.errors.CapacitorError` subclass with one
line that names the file, says what is wrong with it and what would be valid: a missing file,
a directory, a file that cannot be read, an empty file, a binary file (a PNG, a gzip, ...),
UTF-16/32 text or text in another 8-bit encoding such as Latin-1.

:func:`load_yaml` is ``yaml.safe_load`` that refuses a key given twice in one mapping (PyYAML
keeps the last one silently). :func:`check_output_file` is the counterpart of
:func:`read_text` for a file about to be written.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from capacitor.errors import CapacitorError

# Leading bytes of binary formats a user may hand over by mistake.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"BZh", "bzip2-compressed data"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"(\xb5/\xfd", "zstd-compressed data"),
    (b"PK\x03\x04", "a zip archive (or an xlsx/docx file)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"),
    (b"PAR1", "a Parquet file"),
    (b"\x7fELF", "an executable"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
# UTF-32 first: its little-endian mark starts with UTF-16's.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)
_UTF8_BOM = b"\xef\xbb\xbf"


def read_text(path: str | Path, what: str, error: type[CapacitorError], *,
              expected: str = "a UTF-8 text file") -> str:
    """The text of ``path``, decoded as UTF-8 (a leading UTF-8 BOM removed).

    ``what`` names the file in messages (e.g. ``"experiments CSV data.csv"``), ``expected``
    says what would be valid (e.g. ``"a UTF-8 CSV file"``).

    Raises:
        error: one line ``"<what>: <problem>; expected <expected>"`` when the file is
            missing, a directory, unreadable, empty, binary, or not UTF-8.
    """
    p = Path(path)

    def fail(problem: str) -> CapacitorError:
        return error(f"{what}: {problem}; expected {expected}")

    if p.is_dir():
        raise fail("is a directory")
    try:
        mode = p.stat().st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
            raise fail("is a device or socket, not a file")  # /dev/zero would never end
        data = p.read_bytes()
    except FileNotFoundError:
        raise fail("cannot be read: no such file") from None
    except PermissionError:
        raise fail("cannot be read: permission denied") from None
    except OSError as err:
        raise fail(f"cannot be read: {err.strerror or err}") from None
    if not data.strip():
        raise fail("is empty" if not data else "holds only whitespace")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            raise fail(f"is {encoding} text, not UTF-8")
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            raise fail(f"is not a text file (it looks like {kind})")
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    if b"\x00" in data[:8192]:
        raise fail("is not a text file (it holds NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise fail(f"is not UTF-8 text (byte 0x{data[err.start]:02x} at line {line}, "
                   f"column {column}: Latin-1 or Windows-1252?)") from None


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping gives the same key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader says so
                continue
            if first is not None:
                raise DuplicateKeyError(
                    None, None, f"key {key!r} is given twice (first on line {first}); give "
                    "each key once", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, except that a key given twice in a mapping raises
    :class:`DuplicateKeyError` (a ``yaml.MarkedYAMLError`` with its line and column)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def check_output_file(path: str | Path, what: str, error: type[CapacitorError], *,
                      name: str = "out.csv") -> Path:
    """``path`` as an output file, checked before any work is done: refuses a directory and
    a path inside a file (an existing file is overwritten, as output files are); ``name`` is
    the file name the message suggests inside the directory.

    Raises:
        error: one line naming ``what`` and the path.
    """
    p = Path(path)
    if p.is_dir():
        raise error(f"{what}: is a directory; expected a file path to write (e.g. "
                    f"{p / name})")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise error(f"{what}: {parent} is a file, not a directory; expected a file path to "
                    "write")
    return p


__all__ = ["DuplicateKeyError", "check_output_file", "load_yaml", "read_text"]
