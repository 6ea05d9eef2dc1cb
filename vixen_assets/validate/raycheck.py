"""A small CPU reference for ray/triangle intersection (Moller-Trumbore in float64, vectorized over rays x
triangles, in chunks), used by the ``gpu.round-trip`` rule to check rays traced on the GPU."""

from __future__ import annotations

import numpy as np


def closest_hits(tris: np.ndarray, origins: np.ndarray, directions: np.ndarray,
                 chunk: int = 65536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest hit of each ray against ``tris`` (``(T, 3, 3)``): ``(hit, t, margin)``; ``margin`` is the smallest
    barycentric coordinate of the closest hit (near 0: the ray grazes an edge and either answer is right).

    :param tris: triangles in world space.
    :param origins: ``(R, 3)`` ray origins.
    :param directions: ``(R, 3)`` ray directions (t in units of the direction).
    :param chunk: triangles per vectorized step.
    :returns: ``hit`` (bool), ``t`` (float64, inf on a miss), ``margin`` (float64).
    """
    o = np.asarray(origins, np.float64)
    d = np.asarray(directions, np.float64)
    best_t = np.full(len(o), np.inf)
    best_m = np.zeros(len(o))
    for s in range(0, len(tris), chunk):
        v0, v1, v2 = (tris[s:s + chunk, k].astype(np.float64) for k in range(3))
        e1, e2 = v1 - v0, v2 - v0
        p = np.cross(d[:, None, :], e2[None])
        det = np.einsum("rkc,kc->rk", p, e1)
        ok = np.abs(det) > 1e-14
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        tv = o[:, None, :] - v0[None]
        u = np.einsum("rkc,rkc->rk", tv, p) * inv
        q = np.cross(tv, e1[None])
        v = np.einsum("rc,rkc->rk", d, q) * inv
        t = np.einsum("rkc,kc->rk", q, e2) * inv
        w = 1.0 - u - v
        hit = ok & (u >= 0) & (v >= 0) & (w >= 0) & (t > 0)
        t = np.where(hit, t, np.inf)
        k = np.argmin(t, axis=1)
        tk = t[np.arange(len(o)), k]
        better = tk < best_t
        margin = np.minimum(np.minimum(u, v), w)[np.arange(len(o)), k]
        best_t = np.where(better, tk, best_t)
        best_m = np.where(better, margin, best_m)
    return np.isfinite(best_t), best_t, best_m


def compare_rays(tris: np.ndarray, origins: np.ndarray, directions: np.ndarray, gpu_hit: np.ndarray,
                 gpu_t: np.ndarray, *, rel_tol: float = 1e-3) -> tuple[list[int], int]:
    """Rays whose GPU answer disagrees with the CPU's, ignoring ambiguous ones (grazing an edge).

    :returns: ``(indices of mismatched rays, number of ambiguous rays skipped)``.
    """
    hit, t, margin = closest_hits(tris, origins, directions)
    ambiguous = hit & (margin < 1e-4)
    bad = []
    for r in range(len(origins)):
        if ambiguous[r]:
            continue
        if bool(gpu_hit[r]) != bool(hit[r]):
            bad.append(r)
        elif hit[r] and abs(float(gpu_t[r]) - t[r]) > rel_tol * max(1.0, t[r]):
            bad.append(r)
    return bad, int(ambiguous.sum())
