"""Read files out of a Qt binary resource file (``.rcc``).

Format (Qt's rcc, versions 1-3): magic ``qres``; four big-endian uint32 (format version, offsets of the tree,
data and names sections). Tree entries are 14 bytes (version 1) or 22 bytes (later, with a modification time):
uint32 name offset, uint16 flags (2 = directory: uint32 child count, uint32 first child index; otherwise bytes
10-14 hold the uint32 data offset). Names are uint16 length + uint32 hash + UTF-16BE text. Data is uint32 size
+ payload, zlib-compressed after a 4-byte length when flags has bit 1.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

_DIRECTORY, _COMPRESSED, _ZSTD = 2, 1, 4


def read_rcc(path: str | Path) -> dict[str, bytes]:
    """Return {resource path: file bytes} for every file in the resource file."""
    blob = Path(path).read_bytes()
    if blob[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource file (no 'qres' magic)")
    version, tree, data, names = struct.unpack(">4I", blob[4:20])
    entry_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset:names + offset + 2])
        start = names + offset + 6
        return blob[start:start + 2 * length].decode("utf-16-be")

    def file_at(offset: int, flags: int) -> bytes:
        (size,) = struct.unpack(">I", blob[data + offset:data + offset + 4])
        payload = blob[data + offset + 4:data + offset + 4 + size]
        if flags & _ZSTD:
            raise ValueError(f"{path}: zstd-compressed resources are not supported")
        return zlib.decompress(payload[4:]) if flags & _COMPRESSED else payload

    files: dict[str, bytes] = {}

    def walk(index: int, prefix: str) -> None:
        base = tree + index * entry_size
        name_offset, flags = struct.unpack(">IH", blob[base:base + 6])
        name = "" if index == 0 else name_at(name_offset)
        full = f"{prefix}/{name}" if name else prefix
        if flags & _DIRECTORY:
            count, first = struct.unpack(">II", blob[base + 6:base + 14])
            for child in range(first, first + count):
                walk(child, full)
        else:
            (offset,) = struct.unpack(">I", blob[base + 10:base + 14])
            files[full] = file_at(offset, flags)

    walk(0, "")
    return files
