"""The assumptions of a scenario and their sources, read from the comments of its YAML.

A scenario file documents its numbers in comments (the bundled Colossus scenario gives every
number a basis: a row of a facts table, a vendor page, or ``ASSUMPTION`` when it is our
choice). :func:`commented_fields` pairs each commented key with the comment lines right
above it (a blank line ends a comment block) or after it on the same line::

    # fleet_facts "datacenter: hyperscale" ... (UNCERTAIN)       <- basis of sites[..].pue
    pue: 1.2
    H200: 50000   # see above                                    <- basis of ...gpus.H200

Keys of list items are named by the item's ``name`` (``sites[colossus1].pue``). The resolved
``scenario.yaml`` of a run carries no comments; its header names the file it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"([A-Za-z0-9_.\-]+)\s*:(?:\s+(.*))?$")
_HEADER = re.compile(r"#\s*resolved scenario from (.+)$")
_BLOCK_SCALARS = (">", ">-", ">+", "|", "|-", "|+")


@dataclass(frozen=True, slots=True)
class CommentedField:
    """A key of the scenario file, its value as written, and the comment on it."""

    path: str
    value: str
    comment: str

    @property
    def is_assumption(self) -> bool:
        """True when the comment calls the number an ASSUMPTION (not a published figure)."""
        return "ASSUMPTION" in self.comment


def source_of(resolved_yaml: str) -> str | None:
    """The file a run's resolved scenario.yaml came from (its first line names it)."""
    first = resolved_yaml.split("\n", 1)[0].strip()
    match = _HEADER.match(first)
    return match.group(1).strip() if match else None


def _split_comment(rest: str) -> tuple[str, str]:
    """``value  # comment`` -> (value, comment); a ``#`` inside quotes is not a comment."""
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[:i].strip(), rest[i + 1:].strip()
    return rest.strip(), ""


def commented_fields(text: str) -> list[CommentedField]:
    """Every key of the YAML ``text`` that has a comment, in file order."""
    out: list[CommentedField] = []
    stack: list[tuple[int, str]] = []  # (indent, path segment)
    pending: list[str] = []
    block_indent: int | None = None  # inside a block scalar (``key: >-``) deeper than this
    for line in text.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if block_indent is not None:
            if not stripped or indent > block_indent:
                continue
            block_indent = None
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        body, item = stripped, stripped.startswith("- ")
        if item:
            body = body[2:].lstrip()
        match = _KEY.match(body)
        if not match:
            pending = []
            continue
        key, rest = match.group(1), match.group(2) or ""
        value, inline = _split_comment(rest)
        key_indent = indent + (len(stripped) - len(body)) if item else indent
        while stack and stack[-1][0] >= (indent if item else key_indent):
            stack.pop()
        if item:
            stack.append((indent, f"[{value}]" if key == "name" else "[]"))
        path = "".join(seg if seg.startswith("[") or not i else "." + seg
                       for i, seg in enumerate([s for _, s in stack] + [key]))
        comment = " ".join(pending + ([inline] if inline else []))
        if comment:
            out.append(CommentedField(path=path, value=value, comment=comment))
        pending = []
        if value in _BLOCK_SCALARS:
            block_indent = key_indent
        elif not value:
            stack.append((key_indent, key))
    return out


__all__ = ["CommentedField", "commented_fields", "source_of"]
