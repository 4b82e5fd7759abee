"""pandas arguments: hashed by what makes them equal, never by their internals."""

import pytest

import hitsave

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")


def digest(value):
    return hitsave.value_digest(value)


def frame():
    return pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5], "c": ["x", "y", "z"]}, index=[10, 20, 30])


def test_equal_frames_are_equal_however_they_are_stored():
    left = frame()
    right = frame()
    right["d"] = 1  # adding then dropping a column leaves a differently consolidated block manager
    right = right.drop(columns="d")
    assert digest(left) == digest(right)
    assert digest(left) == digest(frame().copy(deep=True))


@pytest.mark.parametrize(
    "change",
    [
        lambda df: df.assign(a=[1, 2, 4]),
        lambda df: df.rename(columns={"a": "A"}),
        lambda df: df.set_axis([10, 20, 31]),
        lambda df: df.astype({"a": "int32"}),
        lambda df: df[["b", "a", "c"]],
        lambda df: df.assign(c=["x", "y", "Z"]),
        lambda df: df.iloc[:2],
    ],
)
def test_any_difference_changes_the_digest(change):
    assert digest(change(frame())) != digest(frame())


def test_series_and_index():
    series = pd.Series([1.0, 2.0], index=["p", "q"], name="s")
    assert digest(series) == digest(pd.Series([1.0, 2.0], index=["p", "q"], name="s"))
    assert digest(series) != digest(series.rename("t"))
    assert digest(series) != digest(pd.Series([1.0, 2.5], index=["p", "q"], name="s"))
    assert digest(pd.Index([1, 2])) != digest(pd.Index([1, 3]))
    assert digest(frame()) != digest(frame()["a"])
    dates = pd.Series(pd.to_datetime(["2024-01-01", "2024-01-02"]))
    assert digest(dates) != digest(pd.Series(pd.to_datetime(["2024-01-01", "2024-01-03"])))


def test_a_large_numeric_frame_hashes_its_columns_natively():
    big = pd.DataFrame({"x": np.arange(1 << 20, dtype=np.float64), "y": np.arange(1 << 20, dtype=np.int64)})
    other = big.copy()
    other.loc[12345, "x"] = -1.0
    assert digest(big) == digest(big.copy())
    assert digest(big) != digest(other)


def test_unhashable_cells_are_named():
    import threading

    with pytest.raises(hitsave.HitSaveError) as raised:
        digest([pd.DataFrame({"a": [1, threading.Lock()]})])
    assert raised.value.code == "unhashable_value"
    assert raised.value.path is not None and raised.value.path.startswith("[0]")


def test_memo_with_a_frame_argument_hits_in_a_new_process(project):
    project.write(
        "job.py",
        """
        import pandas as pd
        from hitsave import memo

        @memo
        def total(df):
            print("ran")
            return float(df["b"].sum())
        """,
    )
    code = "import pandas as pd, job; print(job.total(pd.DataFrame({'b': [1.5, 2.5]})))"
    first = project.run(code)
    second = project.run(code)
    assert first.stdout.split() == ["ran", "4.0"]
    assert second.stdout.split() == ["4.0"]


def test_a_module_level_frame_changed_in_place_is_seen_by_the_next_call(project):
    """A notebook's pattern: `DF` loaded at the top, a memoized function
    reading it, then `DF.loc[0, "a"] = 5` (or `DF.iat[...]`, new `columns`
    or `index`, `S[0] = 5` on a Series, a frame inside a dict) and the
    function called again: its attributes stay the same objects, so the
    checks before each call saw no change and the call hit with the first
    frame's result. Such values are now digested again before each call."""
    project.write(
        "frames.py",
        """
        import pandas as pd
        from hitsave import memo

        A = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
        B = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
        C = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
        S = pd.Series([1, 2])
        CFG = {"df": pd.DataFrame({"a": [1, 2]}), "rows": list(range(3000))}

        READERS = [
            memo(lambda x: x + int(A["a"].iloc[0])), memo(lambda x: x + int(B.iloc[0, 0])),
            memo(lambda x: x + len(str(list(C.columns)))), memo(lambda x: x + int(S.iloc[0])),
            memo(lambda x: x + int(CFG["df"]["a"].iloc[0])),
        ]

        def change():
            A.loc[0, "a"] = 5; B.iat[0, 0] = 5; C.columns = ["zzz", "b"]; S[0] = 5; CFG["df"].loc[0, "a"] = 5

        def read():
            return [read(1) for read in READERS]
        """,
    )
    code = "import frames; a = frames.read(); frames.change(); print(*a, *frames.read())"
    out = project.run(code).stdout.split()
    assert out == ["2", "2", "11", "2", "2", "6", "6", "13", "6", "6"]
    # A fresh process in the first state gets the first state's results.
    assert project.run("import frames; print(*frames.read())").stdout.split() == ["2", "2", "11", "2", "2"]
