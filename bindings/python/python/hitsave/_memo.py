"""``@memo``: the Python face of HitSave's shared call path."""

from __future__ import annotations

import functools
import os
import pickle
import threading
import time
import types
import warnings
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterable, ParamSpec, TypeVar, overload

from hitsave import _native

if TYPE_CHECKING:
    import asyncio
    import inspect

# `import hitsave` stays light: asyncio, inspect and the code analysis are
# imported when a memoized function first needs them.
_CO_COROUTINE = 0x80

P = ParamSpec("P")
R = TypeVar("R")

#: Codec names stored with each result. ``portable`` results (None, bool,
#: int, float, str, bytes, list, dict, numpy arrays) are read by every
#: language as equal values; ``pickle`` results are Python-only: another
#: language never tries to read them.
PORTABLE = "portable"
PICKLE = "pickle"


def _pickle(value: Any) -> bytes | _native.Payload:
    """Pickles ``value`` (protocol 5); buffers of 4 KiB or more (numpy arrays'
    data) go out of band into a container (``_native.pack_pickle``) so a hit
    loads them in place from the memory-mapped result, and the store writes
    them from where they lie (never copied into one buffer)."""
    buffers: list[pickle.PickleBuffer] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        if memoryview(buffer).nbytes < 4096:
            return True  # in band: not worth its own aligned slot
        buffers.append(buffer)
        return False

    body = pickle.dumps(value, protocol=5, buffer_callback=out_of_band)
    return _native.pack_pickle(body, buffers) if buffers else body


def _unpickle(data: bytes | _native.Mapped) -> Any:
    """Loads what ``_pickle`` wrote, or a plain pickle (results stored before
    out-of-band buffers; any pickle starts with 0x80, a container with 0x00)."""
    magic = _native.PICKLE_MAGIC
    if type(data) is bytes and not data.startswith(magic):
        return pickle.loads(data)  # a small result from the index: the common case, without a view
    import struct

    view = memoryview(data)
    if view[: len(magic)] != magic:
        return pickle.loads(view)
    align = _native.PICKLE_ALIGN
    count, body_len = struct.unpack_from("<IQ", view, len(magic))
    lengths = struct.unpack_from(f"<{count}Q", view, len(magic) + 12)
    at = -(-(len(magic) + 12 + 8 * count) // align) * align
    buffers: list[Any] = []
    for length in lengths:
        part = view[at : at + length]
        # A mapped result is writable copy-on-write: arrays use it in place.
        # Bytes from the index are read-only: copy, so arrays stay writable.
        buffers.append(bytearray(part) if view.readonly else part)
        at += -(-length // align) * align
    if at + body_len != len(view):
        raise pickle.UnpicklingError("hitsave: a pickled result's container does not add up")
    return pickle.loads(view[at:], buffers=buffers)


class NotStoredWarning(UserWarning):
    """A result was returned but not stored, by the store's policy
    (``docs/spec/policy.md``): cheaper to recompute than to read back, or
    larger than the whole size budget. Silence it with ``warnings.filterwarnings``."""


class Miss:
    """Returned by ``.lookup()`` when nothing is stored for the arguments."""

    _instance: "Miss | None" = None

    def __new__(cls) -> "Miss":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "hitsave.MISS"

    def __bool__(self) -> bool:
        return False


MISS = Miss()

_store_lock = threading.Lock()
_store: _native.Store | None = None
_store_failed = False


def _open_store() -> _native.Store | None:
    """The process's store, opened on first use; ``None`` if it cannot be (with one warning)."""
    global _store, _store_failed
    if _store is not None or _store_failed:
        return _store
    with _store_lock:
        if _store is None and not _store_failed:
            try:
                _store = _native.Store()
            except _native.HitSaveError as error:
                if error.code == "config_invalid":
                    raise
                _store_failed = True
                _native.warn_once(error)
            else:
                import atexit

                atexit.register(_drain_uploads)
    return _store


def _drain_uploads() -> None:
    """At exit, give queued cloud uploads a bounded chance to finish (``upload_wait``)."""
    store = _store
    if store is None:
        return
    try:
        store.drain_uploads()
        store.flush()
    except Exception:  # noqa: BLE001 - exit must not fail over the cache
        pass


def _unwrap(fn: Any) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The function inside bound methods and ``functools.partial`` objects,
    with the values bound into it: a bound method's instance is its first
    argument (so ``memo(Model(3).predict)`` and ``memo(Model(4).predict)``
    never share results), a partial's arguments come before the call's."""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    while True:
        if isinstance(fn, types.MethodType):
            args = (fn.__self__, *args)
            fn = fn.__func__
        elif isinstance(fn, functools.partial):
            args = (*fn.args, *args)
            kwargs = {**fn.keywords, **kwargs}
            fn = fn.func
        else:
            return fn, args, kwargs


def _path_texts(values: list[Any]) -> list[str]:
    """The texts among arguments that may be paths: `str` and `os.PathLike`
    arguments, and those directly inside a list, tuple, set or dict's values
    or an object's attributes (`load_all(["a.csv", "b.csv"])`, `run({"train":
    "train.csv"})`, `run(Config(data="train.csv"))`, a memoized method's
    `self.path`), at most 256."""
    texts: list[str] = []
    for value in values:
        if isinstance(value, dict):
            items: Any = value.values()
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = value
        elif isinstance(value, (str, os.PathLike)):
            items = (value,)
        else:
            attributes = getattr(value, "__dict__", None)
            items = attributes.values() if type(attributes) is dict else ()
        for item in items:
            if isinstance(item, os.PathLike):
                item = os.fspath(item)
            # A path fits in 4,096 characters (a longer text, a document, is
            # never copied to the host) and in UTF-8 (`surrogateescape`d bytes are not).
            if isinstance(item, str) and len(item) <= 4096 and (item.isascii() or _utf8(item)):
                texts.append(item)
            if len(texts) >= 256:
                return texts
    return texts


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _argument_files(values: list[Any]) -> list[list[str]]:
    """The `["hitsave:files", …]` pairs `MemoFunction._arguments` added (none: empty)."""
    if values and isinstance(values[-1], list) and len(values[-1]) == 2 and values[-1][0] == "hitsave:files":
        return values[-1][1]  # type: ignore[no-any-return]
    return []


def _qualname(fn: Any) -> str:
    """A callable's qualified name; a callable instance (``np.vectorize(…)``) by its type."""
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__qualname__


class MemoFunction(Generic[P, R]):
    """A memoized function. Call it like the original."""

    def __reduce__(self) -> str:
        # Pickled by reference, as functions are: the module attribute it is
        # (multiprocessing, ProcessPoolExecutor and joblib send it so).
        return _qualname(self)

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None,
        version: str | None,
        ignore: Iterable[str],
        local: bool,
        cloud: bool | None,
        codec: str | None,
    ) -> None:
        if (name is None) != (version is None):
            raise TypeError("memo: give both name= and version= (an explicit identity), or neither")
        if codec not in (None, PORTABLE, PICKLE):
            raise ValueError(f"memo: unknown codec {codec!r}; available: {PORTABLE!r}, {PICKLE!r} (None: portable when exact, else pickle)")
        self.__wrapped__ = fn
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]
        self._fn = fn
        # A bound method or a functools.partial: the function whose code counts,
        # and the values bound into it, which are part of every call's key.
        self._code_fn, fixed_args, fixed_kwargs = _unwrap(fn)
        self._fixed = (fixed_args, fixed_kwargs) if fixed_args or fixed_kwargs else None
        self._name = name
        self._version = version
        self._ignore = frozenset(ignore)
        self._local = local
        self._cloud = cloud
        self._codec = codec
        self._signature_cache: inspect.Signature | None = None
        code = getattr(self._code_fn, "__code__", None)
        if code is not None:
            count = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)
            unknown = self._ignore - set(code.co_varnames[:count])
        else:
            unknown = set(self._ignore)
        if unknown:
            # A `functools.wraps` wrapper takes (*args, **kwargs): its signature is the wrapped function's.
            unknown = self._ignore - set(self._signature.parameters)
        if unknown:
            raise ValueError(f"memo: ignore= names parameters {sorted(unknown)} that {_qualname(self._code_fn)} does not have")
        # The host's handle of this function (`hitsave_host::function`): one
        # per identity, made again when the code's fingerprint changes.
        self._host_function: _native.Function | None = None
        # What the graph read (_code.Watched), checked before each use.
        self._watched: Any = None
        self._is_async = bool(code is not None and code.co_flags & _CO_COROUTINE)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        if name is None:
            module = getattr(self._code_fn, "__module__", None) or type(self._code_fn).__module__
            if module in ("__main__", "__mp_main__"):
                # A script's functions by its module path (the analysis is imported only then).
                from hitsave._code import module_name

                module = module_name(module)
            self.function_name = f"{module}:{_qualname(self._code_fn)}"
        else:
            self.function_name = name

    # -- identity and keys -------------------------------------------------

    @property
    def _signature(self) -> inspect.Signature:
        if self._signature_cache is None:
            import inspect

            try:
                self._signature_cache = inspect.signature(self._code_fn)
            except (ValueError, TypeError):
                # A callable Python cannot describe (`str`, `bytes`, some C
                # functions): keyed as `(*args, **kwargs)` as given, so `f(1)`
                # and `f(x=1)` are two keys (a miss, never a wrong value).
                kind = inspect.Parameter
                self._signature_cache = inspect.Signature(
                    [kind("args", kind.VAR_POSITIONAL), kind("kwargs", kind.VAR_KEYWORD)]
                )
        return self._signature_cache

    def _host(self, rebuild: bool = False) -> _native.Function:
        """The host's handle of this function with its current identity."""
        # A module-level value or closure cell the graph read was rebound or
        # changed in place since: build the graph again (docs/python.md).
        if self._watched is not None and self._host_function is not None and not self._watched.current():
            self._host_function = None
        if rebuild or self._host_function is None:
            cloud = self._cloud is not False
            if self._name is not None:
                function = _native.Function(self.function_name, name=self._name, version=str(self._version), cloud=cloud)
            else:
                from hitsave import _code

                root, nodes, self._watched = _code.graph_and_watched(self._code_fn, rebuild)
                names = [node[1] for node in nodes]
                fingerprint = _native.fingerprints(nodes)[names.index(root)]
                function = _native.Function(self.function_name, fingerprint=fingerprint, graph=(root, nodes), cloud=cloud)
            self._host_function = function
        return self._host_function

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        values = self._bound_arguments(args, kwargs)
        if self._files_in_key():
            texts = _path_texts(values)
            if texts:
                found = _native.argument_files(texts)
                if found:
                    # Lists, as Node writes them: a named function's key is shared.
                    values = [*values, ["hitsave:files", [[text, digest] for text, digest in found]]]
        return values

    def _files_in_key(self) -> bool:
        """Whether the files its arguments name count by contents: its code
        reads or writes files (`def load(path): open(path)`), or it has an
        explicit identity, whose code is not analysed (docs/python.md, "Data
        files"; Node does the same)."""
        return self._name is not None or (self._watched is not None and self._watched.files_in_key)

    def _bound_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        if self._fixed is not None:
            args = self._fixed[0] + args
            kwargs = {**self._fixed[1], **kwargs}
        fast = self._fast_binding
        if fast is not None and len(args) <= len(fast[0]):
            names, defaults = fast
            values = list(args)
            used = 0
            for name in names[len(args):]:
                if name in kwargs:
                    values.append(kwargs[name])
                    used += 1
                elif name in defaults:
                    values.append(defaults[name])
                else:
                    break  # a missing argument: inspect raises Python's own TypeError
            else:
                if used == len(kwargs):  # no unknown keyword, none given twice
                    if self._ignore:
                        return [value for name, value in zip(names, values) if name not in self._ignore]
                    return values
        # The general case (and every binding error, with Python's own message).
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        # Named parameters bind by name, so their keyword order never counts;
        # a `**kwargs` dict keeps the order it was given in, which the
        # function sees (`list(options)`, `pd.DataFrame(columns)`).
        return [value for parameter_name, value in bound.arguments.items() if parameter_name not in self._ignore]

    @functools.cached_property
    def _fast_binding(self) -> tuple[tuple[str, ...], dict[str, Any]] | None:
        """Parameter names and defaults of a plain function (no ``*args``,
        ``**kwargs`` or positional-only parameters), bound without ``inspect``."""
        code = getattr(self._code_fn, "__code__", None)
        if code is None or code.co_flags & 0x0C or code.co_posonlyargcount:
            return None
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        positional = names[: code.co_argcount]
        defaults: dict[str, Any] = {}
        function = self._code_fn
        if function.__defaults__:
            defaults.update(zip(positional[len(positional) - len(function.__defaults__):], function.__defaults__))
        if function.__kwdefaults__:
            defaults.update(function.__kwdefaults__)
        if code.co_kwonlyargcount:
            return None  # keyword-only parameters cannot be passed positionally; leave them to inspect
        return names, defaults

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str]:
        try:
            return self._host().key(self._arguments(args, kwargs))  # type: ignore[no-any-return]
        except _native.HitSaveError as error:
            self._locate(error)
            raise

    def _locate(self, error: Any) -> None:
        """Says where in the call an argument error is: the arguments are hashed
        as one list, so its indices are the parameters'."""
        if error.path is not None and not error.path.startswith("args"):
            error.path = "args" + error.path
            error.args = (f"{self.function_name}: {error.args[0]}".replace(" at [", " at args[", 1),)

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The eval key (``key2_…``) these arguments have."""
        return self._key(args, kwargs)[0]

    # -- store -------------------------------------------------------------

    def _enabled_store(self) -> _native.Store | None:
        if not self._local:
            return None
        store = _open_store()
        if store is None or store.mode == "off":
            return None
        return store

    def _read(self, store: _native.Store, key: str, cloud: bool = True, function_name: str | None = None) -> Any:
        """A stored hit as `store.get` gives it, ``None``, or the store's error
        (to warn). `function_name`: a call's read, counted by the cloud's prefetch policy."""
        try:
            return store.get(key, cloud and self._cloud is not False, function_name)
        except _native.HitSaveError as error:
            return error

    def _lookup(self, store: _native.Store | None, key: str, cloud: bool = True) -> Any:
        if store is None:
            return MISS
        hit = self._read(store, key, cloud)
        if isinstance(hit, _native.HitSaveError):
            _native.warn_once(hit)
            return MISS
        if hit is None:
            return MISS
        return self._decode(hit)

    def _lock(self, store: _native.Store, key: str) -> _native.ComputeLock | None:
        """The key's compute lock (waiting for another computation of it), or
        ``None``: compute without it (locks off, read-only, timed out)."""
        try:
            return store.lock_compute(key)
        except _native.HitSaveError as error:
            _native.warn_once(error)
            return None

    async def _lock_async(self, store: _native.Store, key: str) -> _native.ComputeLock | None:
        """``_lock`` for coroutines: one non-blocking attempt at a time, with
        ``asyncio.sleep`` between, so waiting for another process holds no
        executor thread (a blocking wait per key could fill the default
        executor, which our own stores need: two processes each waiting on
        the other's keys would then stall until ``HITSAVE_LOCK_WAIT``)."""
        import asyncio

        started = time.monotonic()
        attempt = 0
        while True:
            try:
                state, lock = await asyncio.to_thread(store.try_lock_compute, key)
            except _native.HitSaveError as error:
                _native.warn_once(error)
                return None
            # The host's schedule of pauses (`hitsave_host::function::lock_pause`).
            pause = _native.lock_pause(attempt, time.monotonic() - started, store.lock_wait) if state == "busy" else None
            if pause is None:
                return lock
            await asyncio.sleep(pause)
            attempt += 1

    def _decode(self, hit: tuple[str, str, bytes | _native.Mapped]) -> Any:
        codec, language, data = hit
        if codec == PORTABLE:
            return _native.decode_portable(data)
        if codec == PICKLE:
            return _unpickle(data)
        raise _native.foreign_codec_error(self.function_name, language, codec)

    def _bound_digest(self, function: _native.Function, values: list[Any], arguments: str) -> str:
        """The digest of the call's arguments without the files they name
        (`arguments` when none are named): what `_changed` compares."""
        if not _argument_files(values):
            return arguments
        return function.key(values[:-1])[1]  # type: ignore[no-any-return]

    def _changed(self, function: _native.Function, before: str, args: Any, kwargs: Any) -> bool:
        """After a miss computed: whether the call changed its arguments
        (walked again, they digest differently from `before`). A hit would
        return the result without changing them, so the host declines to
        store it. An argument that can no longer be hashed changed too."""
        try:
            return function.key(self._bound_arguments(args, kwargs))[1] != before  # type: ignore[no-any-return]
        except _native.HitSaveError:
            return True

    def _save(
        self,
        function: _native.Function,
        store: _native.Store | None,
        key: str,
        arguments: str,
        value: Any,
        micros: int,
        changed: bool = False,
    ) -> None:
        if store is None:
            return
        data = _native.encode_portable(value) if self._codec in (None, PORTABLE) else None
        codec = PORTABLE
        if data is None:
            if self._codec == PORTABLE:
                warnings.warn(f"hitsave: {self.function_name}: the result has no portable form; it is returned but not stored", stacklevel=3)
                return
            codec = PICKLE
            try:
                data = _pickle(value)
            except Exception as error:  # noqa: BLE001 - any pickling failure means "not storable"
                warnings.warn(f"hitsave: {self.function_name}: the result cannot be pickled ({error}); it is returned but not stored", stacklevel=3)
                return
        # The host stores it, or remembers why not (for `why`) and says once
        # per function what to warn; a store error is warned there.
        # With the handle the key was derived with (the function may have read
        # a value that changed while it ran: its next call gets a new identity,
        # this result belongs to the one its key names).
        _, warning = function.finish(store, key, arguments, codec, data, micros, changed)
        if warning is not None:
            warnings.warn(warning, NotStoredWarning, stacklevel=3)

    # -- calls ---------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._call(args, kwargs, True)

    def _call(self, args: Any, kwargs: Any, recheck: bool) -> R:
        """A call; `recheck`: digest what the per-call checks see only in
        part before a miss computes (`_stale_deep`), once: the call made
        again after a rebuild does not (a value digesting differently each
        time would otherwise rebuild forever)."""
        store = self._enabled_store()
        if store is None:
            return self._fn(*args, **kwargs)
        try:
            function = self._host()
            values = self._arguments(args, kwargs)
            key, arguments, hit = function.lookup_call(
                store,
                values,
                # A coroutine's call runs on the event loop: only what is in
                # memory here; SQLite and the cloud are asked off the loop.
                memory_only=self._is_async,
            )
        except _native.HitSaveError as error:
            self._locate(error)
            raise
        if self._is_async:
            return self._call_async(function, store, key, arguments, hit, args, kwargs, recheck, values)  # type: ignore[return-value]
        if hit is not None:
            if isinstance(hit, tuple):
                return self._decode(hit)  # type: ignore[no-any-return]
            _native.warn_once(hit)
        if recheck and self._stale_deep():
            return self._call(args, kwargs, False)  # under the fingerprint of what it reads now
        lock = self._lock(store, key)
        try:
            if lock is not None:
                # Another process or thread may have stored it since the lookup
                # (it held the lock, or finished just before we asked): look
                # again, locally (one indexed read; the cloud was asked already).
                again = self._lookup(store, key, cloud=False)
                if again is not MISS:
                    return again  # type: ignore[no-any-return]
            before = self._bound_digest(function, values, arguments)
            start = time.perf_counter_ns()
            value = self._fn(*args, **kwargs)
            micros = (time.perf_counter_ns() - start) // 1000
            changed = self._changed(function, before, args, kwargs)
            self._save(function, store, key, arguments, value, micros, changed)
            if not changed:
                self._save_created(function, store, values, args, kwargs, value, micros)
            return value
        finally:
            if lock is not None:
                lock.release()

    async def _call_async(
        self,
        function: _native.Function,
        store: _native.Store,
        key: str,
        arguments: str,
        hit: Any,
        args: Any,
        kwargs: Any,
        recheck: bool,
        values: list[Any],
    ) -> Any:
        import asyncio

        if isinstance(hit, tuple):
            return self._decode(hit)
        # Not in memory: the store (SQLite, a file, maybe the cloud) is read on
        # a worker thread, so a slow disk or server never holds the loop.
        hit = await asyncio.to_thread(self._read, store, key, True, self.function_name)
        if isinstance(hit, tuple):
            return self._decode(hit)
        if hit is not None:
            _native.warn_once(hit)
        if recheck and await asyncio.to_thread(self._stale_deep):
            return await self._call(args, kwargs, False)  # type: ignore[misc]
        pending = self._pending.get(key)
        if pending is not None and pending.get_loop() is asyncio.get_running_loop():
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        lock = None
        try:
            lock = await self._lock_async(store, key)
            if lock is not None:
                again = await asyncio.to_thread(self._lookup, store, key, False)
                if again is not MISS:
                    future.set_result(again)
                    return again
            before = self._bound_digest(function, values, arguments)
            start = time.perf_counter_ns()
            value = await self._fn(*args, **kwargs)  # type: ignore[misc]
            micros = (time.perf_counter_ns() - start) // 1000
            changed = self._changed(function, before, args, kwargs)
            await asyncio.to_thread(self._save, function, store, key, arguments, value, micros, changed)
            if not changed:
                await asyncio.to_thread(self._save_created, function, store, values, args, kwargs, value, micros)
            future.set_result(value)
            return value
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it; nothing is stored
            raise
        finally:
            self._pending.pop(key, None)
            if lock is not None:
                lock.release()

    def _save_created(
        self, function: _native.Function, store: _native.Store, values: list[Any], args: Any, kwargs: Any, value: Any, micros: int
    ) -> None:
        """After a miss computed: a file an argument names that the call
        created (`render(data, out="report.html")` writing `out`) is in the
        key of every later call (it exists then), so the result is stored
        under that key too, or the next call would miss and run again. Only
        for files absent before the call, which it therefore did not read;
        one that existed and changed is left alone (it may have been read)."""
        if not self._files_in_key():
            return
        after_values = self._arguments(args, kwargs)
        after = _argument_files(after_values)
        known = dict(_argument_files(values))
        if any(text in known and known[text] != digest for text, digest in after) or not any(text not in known for text, _ in after):
            return
        try:
            created_key, created_arguments = function.key(after_values)
        except _native.HitSaveError:
            return
        self._save(function, store, created_key, created_arguments, value, micros)

    def _stale_deep(self) -> bool:
        """Before a miss computes: whether a value the graph read that the
        checks before each call cannot see whole (a large array changed in
        place) differs from what the fingerprint counted. Then the graph is
        built again, so the result is stored under the state it is computed
        from, never under the old one (later served to a process that has it)."""
        watched = self._watched
        if watched is None or not watched.deep or watched.deep_current():
            return False
        self._host(rebuild=True)
        return True

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return functools.partial(self, instance)

    # -- helpers on the wrapped function -------------------------------------

    def lookup(self, *args: P.args, **kwargs: P.kwargs) -> R | Miss:
        """The stored result for these arguments, or ``hitsave.MISS``, without running the function."""
        return self._lookup(self._enabled_store(), self._key(args, kwargs)[0])  # type: ignore[no-any-return]

    def download(self) -> int:
        """Fetches this function's results from the HitSave cloud in bulk (in
        parallel) into the local store; returns how many were fetched."""
        store = self._enabled_store()
        if store is None:
            return 0
        return store.download(self.function_name)

    def clear(self) -> int:
        """Removes this function's stored results; returns how many."""
        store = self._enabled_store()
        return store.clear(self.function_name) if store is not None else 0

    def why(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """``"hit"`` when these arguments have a stored result, else what changed since stored results."""
        store = self._enabled_store()
        if store is None:
            return "the cache is off"
        key, arguments = self._key(args, kwargs)
        if self._lookup(store, key) is not MISS:
            return "hit"
        # The sentence is the host's (hitsave_host::why), the same in Node.
        return self._host().why(store, key, arguments)  # type: ignore[no-any-return]


@overload
def memo(fn: Callable[P, R], /) -> MemoFunction[P, R]: ...
@overload
def memo(
    *,
    name: str | None = None,
    version: str | None = None,
    ignore: Iterable[str] = (),
    local: bool = True,
    cloud: bool | None = None,
    codec: str | None = None,
) -> Callable[[Callable[P, R]], MemoFunction[P, R]]: ...
def memo(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    version: str | None = None,
    ignore: Iterable[str] = (),
    local: bool = True,
    cloud: bool | None = None,
    codec: str | None = None,
) -> Any:
    """Save a function's results on disk, keyed by its arguments and its code.

    Use as ``@memo`` or ``@memo(name="train", version="2", ignore=["verbose"])``.
    Without ``name``/``version`` the function is identified by a fingerprint of
    its code and everything it depends on, so editing any of it starts a new
    set of results (and reverting the edit finds the old ones again).
    """

    def wrap(function: Callable[P, R]) -> MemoFunction[P, R]:
        if isinstance(function, (staticmethod, classmethod)):
            # @memo above @staticmethod / @classmethod: memoize the function inside, keep the descriptor.
            return type(function)(wrap(function.__func__))  # type: ignore[return-value]
        if not callable(function):
            raise TypeError(f"memo: expected a function, got {type(function).__name__}")
        return MemoFunction(function, name=name, version=version, ignore=ignore, local=local, cloud=cloud, codec=codec)

    return wrap(fn) if fn is not None else wrap
