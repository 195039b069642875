"""Shared by the mirror tests: the header's signatures, the library, naive references.

The Julia module and the MATLAB loadlibrary example cannot run on these machines (no
Julia, no MATLAB). Their tests read the binding's source, check every call it makes
against include/tinybrain.h, then make the same calls with the same argument types
through ctypes and compare the results with the numpy references below, written from
SEMANTICS.md (never from the library).
"""

import ctypes
import os
import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEADER = ROOT / "include" / "tinybrain.h"


def library():
    """$TINYBRAIN_LIB (run.sh points it at the installed copy), else the build tree's."""
    path = os.environ.get("TINYBRAIN_LIB") or str(ROOT / "target" / "release" / "libtinybrain.so")
    return ctypes.CDLL(path)


def normalize_c_type(text):
    """'const size_t *const *' -> 'size_t**': no const, no spaces."""
    return re.sub(r"\bconst\b|\s+", "", text)


def header_functions():
    """{name: (return type, [parameter types])}, normalized, from tinybrain.h."""
    text = re.sub(r"//[^\n]*", "", HEADER.read_text())
    out = {}
    for ret, name, params in re.findall(r"^([A-Za-z_][\w \t\*]*?)\s*\b(tb_\w+)\(([^)]*)\);", text, re.M):
        types = []
        for p in params.split(","):
            p = p.strip()
            if p in ("", "void"):
                continue
            types.append(normalize_c_type(re.sub(r"\w+$", "", p)))  # drop the name
        out[name] = (normalize_c_type(ret), types)
    return out


def header_constants():
    """{'TB_UINT8': 1, ..., 'TB_SPARSE': 1, 'TINYBRAIN_VERSION': '0.1.0'}."""
    text = HEADER.read_text()
    consts = {k: int(v) for k, v in re.findall(r"^\s*(TB_\w+) = (\d+),", text, re.M)}
    consts.update({k: int(v) for k, v in re.findall(r"^#define (TB_\w+) (\d+)$", text, re.M)})
    consts["TINYBRAIN_VERSION"] = re.search(r'#define TINYBRAIN_VERSION "([^"]+)"', text).group(1)
    return consts


def split_top_level(text, sep=","):
    """Splits at `sep` outside (), {}, [] and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    return parts + [tail] if tail else parts


def balanced(text, open_at):
    """The text between text[open_at] == '(' and its matching ')', and the index after it."""
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1 : i], i + 1
    raise ValueError("unbalanced parentheses")


# ---------------------------------------------------------------------------------
# naive references (SEMANTICS.md), on arrays whose axis 0 is x


def pad_even(a, axes=(0, 1)):
    """Replicate padding of the given axes to even sizes."""
    for ax in axes:
        if a.shape[ax] % 2:
            last = np.take(a, [-1], axis=ax)
            a = np.concatenate([a, last], axis=ax)
    return a


def sum_2x2(a):
    a = pad_even(a.astype(np.float64) if a.dtype.kind == "f" else a.astype(np.int64))
    return a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]


def average_2x2_pyramid(img, num_mips):
    """Integer 2x2 averaging, tinybrain's cadence for up to 3 mips: mip k = acc_k / 4^k
    truncated toward zero."""
    acc, out = img, []
    for k in range(1, num_mips + 1):
        acc = sum_2x2(acc)
        q = np.abs(acc) // 4**k * np.sign(acc)
        out.append(q.astype(img.dtype))
    return out


def mode_2x2(labels):
    """a if a == b or a == c, else b if b == c, else d; replicate padded."""
    p = pad_even(labels)
    a, b, c, d = p[0::2, 0::2], p[1::2, 0::2], p[0::2, 1::2], p[1::2, 1::2]
    return np.where((a == b) | (a == c), a, np.where(b == c, b, d))


def pool_clipped(a, factor, reduce):
    """reduce over clipped windows of `factor` (one entry per axis)."""
    out = a
    for ax, f in enumerate(factor):
        if f > 1:
            starts = np.arange(0, out.shape[ax], f)
            out = reduce.reduceat(out, starts, axis=ax)
    return out
