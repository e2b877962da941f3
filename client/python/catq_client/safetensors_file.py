"""safetensors files, read and written with the standard library.

The layout (https://github.com/huggingface/safetensors): an 8-byte
little-endian header size, a JSON header naming each tensor's dtype, shape
and byte range (``data_offsets``, relative to the end of the header), and the
little-endian tensor data. catq writes its models, outputs and statistics
files this way; this module is what the client's statistics collector writes
with and the PyTorch Llama (catq_client.torch_llama) reads with.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence

# A header larger than this is not a safetensors file (the format's own
# limit is 100 MB).
_MAX_HEADER_BYTES = 100 * 2**20


def read_header(path: str) -> tuple[dict, int]:
    """``(header, data_start)`` of a safetensors file: the header's tensors
    (``{name: {"dtype", "shape", "data_offsets"}}``, without
    ``__metadata__``) in file order, and the byte offset their data ranges
    are relative to.

    Raises:
        ValueError: not a safetensors file, or a tensor's range lies outside
            the file.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path}: {size} bytes, too short for a "
                             "safetensors file")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > min(_MAX_HEADER_BYTES, size - 8):
            raise ValueError(f"{path}: header of {header_size} bytes in a "
                             f"file of {size}: not a safetensors file")
        try:
            header = json.loads(f.read(header_size))
        except ValueError as error:
            raise ValueError(f"{path}: the header is not JSON "
                             f"({error})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header is not a JSON object")
    header.pop("__metadata__", None)
    data_start = 8 + header_size
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= size - data_start:
            raise ValueError(f"{path}: tensor {name}: bytes [{begin}, {end})"
                             f" lie outside the {size - data_start} bytes "
                             "of data")
    return header, data_start


def read_safetensors(path: str) -> tuple[dict, dict]:
    """``(header, {name: bytes})``: :func:`read_header` and each tensor's
    raw little-endian bytes (the whole file is read: for small files)."""
    header, data_start = read_header(path)
    with open(path, "rb") as f:
        data = f.read()
    view = memoryview(data)[data_start:]
    return header, {name: view[info["data_offsets"][0]:
                               info["data_offsets"][1]]
                    for name, info in header.items()}


def write_safetensors(path: str, tensors: Sequence[tuple]) -> None:
    """Writes ``(name, dtype, shape, data bytes)`` tensors, in that order, as a
    safetensors file (compact JSON header padded with spaces to 8 bytes, as
    catq writes it). Atomic: written to ``path + ".tmp"``, then renamed."""
    header = {}
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for _, _, _, data in tensors:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
