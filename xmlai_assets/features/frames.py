"""Master and split CSVs read back as arrays shaped [row, track, parameter]."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from xmlai_assets.timeline.schema import COLUMNS, N_TRACKS, TRACK_COLUMNS, TRACK_PARAMS

BLOCK_BYTES = 1 << 20
FLOAT64 = pa.float64()
_TYPES = {"video_id": pa.string(), "source_video_name": pa.string(), "time": FLOAT64}
# Every field takes at least one character and a separator: a bound on the rows of a file.
_MIN_ROW_BYTES = 2 * len(COLUMNS)


class DataFileError(ValueError):
    """A data file the pipeline cannot use; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def check_header(path: str | os.PathLike[str]) -> None:
    """Raise unless the CSV's header is the documented 183 columns in their order."""
    try:
        with open(path, "rb") as fh:
            header = fh.readline().decode("utf-8").rstrip("\r\n").split(",")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"cannot read the header ({exc})") from exc
    if header == list(COLUMNS):
        return
    if len(header) != len(COLUMNS):
        raise DataFileError(path, f"{len(header)} columns, expected {len(COLUMNS)}")
    i = next(i for i, (a, b) in enumerate(zip(header, COLUMNS, strict=True)) if a != b)
    raise DataFileError(path, f"column {i + 1} is {header[i]!r}, expected {COLUMNS[i]!r}")


def _convert_options(
    track_type: pa.DataType, columns: Sequence[str] | None
) -> pa_csv.ConvertOptions:
    types = dict(_TYPES)
    types.update(dict.fromkeys(TRACK_COLUMNS, track_type))
    return pa_csv.ConvertOptions(
        column_types=types,
        include_columns=list(columns) if columns is not None else None,
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )


def iter_batches(
    path: str | os.PathLike[str],
    *,
    track_type: pa.DataType = FLOAT64,
    columns: Sequence[str] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the CSV in record batches, after checking its header.

    Small blocks bound the reader's memory: it parses ahead several dozen blocks, so 8 MB blocks
    held about 200 MB of a 38 MB file at once, 1 MB blocks about 50 MB, for the same speed.
    """
    check_header(path)
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
            convert_options=_convert_options(track_type, columns),
        )
        yield from reader
    except pa.ArrowInvalid as exc:
        raise DataFileError(path, f"cannot read: {exc}") from exc
    finally:
        # Hand the reader's buffers back to the system for the numpy work that follows.
        pa.default_memory_pool().release_unused()


def read_columns(path: str | os.PathLike[str], columns: Sequence[str]) -> pa.Table:
    """A few columns of the CSV as a table (track columns as float64), read in bounded memory."""
    batches = list(iter_batches(path, columns=columns))
    if not batches:
        return pa.table({name: pa.array([], _TYPES.get(name, FLOAT64)) for name in columns})
    return pa.Table.from_batches(batches)


@dataclass
class TrackFrames:
    """One split's rows grouped by timeline: `values[row, track, param]` in the CSV's order.

    Rows of video `video_ids[i]` are `values[offsets[i] : offsets[i] + lengths[i]]`, in time order.
    """

    video_ids: list[str]
    offsets: np.ndarray
    lengths: np.ndarray
    time: np.ndarray
    values: np.ndarray


def group_rows(video_codes: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """(row order that makes each video contiguous or None, offsets, lengths) of coded rows."""
    order = None
    if np.any(video_codes[1:] < video_codes[:-1]):
        order = np.argsort(video_codes, kind="stable")
        video_codes = video_codes[order]
    lengths = np.bincount(video_codes).astype(np.int64)
    offsets = np.cumsum(lengths) - lengths
    return order, offsets, lengths


def load_track_frames(path: str | os.PathLike[str], dtype: type = np.float32) -> TrackFrames:
    """Read a master or split CSV into a TrackFrames, rows grouped per video in file order."""
    # Room for the most rows the file can hold; pages past the real rows are never touched, so
    # they take no memory, and no second copy of the values is ever made.
    capacity = os.path.getsize(path) // _MIN_ROW_BYTES + 1
    values = np.empty((capacity, len(TRACK_COLUMNS)), dtype=dtype)
    ids, times, n = [], [], 0
    arrow_type = pa.from_numpy_dtype(np.dtype(dtype))
    for batch in iter_batches(path, track_type=arrow_type):
        k = batch.num_rows
        for j, name in enumerate(TRACK_COLUMNS):
            values[n : n + k, j] = batch.column(name).to_numpy(zero_copy_only=False)
        ids.append(batch.column("video_id"))
        times.append(batch.column("time").to_numpy(zero_copy_only=False))
        n += k
    values = values[:n]
    encoded = pa.chunked_array(ids, pa.string()).combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    time = np.concatenate(times) if times else np.zeros(0)
    order, offsets, lengths = group_rows(codes)
    if order is not None:
        values, time = values[order], time[order]
    return TrackFrames(
        video_ids=encoded.dictionary.to_pylist(),
        offsets=offsets,
        lengths=lengths,
        time=time,
        values=values.reshape(n, N_TRACKS, len(TRACK_PARAMS)),
    )
