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
    dtype = values.dtype
    if str(dtype) == "category":
        # Categories and their order are part of the value, not only the labels.
        categorical = values.array if hasattr(values, "array") else values
        return {
            "dtype": "category",
            "ordered": bool(dtype.ordered),
            "categories": _index(dtype.categories),
            "codes": categorical.codes,
        }
    array = values.to_numpy()
    if array.dtype.kind in "biufc" and not array.dtype.hasobject:
        return {"dtype": str(dtype), "values": array}
    if array.dtype.kind in "mM":
        # Datetimes and durations: their int64 ticks; the dtype names the unit (and NaT is the minimum).
        return {"dtype": str(dtype), "values": array.view("int64")}
    # Anything else (strings, Periods, Intervals, nullable types with pd.NA,
    # Timestamps with mixed zones): the Python values, each hashed by what it is.
    return {"dtype": str(dtype), "values": array.tolist()}


def _index(index: Any) -> dict[str, Any]:
    fields = {"type": type(index).__qualname__, "names": list(index.names), **_array(index)}
    # A DatetimeIndex's or TimedeltaIndex's frequency is part of it: code
    # reads it (`index.shift(1)` needs one, `asfreq`, `index.freq`), and
    # `pd.date_range(…)` has one where the same dates parsed from a file have none.
    freq = getattr(index, "freq", None)
    if freq is not None:
        fields["freq"] = freq.freqstr
    return fields


def _flags(value: Any, fields: dict[str, Any]) -> dict[str, Any]:
    # `df.flags.allows_duplicate_labels = False` makes operations that would
    # duplicate a label raise: code can tell the frames apart. Only the
    # non-default is written, so other frames keep their keys.
    if not value.flags.allows_duplicate_labels:
        fields["allows_duplicate_labels"] = False
    return fields


def state(value: Any) -> dict[str, Any] | None:
    """The fields of a pandas DataFrame, Series or Index, else ``None``
    (other pandas objects are hashed by what pickle saves of them)."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return _flags(value, {
            "columns": _index(value.columns),
            "index": _index(value.index),
            "data": [_array(value.iloc[:, position]) for position in range(value.shape[1])],
            "attrs": dict(value.attrs),
        })
    if isinstance(value, pd.Series):
        return _flags(value, {
            "name": value.name, "index": _index(value.index), "data": _array(value), "attrs": dict(value.attrs),
        })
    if isinstance(value, pd.Index):
        return _index(value)
    return None
