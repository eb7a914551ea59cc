"""In-memory point → area index that answers exactly like the SQL locate in ``gis.areas``.

Why not just a shapely STRtree: PostGIS decides ``ST_Covers(polygon, point)`` with a plain
floating-point winding-number test in which a point is "on the boundary" only when the cross
product comes out exactly ``0.0`` (liblwgeom ``point_in_ring``); GEOS, and so shapely and
geopandas, use a robust orientation predicate. The two disagree for points within ~1e-16 of an
edge: (1/3, 1) is on the edge (0, 0)-(1, 3) for PostGIS (so it belongs to both polygons sharing
that edge and the smallest code wins) but strictly on one side for GEOS (so it may get the larger
code). ``AreaIndex`` therefore re-implements the PostGIS test with the same IEEE operations in the
same order and reads the very ``area_parts`` pieces the SQL uses, so both paths give the same grid.

How it is fast: the extent is cut into a raster of small cells. A cell farther than a quarter of a
cell from every polygon edge lies wholly inside one answer, stored in the cell, so most points
are answered by one array lookup. Cells near edges keep a short list of candidate parts, sorted
by code, and their points go through the exact winding-number test, vectorised with numpy.

>>> from shapely import box
>>> idx = AreaIndex.from_geometries([box(0, 0, 1, 1), box(1, 0, 2, 1)], ["A2", "A1"])
>>> idx.lookup(0.5, 0.5), idx.lookup(1.0, 0.5), idx.lookup(5.0, 5.0)
('A2', 'A1', None)
>>> idx.assign([0.5, 1.5, 9.0], [0.5, 0.5, 9.0]).tolist()
['A2', 'A1', None]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

OUTSIDE = -1
# Cell labels: >= 0 the area's position in ``codes``; -1 outside every area; <= -2 a cell near an
# edge whose candidate parts are row (-2 - label) of the candidate table.
_FIRST_EDGE_CELL = -2
_EXACT_BATCH = 65536  # points per batch on the exact path (bounds memory)
_MARK_BATCH = 131072  # segments per batch when rasterising edges

_VALID_AT = (
    "p.valid_from <= COALESCE(CAST(:at AS timestamptz), now())"
    " AND (p.valid_to IS NULL OR p.valid_to > COALESCE(CAST(:at AS timestamptz), now()))"
)


class AreaIndex:
    """The areas of one level, for point lookup. Build with :meth:`load` or
    :meth:`from_geometries`; then :meth:`lookup` one point or :meth:`assign` many.

    ``codes`` are sorted, so a smaller position means a smaller code: on an edge shared by two
    areas the point goes to the smallest code, as in ``gis.areas.locate``.
    """

    codes: NDArray[np.object_]
    ids: NDArray[np.int64]
    level: int | None

    def __init__(
        self,
        parts: Sequence[BaseGeometry] | NDArray[np.object_],
        part_codes: Sequence[str] | NDArray[np.object_],
        part_ids: Sequence[int] | NDArray[np.int64] | None = None,
        *,
        level: int | None = None,
        cells_per_part: float = 256.0,
        max_cells: int = 1 << 25,
    ) -> None:
        """Index polygon ``parts`` (exploded, as stored in ``area_parts``), each with the code and
        id of the area it belongs to. Prefer the two class methods."""
        parts_arr = np.asarray(parts, dtype=object)
        codes_in = np.asarray(part_codes, dtype=object)
        ids_in = (np.full(len(codes_in), -1, dtype=np.int64) if part_ids is None
                  else np.asarray(part_ids, dtype=np.int64))
        if not (len(parts_arr) == len(codes_in) == len(ids_in)):
            raise ValueError(f"{len(parts_arr)} parts but {len(codes_in)} codes and "
                             f"{len(ids_in)} ids")
        self.level = level
        # Areas sorted by (code, id): position order is code order, the tie-break of the SQL.
        keys = sorted({(str(c), int(i)) for c, i in zip(codes_in, ids_in, strict=True)})
        position = {k: n for n, k in enumerate(keys)}
        self.codes = np.array([k[0] for k in keys], dtype=object)
        self.ids = np.array([k[1] for k in keys], dtype=np.int64)
        part_area = np.array([position[(str(c), int(i))] for c, i in
                              zip(codes_in, ids_in, strict=True)], dtype=np.int64)
        self._build_segments(parts_arr, part_area)
        self._build_raster(parts_arr, cells_per_part, max_cells)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_geometries(
        cls,
        geoms: Sequence[BaseGeometry] | NDArray[np.object_],
        codes: Sequence[str] | NDArray[np.object_],
        ids: Sequence[int] | NDArray[np.int64] | None = None,
        **options: Any,
    ) -> AreaIndex:
        """Index (multi)polygons in lon/lat with their codes (and optional ids).

        Multipolygons are exploded; nothing is subdivided. To reproduce the SQL answer bit for
        bit use :meth:`load`, which reads the ``ST_Subdivide`` pieces the SQL itself uses.
        """
        geoms_arr = np.asarray(geoms, dtype=object)
        if len(geoms_arr) != len(codes):
            raise ValueError(f"{len(geoms_arr)} geometries but {len(codes)} codes")
        parts, owner = shapely.get_parts(geoms_arr, return_index=True)
        codes_arr = np.asarray(codes, dtype=object)[owner]
        ids_arr = None if ids is None else np.asarray(ids, dtype=np.int64)[owner]
        return cls(parts, codes_arr, ids_arr, **options)

    @classmethod
    def load(
        cls,
        conn: Connection,
        *,
        level: int | str | None = None,
        at: datetime | None = None,
        jurisdiction_id: int | None = None,
        **options: Any,
    ) -> AreaIndex:
        """The areas of ``level`` (rank or name; default the deepest) in force at ``at`` (default
        now), of one jurisdiction or of all, read from ``area_parts``."""
        params: dict[str, Any] = {"at": at, "j": jurisdiction_id}
        where = _VALID_AT + ("" if jurisdiction_id is None else " AND a.jurisdiction_id = :j")
        if level is None:
            level = conn.execute(
                text(f"SELECT max(p.level) FROM area_parts p JOIN areas a ON a.id = p.area_id"
                     f" WHERE {where}"), params).scalar()
            if level is None:
                return cls([], [], [], level=None, **options)
        elif isinstance(level, str):
            from gis.areas import level_rank

            level = level_rank(conn, level, jurisdiction_id)
        params["level"] = int(level)
        rows = conn.execute(
            text(f"SELECT a.id, a.code, ST_AsBinary(p.geom) FROM area_parts p"
                 f" JOIN areas a ON a.id = p.area_id WHERE p.level = :level AND {where}"
                 f" ORDER BY a.code, a.id, p.id"), params).all()
        parts = shapely.from_wkb([bytes(r[2]) for r in rows])
        return cls(parts, [r[1] for r in rows], [int(r[0]) for r in rows], level=int(level),
                   **options)

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self.codes)

    def lookup(self, lon: float, lat: float) -> str | None:
        """The code of the area covering (lon, lat), smallest code on shared edges; else None."""
        pos = self.lookup_index(lon, lat)
        return None if pos < 0 else str(self.codes[pos])

    def lookup_index(self, lon: float, lat: float) -> int:
        """Like :meth:`lookup`, as a position in :attr:`codes` (-1 outside)."""
        lon = float(lon)
        lat = float(lat)
        u = (lon - self._x0) * self._inv_dx
        v = (lat - self._y0) * self._inv_dy
        if not (0.0 <= u < self._nx and 0.0 <= v < self._ny):  # also false for NaN
            return OUTSIDE
        label = int(self._label[int(v) * self._nx + int(u)])
        if label > _FIRST_EDGE_CELL:
            return label
        row = _FIRST_EDGE_CELL - label
        for j in range(int(self._cand_ptr[row]), int(self._cand_ptr[row + 1])):
            part = int(self._cand_part[j])
            if self._covers_one(lon, lat, part):
                return int(self._part_area[part])
        return OUTSIDE

    def assign(self, lons: ArrayLike, lats: ArrayLike) -> NDArray[np.object_]:
        """Codes of the areas covering each point (None outside), vectorised."""
        pos = self.assign_index(lons, lats)
        out = np.full(len(pos), None, dtype=object)
        hit = pos >= 0
        out[hit] = self.codes[pos[hit]]
        return out

    def assign_ids(self, lons: ArrayLike, lats: ArrayLike) -> NDArray[np.int64]:
        """Area ids of the areas covering each point (-1 outside), vectorised."""
        pos = self.assign_index(lons, lats)
        return np.where(pos >= 0, self.ids[np.maximum(pos, 0)], -1)

    def assign_index(self, lons: ArrayLike, lats: ArrayLike) -> NDArray[np.int64]:
        """Positions in :attr:`codes` of the areas covering each point (-1 outside)."""
        x = np.ascontiguousarray(lons, dtype=np.float64).ravel()
        y = np.ascontiguousarray(lats, dtype=np.float64).ravel()
        if x.shape != y.shape:
            raise ValueError(f"{len(x)} lons but {len(y)} lats")
        out = np.full(len(x), OUTSIDE, dtype=np.int64)
        if self._n_parts == 0 or len(x) == 0:
            return out
        u = (x - self._x0) * self._inv_dx
        v = (y - self._y0) * self._inv_dy
        inside = (u >= 0.0) & (u < self._nx) & (v >= 0.0) & (v < self._ny)  # NaN → False
        where = np.flatnonzero(inside)
        cell = v[where].astype(np.int64) * self._nx + u[where].astype(np.int64)
        label = self._label[cell].astype(np.int64)
        out[where] = label
        near = label <= _FIRST_EDGE_CELL
        if near.any():
            pts = where[near]
            rows = _FIRST_EDGE_CELL - label[near]
            for start in range(0, len(pts), _EXACT_BATCH):
                sl = slice(start, start + _EXACT_BATCH)
                out[pts[sl]] = self._exact(x[pts[sl]], y[pts[sl]], rows[sl])
        return out

    @property
    def stats(self) -> dict[str, Any]:
        """Sizes of the index (for benchmarks and tuning)."""
        edge_cells = int(np.count_nonzero(self._label <= _FIRST_EDGE_CELL))
        return {"areas": len(self.codes), "parts": self._n_parts,
                "segments": len(self._sx1), "cells": int(self._label.size),
                "edge_cells": edge_cells, "candidates": int(len(self._cand_part)),
                "cell_deg": (self._dx, self._dy)}

    # ------------------------------------------------------------------ the PostGIS test

    def _covers_pairs(self, px: NDArray[np.float64], py: NDArray[np.float64],
                      part: NDArray[np.int64]) -> NDArray[np.bool_]:
        """PostGIS ``ST_Covers(part, point)`` for each (point, part) pair.

        Mirrors liblwgeom ``point_in_ring`` / ``point_in_polygon`` (PostGIS 3.3): a point is on
        the boundary when ``determineSide`` is exactly 0 and it lies in the segment's closed
        bounding box; otherwise the winding number over segments with ``y1 <= y < y2`` (rising,
        point left) or ``y2 <= y < y1`` (falling, point right) decides; a point inside a hole
        is outside. The arithmetic is the same IEEE double expression, in the same order.
        """
        n_pairs = len(part)
        start = self._seg_start[part]
        count = self._seg_start[part + 1] - start
        total = int(count.sum())
        pair = np.repeat(np.arange(n_pairs, dtype=np.int64), count)
        seg = np.arange(total, dtype=np.int64) + np.repeat(start - (np.cumsum(count) - count),
                                                           count)
        qy = py[pair]
        keep = (self._symin[seg] <= qy) & (qy <= self._symax[seg])
        pair = pair[keep]
        seg = seg[keep]
        qy = qy[keep]
        qx = px[pair]
        x1 = self._sx1[seg]
        y1 = self._sy1[seg]
        x2 = self._sx2[seg]
        y2 = self._sy2[seg]
        side = (x2 - x1) * (qy - y1) - (qx - x1) * (y2 - y1)
        on_edge = (side == 0.0) & (np.minimum(x1, x2) <= qx) & (qx <= np.maximum(x1, x2))
        boundary = np.bincount(pair[on_edge], minlength=n_pairs) > 0
        wind = (((y1 <= qy) & (qy < y2) & (side > 0.0)).astype(np.int64)
                - ((y2 <= qy) & (qy < y1) & (side < 0.0)).astype(np.int64))
        if self._max_rings == 1:
            inside = np.bincount(pair, weights=wind, minlength=n_pairs) != 0
        else:
            rings = self._max_rings
            wn = np.bincount(pair * rings + self._sring[seg], weights=wind,
                             minlength=n_pairs * rings).reshape(n_pairs, rings)
            inside = (wn[:, 0] != 0) & ~(wn[:, 1:] != 0).any(axis=1)
        result: NDArray[np.bool_] = boundary | inside
        return result

    def _covers_one(self, x: float, y: float, part: int) -> bool:
        """The same test for one point, in plain Python (Python floats are IEEE doubles and
        the expression is evaluated in the same order, so the answer is bit-identical); numpy
        call overhead would dominate for the few segments of a part."""
        s0 = int(self._seg_start[part])
        s1 = int(self._seg_start[part + 1])
        if s1 - s0 > 256:
            return bool(self._covers_pairs(np.array([x]), np.array([y]),
                                           np.array([part], dtype=np.int64))[0])
        wn = [0] * self._max_rings
        for ax, ay, bx, by, ring in zip(self._sx1[s0:s1].tolist(), self._sy1[s0:s1].tolist(),
                                        self._sx2[s0:s1].tolist(), self._sy2[s0:s1].tolist(),
                                        self._sring[s0:s1].tolist(), strict=True):
            if (y < ay and y < by) or (y > ay and y > by):
                continue
            side = (bx - ax) * (y - ay) - (x - ax) * (by - ay)
            if side == 0.0 and min(ax, bx) <= x <= max(ax, bx):
                return True
            if ay <= y < by and side > 0.0:
                wn[ring] += 1
            elif by <= y < ay and side < 0.0:
                wn[ring] -= 1
        return wn[0] != 0 and not any(wn[1:])

    def _exact(self, x: NDArray[np.float64], y: NDArray[np.float64],
               rows: NDArray[np.int64]) -> NDArray[np.int64]:
        """Positions for points in edge cells: first covering candidate (candidates are sorted
        by code, so the first is the smallest code)."""
        first = self._cand_ptr[rows]
        count = self._cand_ptr[rows + 1] - first
        point = np.repeat(np.arange(len(rows), dtype=np.int64), count)
        slot = np.arange(int(count.sum()), dtype=np.int64) + np.repeat(
            first - (np.cumsum(count) - count), count)
        part = self._cand_part[slot].astype(np.int64)
        covered = self._covers_pairs(x[point], y[point], part)
        point = point[covered]
        area = self._part_area[part[covered]]
        out = np.full(len(rows), OUTSIDE, dtype=np.int64)
        if len(point):
            lead = np.flatnonzero(np.r_[True, point[1:] != point[:-1]])
            out[point[lead]] = area[lead]
        return out

    # ------------------------------------------------------------------ building

    def _build_segments(self, parts: NDArray[np.object_], part_area: NDArray[np.int64]) -> None:
        self._n_parts = len(parts)
        self._part_area = part_area
        empty_f = np.zeros(0, dtype=np.float64)
        if self._n_parts == 0:
            self._sx1 = self._sy1 = self._sx2 = self._sy2 = empty_f
            self._symin = self._symax = empty_f
            self._sring = np.zeros(0, dtype=np.int64)
            self._seg_start = np.zeros(1, dtype=np.int64)
            self._max_rings = 1
            return
        kinds = shapely.get_type_id(parts)
        if not np.all(kinds == shapely.GeometryType.POLYGON):
            bad = sorted({shapely.GeometryType(int(k)).name for k in kinds
                          if k != shapely.GeometryType.POLYGON})
            raise ValueError(f"area parts must be polygons, got {bad}")
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        first_ring = np.searchsorted(ring_part, np.arange(self._n_parts))
        ring_local = np.arange(len(rings)) - first_ring[ring_part]
        self._max_rings = int(ring_local.max()) + 1 if len(rings) else 1
        coords, ring_of = shapely.get_coordinates(rings, return_index=True)
        same = ring_of[1:] == ring_of[:-1]
        a = coords[:-1][same]
        b = coords[1:][same]
        ring = ring_of[:-1][same]
        nonzero = (a[:, 0] != b[:, 0]) | (a[:, 1] != b[:, 1])  # PostGIS skips zero-length
        a, b, ring = a[nonzero], b[nonzero], ring[nonzero]
        self._sx1 = np.ascontiguousarray(a[:, 0])
        self._sy1 = np.ascontiguousarray(a[:, 1])
        self._sx2 = np.ascontiguousarray(b[:, 0])
        self._sy2 = np.ascontiguousarray(b[:, 1])
        self._symin = np.minimum(self._sy1, self._sy2)
        self._symax = np.maximum(self._sy1, self._sy2)
        self._sring = ring_local[ring].astype(np.int64)
        seg_part = ring_part[ring]
        self._seg_start = np.searchsorted(seg_part, np.arange(self._n_parts + 1)).astype(np.int64)

    def _build_raster(self, parts: NDArray[np.object_], cells_per_part: float,
                      max_cells: int) -> None:
        if self._n_parts == 0:
            self._x0 = self._y0 = 0.0
            self._dx = self._dy = self._inv_dx = self._inv_dy = 1.0
            self._nx = self._ny = 1
            self._label = np.full(1, OUTSIDE, dtype=np.int32)
            self._cand_ptr = np.zeros(2, dtype=np.int64)
            self._cand_part = np.zeros(0, dtype=np.int32)
            return
        xmin = float(min(self._sx1.min(), self._sx2.min()))
        xmax = float(max(self._sx1.max(), self._sx2.max()))
        ymin = float(self._symin.min())
        ymax = float(self._symax.max())
        # Square-ish cells on the ground: a degree of longitude is cos(lat) shorter.
        kx = math.cos(math.radians((ymin + ymax) / 2)) if abs(ymax) <= 90 and abs(ymin) <= 90 \
            else 1.0
        kx = max(kx, 0.05)
        width = max(xmax - xmin, 1e-9)
        height = max(ymax - ymin, 1e-9)
        target = min(max(cells_per_part * self._n_parts, 64.0), float(max_cells))
        side = math.sqrt(width * kx * height / target)
        dx = side / kx
        dy = side
        nx = int(math.ceil(width / dx)) + 2
        ny = int(math.ceil(height / dy)) + 2
        self._dx, self._dy = dx, dy
        self._x0, self._y0 = xmin - dx, ymin - dy
        self._inv_dx, self._inv_dy = 1.0 / dx, 1.0 / dy
        self._nx, self._ny = nx, ny

        edge = self._mark_edge_cells()
        label = np.full(nx * ny, OUTSIDE, dtype=np.int64)
        self._label_free_cells(parts, edge, label)
        self._build_candidates(edge, label)
        self._label = label.astype(np.int32)

    def _mark_edge_cells(self) -> NDArray[np.bool_]:
        """Cells within a quarter cell of any segment (a conservative band around every edge).

        Segments are sampled every half cell; the 3×3 neighbourhood of each sample's cell is
        marked. A cell within 1/4 cell of a segment point q has a sample within 1/4 of q, so
        within 1/2 cell of itself: in itself or a neighbour. Unmarked cells are thus at least 1/4
        cell from every edge, far beyond any floating-point doubt.
        """
        nx, ny = self._nx, self._ny
        hit = np.zeros((ny, nx), dtype=bool)
        for s in range(0, len(self._sx1), _MARK_BATCH):
            sl = slice(s, s + _MARK_BATCH)
            u1 = (self._sx1[sl] - self._x0) * self._inv_dx
            v1 = (self._sy1[sl] - self._y0) * self._inv_dy
            du = (self._sx2[sl] - self._x0) * self._inv_dx - u1
            dv = (self._sy2[sl] - self._y0) * self._inv_dy - v1
            steps = np.ceil(np.hypot(du, dv) / 0.5).astype(np.int64) + 1
            seg = np.repeat(np.arange(len(u1)), steps)
            k = np.arange(int(steps.sum())) - np.repeat(np.cumsum(steps) - steps, steps)
            t = k / np.maximum(steps - 1, 1)[seg]
            iu = np.clip((u1[seg] + t * du[seg]).astype(np.int64), 0, nx - 1)
            iv = np.clip((v1[seg] + t * dv[seg]).astype(np.int64), 0, ny - 1)
            hit[iv, iu] = True
        grown = hit.copy()
        grown[1:, :] |= hit[:-1, :]
        grown[:-1, :] |= hit[1:, :]
        out = grown.copy()
        out[:, 1:] |= grown[:, :-1]
        out[:, :-1] |= grown[:, 1:]
        return out.ravel()

    def _label_free_cells(self, parts: NDArray[np.object_], edge: NDArray[np.bool_],
                          label: NDArray[np.int64]) -> None:
        """Label cells away from edges: each run of such cells along a row lies in one face of
        the polygon arrangement, so one point per run decides the whole run. Far from edges
        GEOS and PostGIS agree, so shapely's STRtree does this one-off work."""
        nx = self._nx
        free = ~edge.reshape(self._ny, nx)
        start = free.copy()
        start[:, 1:] &= ~free[:, :-1]
        start_flat = start.ravel()
        run_of_cell = np.cumsum(start_flat) - 1
        first = np.flatnonzero(start_flat)
        if len(first) == 0:
            return
        cx = self._x0 + ((first % nx) + 0.5) * self._dx
        cy = self._y0 + ((first // nx) + 0.5) * self._dy
        tree = shapely.STRtree(parts)
        pt_idx, part_idx = tree.query(shapely.points(cx, cy), predicate="intersects")
        run_label = np.full(len(first), OUTSIDE, dtype=np.int64)
        if len(pt_idx):
            area = self._part_area[part_idx]
            order = np.lexsort((area, pt_idx))
            pt_sorted = pt_idx[order]
            lead = np.flatnonzero(np.r_[True, pt_sorted[1:] != pt_sorted[:-1]])
            run_label[pt_sorted[lead]] = area[order][lead]
        free_flat = free.ravel()
        label[free_flat] = run_label[run_of_cell[free_flat]]

    def _build_candidates(self, edge: NDArray[np.bool_], label: NDArray[np.int64]) -> None:
        """For every edge cell, the parts whose bounding box reaches it, sorted by code.

        Cell coordinates are computed with the same monotone expression as in the queries, so a
        point inside a part's box always falls in a cell of that box's cell range.
        """
        nx = self._nx
        bounds = np.column_stack([
            np.minimum.reduceat(np.minimum(self._sx1, self._sx2), self._seg_start[:-1]),
            np.minimum.reduceat(self._symin, self._seg_start[:-1]),
            np.maximum.reduceat(np.maximum(self._sx1, self._sx2), self._seg_start[:-1]),
            np.maximum.reduceat(self._symax, self._seg_start[:-1]),
        ]) if len(self._sx1) else np.zeros((self._n_parts, 4))
        has_segments = self._seg_start[1:] > self._seg_start[:-1]
        c0 = ((bounds[:, 0] - self._x0) * self._inv_dx).astype(np.int64)
        r0 = ((bounds[:, 1] - self._y0) * self._inv_dy).astype(np.int64)
        c1 = ((bounds[:, 2] - self._x0) * self._inv_dx).astype(np.int64)
        r1 = ((bounds[:, 3] - self._y0) * self._inv_dy).astype(np.int64)
        width = np.where(has_segments, c1 - c0 + 1, 0)
        height = np.where(has_segments, r1 - r0 + 1, 0)
        cells_list: list[NDArray[np.int64]] = []
        parts_list: list[NDArray[np.int64]] = []
        size = width * height
        done = np.cumsum(size)
        lo = 0
        while lo < self._n_parts:  # batches of ~4M (cell, part) pairs bound the memory
            base = int(done[lo - 1]) if lo else 0
            hi = max(int(np.searchsorted(done, base + 4_000_000, side="right")), lo + 1)
            n = size[lo:hi]
            part = np.repeat(np.arange(lo, hi, dtype=np.int64), n)
            k = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
            w = np.maximum(width[part], 1)
            cell = (r0[part] + k // w) * nx + c0[part] + k % w
            keep = edge[cell]
            cells_list.append(cell[keep])
            parts_list.append(part[keep])
            lo = hi
        cells = np.concatenate(cells_list) if cells_list else np.zeros(0, dtype=np.int64)
        cand = np.concatenate(parts_list) if parts_list else np.zeros(0, dtype=np.int64)
        order = np.lexsort((self._part_area[cand], cells))
        cells = cells[order]
        cand = cand[order]
        rows, row_of = np.unique(cells, return_inverse=True)
        ptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of, minlength=len(rows)), out=ptr[1:])
        # Edge cells no box reaches are plainly outside; the rest point to their candidate row.
        edge_cells = np.flatnonzero(edge)
        label[edge_cells] = OUTSIDE
        label[rows] = _FIRST_EDGE_CELL - np.arange(len(rows), dtype=np.int64)
        self._cand_ptr = ptr
        self._cand_part = cand.astype(np.int32)
