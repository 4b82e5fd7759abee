"""HitSave: save the results of slow, pure functions, and share them.

>>> from hitsave import memo
>>> @memo
... def slow_square(x):
...     return x * x
"""

from hitsave import _native
from hitsave._memo import MISS, Miss, MemoFunction, NotStoredWarning, memo
from hitsave._native import HitSaveError
from hitsave._types import File

# One exception class per stable error code (`docs/errors.md`), e.g. UnhashableValueError.
for _code_name in _native.error_codes():
    _class_name = "".join(part.capitalize() for part in _code_name.split("_")).replace("Utf8", "UTF8").replace("Io", "IO") + "Error"
    globals()[_class_name] = getattr(_native, _class_name)
del _code_name, _class_name


def value_digest(value: object) -> str:
    """The ``val2`` digest of a value (``docs/spec/values.md``)."""
    return _native.value_digest(value)


__all__ = ["File", "HitSaveError", "MISS", "Miss", "MemoFunction", "NotStoredWarning", "memo", "value_digest"]
