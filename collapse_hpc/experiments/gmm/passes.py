"""Compiled passes over the points of one data set, shared by EM and k-means.

They carry no sum from point to point except through dot and log_sum, whose four interleaved
partial sums are independent chains, so the compiler vectorises the rest; exp_neg replaces the
libm exp, which does not vectorise.
"""
from __future__ import annotations

import math

import numba


def _probe():
    return 0


def _cacheable() -> bool:
    """Whether numba finds a writable place for its cache of this folder's kernels: NUMBA_CACHE_DIR,
    this package's __pycache__, or the user's cache (~/.cache/numba). With none (a read-only
    install and a read-only HOME) numba refuses cache=True as the module is imported, which
    stopped every command that reads gmm, status and aggregate included, with a traceback."""
    try:
        numba.njit(cache=True)(_probe)
    except RuntimeError:
        return False
    return True


CACHED = _cacheable()  # else every process compiles the kernels again (gmm's check says so)
JIT = dict(cache=CACHED, nogil=True, error_model="numpy")
# passes over the points may fuse multiplies and adds (FMA): faster and as exact or more;
# nothing else of fast-math (no reassociation), so results do not depend on the vector width
POINTS = dict(JIT, fastmath={"contract"})
LN2_HI, LN2_LO, INV_LN2 = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1.44269504088896338700e+00
EXP_CUT = 40.0  # exp(-40) < 1e-17: below rounding against the 1 it is added to


@numba.njit(inline="always", **POINTS)
def exp_neg(a):
    """exp(-a) for 0 <= a <= 43, to about 1 ulp, in plain arithmetic (vectorisable, unlike a libm
    call): a = k ln 2 - r with |r| <= ln 2 / 2, exp(r) by its Taylor polynomial of degree 13,
    2^-k from the bits of k."""
    k = math.floor(a * INV_LN2 + 0.5)
    r = (k * LN2_HI - a) + k * LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    ki = int(k)
    p *= 0.5 if ki & 1 else 1.0
    p *= 0.25 if ki & 2 else 1.0
    p *= 0.0625 if ki & 4 else 1.0
    p *= 0.00390625 if ki & 8 else 1.0
    p *= 1.52587890625e-05 if ki & 16 else 1.0
    p *= 2.3283064365386963e-10 if ki & 32 else 1.0
    return p


@numba.njit(inline="always", **POINTS)
def dot(a, b):
    """sum_n a[n] b[n] as four interleaved partial sums: independent chains run four times as fast."""
    N = a.shape[0]
    M = N - N % 4
    s0 = s1 = s2 = s3 = 0.0
    for n in range(0, M, 4):
        s0 += a[n] * b[n]
        s1 += a[n + 1] * b[n + 1]
        s2 += a[n + 2] * b[n + 2]
        s3 += a[n + 3] * b[n + 3]
    for n in range(M, N):
        s0 += a[n] * b[n]
    return (s0 + s1) + (s2 + s3)


@numba.njit(inline="always", **POINTS)
def log_sum(top, s, block):
    """sum_n top[n] + log s[n] with s[n] in [1, K]: the logs as the log of products over blocks
    short enough not to overflow, four interleaved chains as in dot."""
    N = top.shape[0]
    lb0 = lb1 = lb2 = lb3 = 0.0
    total = 0.0
    for start in range(0, N, 4 * block):
        p0 = p1 = p2 = p3 = 1.0
        stop = min(N, start + 4 * block)
        M = stop - (stop - start) % 4
        for n in range(start, M, 4):
            lb0 += top[n]
            lb1 += top[n + 1]
            lb2 += top[n + 2]
            lb3 += top[n + 3]
            p0 *= s[n]
            p1 *= s[n + 1]
            p2 *= s[n + 2]
            p3 *= s[n + 3]
        for n in range(M, stop):
            lb0 += top[n]
            p0 *= s[n]
        total += math.log(p0) + math.log(p1) + math.log(p2) + math.log(p3)
    return total + (lb0 + lb1) + (lb2 + lb3)
