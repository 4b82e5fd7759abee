"""pandas values as records HitSave can hash faithfully.

A DataFrame's pickled state is its block manager: two equal frames can
differ there (consolidated or not, column order of blocks), so it is not
hashed. Instead a DataFrame, Series or Index is described by what makes it
equal: its labels, its values column by column with their dtypes, and names.
Numeric columns stay numpy arrays (hashed natively, zero copy), datetimes and
durations their int64 ticks; other dtypes (strings, categoricals, objects)
are their Python values, so an
element HitSave cannot hash raises a typed error naming its place.
"""

from __future__ import annotations

from typing import Any


def _array(values: Any) -> dict[str, Any]:
    array = values.to_numpy()
    if array.dtype.kind in "biufc" and not array.dtype.hasobject:
        return {"dtype": str(values.dtype), "values": array}
    if array.dtype.kind in "mM":
        # Datetimes and durations: their int64 ticks; the dtype names the unit (and NaT is the minimum).
        return {"dtype": str(values.dtype), "values": array.view("int64")}
    return {"dtype": str(values.dtype), "values": array.tolist()}


def _index(index: Any) -> dict[str, Any]:
    return {"names": list(index.names), **_array(index)}


def state(value: Any) -> tuple[str, dict[str, Any]] | None:
    """``(record name, fields)`` for a pandas DataFrame, Series or Index, else ``None``."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return "pandas.DataFrame", {
            "columns": _index(value.columns),
            "index": _index(value.index),
            "data": [_array(value.iloc[:, position]) for position in range(value.shape[1])],
        }
    if isinstance(value, pd.Series):
        return "pandas.Series", {"name": value.name, "index": _index(value.index), "data": _array(value)}
    if isinstance(value, pd.Index):
        return "pandas.Index", _index(value)
    return None
