"""catq's token-id calibration files, read and written.

A calibration given as token ids (``catq --calib-tokens``, the service's
``token_ids`` calibration kind) is a file of little-endian int32 ids with -1
between documents (core/model/token_id_documents.h). Ids are taken as they
are: a BOS the model expects must be in the file. Empty documents (two
separators in a row, or one at either end) are dropped.

:func:`calibration_sequences` cuts the documents as catq does before
calibrating on them, so statistics collected in PyTorch from the same file
(catq_client.collect_statistics) cover the same tokens as catq's own.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Iterable, Sequence
from typing import Optional

#: The id between two documents.
SEPARATOR = -1


def _int32_array() -> array.array:
    for code in ("i", "l"):
        if array.array(code).itemsize == 4:
            return array.array(code)
    raise RuntimeError("no 4-byte integer array type")  # pragma: no cover


def read_token_ids(path: str,
                   vocab_size: Optional[int] = None) -> list[list[int]]:
    """The documents of a token-id file, each a list of ids.

    Raises:
        ValueError: naming the file and the byte offset, for a size that is
            not a multiple of 4, an id below -1 or (when ``vocab_size`` is
            given) one >= vocab_size; and for a file without any id.
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) % 4:
        raise ValueError(f"{path}: {len(data)} bytes, not a multiple of 4 "
                         "(int32 token ids)")
    ids = _int32_array()
    ids.frombytes(data)
    if sys.byteorder != "little":  # pragma: no cover
        ids.byteswap()
    documents = [[]]
    for index, token in enumerate(ids):
        if token == SEPARATOR:
            documents.append([])
            continue
        if token < SEPARATOR or (vocab_size is not None and
                                 token >= vocab_size):
            bound = "" if vocab_size is None else f" (vocabulary {vocab_size})"
            raise ValueError(f"{path}: byte {4 * index}: token id {token} is "
                             f"out of range{bound}")
        documents[-1].append(token)
    documents = [d for d in documents if d]
    if not documents:
        raise ValueError(f"{path}: no token id")
    return documents


def write_token_ids(path: str, documents: Iterable[Sequence[int]]) -> None:
    """Writes documents of ids as a token-id file (-1 between documents)."""
    ids = _int32_array()
    for document in documents:
        if len(ids):
            ids.append(SEPARATOR)
        ids.extend(document)
    if sys.byteorder != "little":  # pragma: no cover
        ids.byteswap()
    with open(path, "wb") as f:
        ids.tofile(f)


def calibration_sequences(documents: Iterable[Sequence[int]],
                          context: int) -> list[list[int]]:
    """The sequences catq calibrates on: each document cut to ``context``
    tokens (the model's ``max_position_embeddings``); those left with fewer
    than two tokens are skipped."""
    if context < 2:
        raise ValueError(f"context {context}: must be at least 2 tokens")
    sequences = [list(d[:context]) for d in documents]
    return [s for s in sequences if len(s) >= 2]
