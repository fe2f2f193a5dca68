"""Training data larger than memory: random-access sources read through Grain.

negres draws every seed's batch indices as a pure function of ``(seed, step)``, so the
driver knows, before a compiled segment runs, exactly which examples each seed needs: an
int array ``(S, T, B)`` (seeds, steps, batch). :class:`GrainFeed` reads those examples
from any random-access source (Grain's ``RandomAccessDataSource`` protocol: ``__len__``
and ``__getitem__``) and returns them stacked, leaves ``(S, T, B, ...)``, ready to be
handed to the compiled call. Nothing here shuffles or samples: the order of the indices
is the order of the examples.

- :class:`ArraySource`: a pytree of arrays sharing their leading axis, typically
  NumPy memmaps (``ArraySource((np.load(path_x, mmap_mode="r"), y))``); it has a
  vectorised ``take``, and pickles memmaps by file name, so Grain's worker processes
  reopen the file instead of receiving a copy of it.
- Any other source: ``grain.sources.ArrayRecordDataSource``,
  ``tfds.data_source(...)``, a user class; records may be dicts (TFDS features),
  tuples or arrays, optionally turned into arrays by a ``decode`` function (for raw
  ``bytes`` records).

How a load runs: the indices ``(*lead, B)`` are cut into rows of ``B`` (one row is one
seed's batch for one step); a ``grain.MapDataset`` over those rows maps each row to its
``B`` examples stacked, read by the fastest method the source has, in this order:
``take`` (ArraySource), ``__getitems__`` (array_record's and TFDS's batch read),
``_getitems`` (Grain's ``SupportsBatchedReadRandomAccessDataSource``), else
``__getitem__`` record by record. Grain runs the rows in ``read_threads`` threads
(``to_iter_dataset(ReadOptions(...))``) and, with ``worker_count > 0``, in that many
processes (``mp_prefetch``); each row's batch is copied into one preallocated output.
Rows rather than records are Grain's elements because Grain 0.2.18 reads a
``MapDataset.source(...).batch(...)`` record by record (its batch push-down is an
experiment switched off, and ``SourceMapDataset`` knows only ``_getitems``, not the
``__getitems__`` that array_record and TFDS implement), at the cost measured below.

Measured costs: 2-core CPU machine, Python 3.11, grain 0.2.18, numpy 2.4.6; random
indices (64, 10, 128) = 81,920 examples (257 MB of float32 x) into 60,000 records in the
page cache; microseconds per example, the range over two runs (others shared the machine):

::

    read                                                        us/example   examples/s
    memmap 60000 x 784 float32 + labels, ``x[idx], y[idx]``        1.5-1.8    550k-670k
      ``ArraySource.take(idx)`` in one call                        1.4-1.8    540k-740k
      GrainFeed, take per row of 128, read_threads=2 (default)     1.3-2.3    430k-750k
      GrainFeed, take per row, read_threads=0 / 4              2.2-3.0 / 2.4-4.7
      GrainFeed(batch_reads=False), ``__getitem__`` per record       14-17      57k-69k
      Grain's own ``MapDataset.source(..).batch(128)``, 0/16 thr.    37-39      25k-26k
    TFDS-like dict records (uint8 28x28x1 image, int64 label)        11-13      79k-88k
    ArrayRecordDataSource, pickled dicts + decode, ``__getitems__``  26-27      37k-38k
      the same, ``__getitem__`` per record                         280-310    3.3k-3.6k
    any of the above with worker_count=2                           166-196    5.1k-6.0k

So ``take`` is used where a source has one: it costs what NumPy's gather costs, 10x
less than reading record by record here and 25x less than Grain's own per-record path
(its bookkeeping per element adds ~23 us to the ~15 us of Python per record). Worker
processes lose on this machine: each :meth:`load` spawns them, and each imports
negres.training (jax, flax: 4.9 s on an idle core), 6-11 s in all before the first row;
then a 400 kB row crosses through shared memory in ~4.7 ms against 0.17 ms to read it
in-process. They pay only for records whose decoding costs much more CPU than that, on a
machine with cores to spare.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import flags

from negres.errors import ArgumentError

Tree = Any


def is_random_access(data: Any) -> bool:
    """Whether ``data`` is a random-access source rather than in-memory arrays.

    True for an object with ``__len__`` and ``__getitem__`` (Grain's
    ``RandomAccessDataSource`` protocol: ``grain.sources.ArrayRecordDataSource``,
    ``tfds.data_source(...)``, :class:`ArraySource`, a user class over ``np.memmap``);
    False for what negres treats as a pytree of data: NumPy and JAX arrays (memmaps
    included) and array-likes (anything with ``__array__``, e.g. a DataFrame), lists,
    tuples, dicts and other mappings and registered pytree nodes, strings and bytes, and
    for classes themselves (a class has ``__len__`` as an attribute when its instances do).
    """
    if isinstance(data, type):
        return False
    if isinstance(data, np.ndarray | np.generic | jax.Array | list | tuple | Mapping | str
                  | bytes | bytearray | memoryview):
        return False
    if hasattr(data, "__array__"):  # array-likes (a DataFrame) are one array of data
        return False
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        return False  # (asked first: JAX warns when it flattens a generator)
    # A registered pytree node is a container of data.
    return jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(data))


def _reopen_recipe(leaf: Any) -> tuple | None:
    """How to reopen a memmap in another process, or None when it can't be reopened.

    Only a memmap opened on a file (its ``base`` is the ``mmap`` itself) has a true
    ``filename``/``offset``: a slice of one inherits its parent's, which would reopen
    the wrong bytes, so slices are pickled as data.
    """
    if not (isinstance(leaf, np.memmap) and isinstance(leaf.base, mmap.mmap)
            and leaf.filename):
        return None
    order = "F" if leaf.flags.f_contiguous and not leaf.flags.c_contiguous else "C"
    return (leaf.filename, leaf.dtype, leaf.shape, int(leaf.offset), order)


class ArraySource:
    """Random access over a pytree of arrays that share their leading axis.

    ``ArraySource((np.load("x.npy", mmap_mode="r"), y))``: record ``i`` is the pytree
    of ``leaf[i]``. Leaves stay as given (a memmap is not read until indexed). Pickling
    (Grain's worker processes) sends a memmap opened on a file as its file name, offset
    and shape, reopened read-only on the other side, not as its data.

    Args:
        arrays: a pytree (tuple, dict, ...) of array leaves, each ``(N, ...)``.
    """

    def __init__(self, arrays: Tree):
        leaves, self._treedef = jax.tree_util.tree_flatten(arrays)
        if not leaves:
            raise ArgumentError("arrays", arrays, "a pytree of at least one array")
        self._leaves = [leaf if isinstance(leaf, np.ndarray) else np.asarray(leaf)
                        for leaf in leaves]
        lengths = {leaf.shape[0] if leaf.ndim else None for leaf in self._leaves}
        if len(lengths) != 1 or None in lengths:
            shapes = [leaf.shape for leaf in self._leaves]
            raise ArgumentError("arrays", f"leaves of shapes {shapes}",
                                "arrays sharing their leading (example) axis")
        self._length = lengths.pop()

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Tree:
        """Record ``index``: the pytree of each leaf's row ``index``, ``(...)``."""
        return self._treedef.unflatten([leaf[index] for leaf in self._leaves])

    def take(self, indices: np.ndarray) -> Tree:
        """Records ``indices`` in one vectorised read: leaves ``(*indices.shape, ...)``.

        ``np.take`` gathers straight into a new array (out of a memmap, only the pages
        the indices touch are read), with no Python work per record.
        """
        indices = np.asarray(indices)
        return self._treedef.unflatten(
            [np.asarray(np.take(leaf, indices, axis=0)) for leaf in self._leaves])

    def __repr__(self) -> str:
        # Grain's DataLoader checkpoints a source by its repr.
        shapes = [(leaf.shape, str(leaf.dtype)) for leaf in self._leaves]
        return f"ArraySource(len={self._length}, leaves={shapes})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_leaves"] = [("memmap", recipe) if (recipe := _reopen_recipe(leaf))
                            else ("array", leaf) for leaf in self._leaves]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        leaves = []
        for kind, payload in state["_leaves"]:
            if kind == "memmap":
                filename, dtype, shape, offset, order = payload
                payload = np.memmap(filename, dtype=dtype, mode="r", offset=offset,
                                    shape=shape, order=order)
            leaves.append(payload)
        self.__dict__.update(state, _leaves=leaves)


def _let_grain_read_its_profiling_flag() -> None:
    """Lets grain 0.2.18's ``mp_prefetch`` run in a program that never parsed absl flags.

    With JAX imported, grain 0.2.18 reads ``--grain_enable_multiprocess_worker_profiling``
    when it starts workers, and absl raises ``UnparsedFlagAccessError`` unless flags were
    parsed (google/grain#1355, fixed after 0.2.18). Marking that one flag present, as
    grain does itself for its debug flags, makes it read its default; unlike
    ``FLAGS.mark_as_parsed()`` it leaves every other flag, and a later parse, alone.
    """
    name = "grain_enable_multiprocess_worker_profiling"
    if not flags.FLAGS.is_parsed() and name in flags.FLAGS:
        flags.FLAGS[name].present = True


def _read_mode(source: Any, batch_reads: bool, decode: Callable | None) -> str:
    """The fastest read method ``source`` offers (see the module docstring)."""
    if not batch_reads:
        return "__getitem__"
    if decode is None and callable(getattr(source, "take", None)):
        return "take"
    for method in ("__getitems__", "_getitems"):
        if callable(getattr(source, method, None)):
            return method
    return "__getitem__"


def _leaf_spec(tree: Tree) -> tuple[Any, tuple[tuple[tuple[int, ...], np.dtype], ...]]:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((np.shape(leaf), np.asarray(leaf).dtype) for leaf in leaves)


class _ReadRow:
    """One Grain element: a row of ``B`` source indices -> their records stacked.

    A module-level class, not a closure, so that Grain's worker processes (started by
    ``spawn``) can unpickle it.
    """

    def __init__(self, source: Any, mode: str, decode: Callable[[Any], Tree] | None,
                 spec: tuple):
        self.source, self.mode, self.decode, self.spec = source, mode, decode, spec

    def __call__(self, keys: np.ndarray) -> Tree:
        """Leaves ``(len(keys), ...)``, in the order of ``keys``."""
        if self.mode == "take":
            return _checked_take(self.source.take(keys), keys, self.spec)
        if self.mode == "__getitem__":
            records = [self.source[int(k)] for k in keys]
        else:
            try:
                records = getattr(self.source, self.mode)(keys.tolist())
            except (TypeError, NotImplementedError) as e:
                e.add_note(f"while reading {len(keys)} records with "
                           f"{type(self.source).__name__}.{self.mode}; GrainFeed(..., "
                           f"batch_reads=False) reads them one by one with __getitem__")
                raise
            if len(records) != len(keys):
                raise ValueError(f"{type(self.source).__name__}.{self.mode} returned "
                                 f"{len(records)} records for {len(keys)} indices")
        if self.decode is not None:
            records = [self.decode(r) for r in records]
        return _stack(records, keys, self.spec)


def _checked_take(batch: Tree, keys: np.ndarray, spec: tuple) -> Tree:
    """``batch`` from a source's ``take``, checked to be records ``keys`` stacked.

    ``take`` is duck-typed (a pandas DataFrame has one too): what it returns must have
    record 0's structure, each leaf ``(len(keys), ...)`` with record 0's dtype.
    """
    treedef, leaf_specs = spec
    leaves, batch_def = jax.tree_util.tree_flatten(batch)
    got = [(np.shape(leaf), np.asarray(leaf).dtype) for leaf in leaves]
    want = [((len(keys), *shape), dtype) for shape, dtype in leaf_specs]
    if batch_def != treedef or got != want:
        raise ValueError(f"take of records {keys[:4].tolist()}... returned {batch_def} with "
                         f"leaves {got}; expected {treedef} with leaves {want}")
    return batch


def _stack(records: Sequence[Tree], keys: np.ndarray, spec: tuple) -> Tree:
    """Records stacked leaf by leaf, ``(len(records), ...)``; each checked against spec.

    ``np.stack`` alone would say only that shapes differ; a dataset with one odd record
    in a million needs the record's index to be found.
    """
    treedef, leaf_specs = spec
    columns: list[list[Any]] = [[] for _ in leaf_specs]
    for key, record in zip(keys, records, strict=True):
        leaves, record_def = jax.tree_util.tree_flatten(record)
        if record_def != treedef:
            raise ValueError(f"record {int(key)} of the source has structure {record_def}; "
                             f"record 0 has {treedef}. Records must agree to be stacked")
        for column, leaf, (shape, dtype) in zip(columns, leaves, leaf_specs, strict=True):
            leaf = np.asarray(leaf)
            if leaf.shape != shape or leaf.dtype != dtype:
                raise ValueError(
                    f"record {int(key)} of the source has a leaf of shape {leaf.shape} "
                    f"{leaf.dtype}, where record 0 has {shape} {dtype}. Records must agree "
                    f"in shape and dtype to be stacked (pass decode= to pad or convert "
                    f"them)")
            column.append(leaf)
    return treedef.unflatten([np.stack(column) for column in columns])


class GrainFeed:
    """Examples of a random-access source at given indices, read through Grain.

    ``feed.load(indices)`` with indices ``(S, T, B)`` returns the examples stacked,
    leaves ``(S, T, B, ...)``: what the driver hands one compiled segment.

    Args:
        source: a random-access source (see :func:`is_random_access`), or a pytree of
            arrays (wrapped in an :class:`ArraySource`).
        worker_count: Grain worker processes (``mp_prefetch``); 0 reads in this process.
            Workers are started (``spawn``) at every :meth:`load` and import negres, so
            they pay for themselves only on sources whose records cost CPU to decode.
        read_threads: threads per process reading rows (``ReadOptions.num_threads``).
        prefetch_rows: rows read ahead per process (``ReadOptions.prefetch_buffer_size``).
        batch_reads: use the source's batch reads (``take``, ``__getitems__``,
            ``_getitems``) where it has them; False reads record by record with
            ``__getitem__`` (for a source whose batch method is broken, such as
            ``tfds.data_source`` under ``tfds.testing.mock_data``).
        decode: applied to each record after reading (e.g. ``bytes`` -> arrays for a
            raw ``ArrayRecordDataSource``); a module-level function when
            ``worker_count > 0``, so that it pickles.
    """

    def __init__(self, source: Any, *, worker_count: int = 0, read_threads: int = 2,
                 prefetch_rows: int = 8, batch_reads: bool = True,
                 decode: Callable[[Any], Tree] | None = None):
        if not is_random_access(source):
            source = ArraySource(source)
        for name, value in (("worker_count", worker_count), ("read_threads", read_threads),
                            ("prefetch_rows", prefetch_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ArgumentError(name, value, "an integer >= 0")
        # Imported here, where it is used: importing negres.training stays free of Grain.
        import grain

        self.source = source
        self.worker_count = worker_count
        self.read_options = grain.ReadOptions(num_threads=read_threads,
                                              prefetch_buffer_size=prefetch_rows)
        self.decode = decode
        self.mode = _read_mode(source, batch_reads, decode)
        self.num_examples = len(source)
        if self.num_examples <= 0:
            raise ValueError(f"the source {type(source).__name__} holds no records")
        # Record 0 fixes the structure, shapes and dtypes every record must have.
        first = source[0]
        self.spec = _leaf_spec(first if decode is None else decode(first))
        self._read = _ReadRow(source, self.mode, decode, self.spec)

    def example(self, batch_size: int) -> Tree:
        """The first ``batch_size`` records, leaves ``(batch_size, ...)``, for tracing.

        Read in this process, without Grain's workers. Wraps around a source smaller
        than ``batch_size``.
        """
        return self._read(np.arange(batch_size) % self.num_examples)

    def _check(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices)
        if not np.issubdtype(indices.dtype, np.integer):
            raise TypeError(f"indices must be integers; got dtype {indices.dtype}")
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
            # Grain would wrap an out-of-range index modulo the length: an error instead.
            bad = np.argwhere((indices < 0) | (indices >= self.num_examples))[0]
            raise IndexError(f"index {int(indices[tuple(bad)])} at position {tuple(bad)} is "
                             f"outside the source's {self.num_examples} records")
        return indices

    def load(self, indices: np.ndarray) -> Tree:
        """The examples at ``indices`` in their order: leaves ``(*indices.shape, ...)``.

        Args:
            indices: int array, typically ``(S, T, B)``; each row along the last axis
                (one seed's batch at one step) is one Grain element.
        """
        indices = self._check(indices)
        treedef, leaf_specs = self.spec
        out = [np.empty((*indices.shape, *shape), dtype) for shape, dtype in leaf_specs]
        if indices.size == 0:
            return treedef.unflatten(out)
        width = indices.shape[-1] if indices.ndim else 1
        rows = indices.reshape(-1, width)
        flat_out = [leaf.reshape(len(rows), width, *leaf.shape[indices.ndim:])
                    for leaf in out]
        import grain  # optional, as above: only a fed source needs it

        dataset = grain.MapDataset.source(rows).map(self._read)
        stream = dataset.to_iter_dataset(self.read_options)
        if self.worker_count:
            _let_grain_read_its_profiling_flag()
            stream = stream.mp_prefetch(
                grain.MultiprocessingOptions(num_workers=self.worker_count))
        iterator = iter(stream)
        try:
            for r, batch in enumerate(iterator):
                # Into one preallocated array per leaf: no second copy for concatenating.
                for leaf, part in zip(flat_out, jax.tree_util.tree_leaves(batch),
                                      strict=True):
                    leaf[r] = part
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # stops mp_prefetch's processes now, not at garbage collection
        return treedef.unflatten(out)

    def __repr__(self) -> str:
        return (f"GrainFeed({self.source!r}, worker_count={self.worker_count}, "
                f"read={self.mode})")
