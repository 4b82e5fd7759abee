"""Values with a meaning of their own in HitSave's canonical encoding."""

from __future__ import annotations

import os


class File:
    """An argument that stands for a file's *contents*.

    ``f(File("data.csv"))`` hits when the file holds the same bytes, wherever
    it lives, and misses when its contents change. A plain ``pathlib.Path``
    argument is hashed as the path text only.
    """

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path: str = os.fspath(path)

    def __repr__(self) -> str:
        return f"hitsave.File({self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and other.path == self.path

    def __hash__(self) -> int:
        return hash(("hitsave.File", self.path))
