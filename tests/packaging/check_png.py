"""check_png.py DIR: the demo's PNGs are valid, and each image mip the 2x2 mean of the one above.

Decodes every PNG in DIR with Python's zlib (which checks the stream's Adler-32) after
checking each chunk's CRC, then compares each image_mip<k+1>.png with the 2x2 mean of
image_mip<k>.png (floor of the sum / 4; the demo's sizes are even): mip 1 must be exactly
that; later mips come from tinybrain's wide accumulator (floor of the sum of the 4^k input
voxels / 4^k), which is that or 1 more. Exit status 0 if all holds.
"""

import pathlib
import struct
import sys
import zlib

import numpy as np


def read_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind}"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, *_ = header
    channels = {0: 1, 2: 3}[color]
    assert depth == 8
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    assert not rows[:, 0].any(), f"{path}: unexpected filter bytes"
    return rows[:, 1:].reshape(height, width, channels).squeeze()


def main(directory):
    directory = pathlib.Path(directory)
    pngs = sorted(directory.glob("*.png"))
    images = {p.name: read_png(p) for p in pngs}
    mips = sorted(n for n in images if n.startswith("image_mip"))
    assert len(mips) >= 2 and "contact_sheet.png" in images, sorted(images)
    for k, (upper, lower) in enumerate(zip(mips, mips[1:])):
        a, b = images[upper].astype(np.int64), images[lower].astype(np.int64)
        mean = (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) // 4
        extra = b - mean
        assert extra.min() >= 0 and extra.max() <= (0 if k == 0 else 1), f"{lower} vs the 2x2 mean of {upper}"
    print(f"{len(pngs)} PNGs valid; {len(mips) - 1} image mips are the 2x2 mean of the one above")


if __name__ == "__main__":
    main(sys.argv[1])
