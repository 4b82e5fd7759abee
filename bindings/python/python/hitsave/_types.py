"""Values with a meaning of their own in HitSave's canonical encoding."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class File:
    """An argument that stands for a file's *contents*.

    ``f(File("data.csv"))`` hits when the file holds the same bytes, wherever
    it lives, and misses when its contents change. A plain ``pathlib.Path``
    argument is hashed as the path text only.
    """

    path: Path

    def __init__(self, path: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "path", Path(path))
