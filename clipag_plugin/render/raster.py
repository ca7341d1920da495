"""Pure-PyTorch differentiable rasterizer for open cubic-Bezier strokes.

How it works, in four steps (each a function below):

1. **Flatten** every curve into short line pieces (error under ``tolerance`` pixels).
2. **Bin** the pieces into square tiles of the canvas by their bounding boxes grown by the
   stroke's reach; only (piece, tile) pairs that can touch are evaluated, never every path at
   every pixel.
3. **Cover**: per (path, tile), the distance from each pixel centre to the nearest piece gives an
   anti-aliased coverage ``clamp(w + 1/2 - d, 0, 1)`` (a one-pixel box filter across the edge; a
   straight stroke of half-width ``w >= 1/2`` covers exactly its area).
4. **Composite** the paths of each tile "over" one another in path order, onto the background.

Widths follow diffvg's ``stroke_width``: the *half* thickness of the stroke (a path with width 1
draws a line two pixels thick), with round caps and joins. Coordinates are pixels, ``(x, y)``,
origin at the top-left corner, pixel ``(i, j)`` spanning ``[i, i+1] x [j, j+1]``.
Everything is differentiable in control points, widths, colours and the background.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F

from .bezier import flatten_counts, flatten_cubics

__all__ = ["rasterize_strokes", "segment_index", "Background"]

Background = Union[float, Sequence[float], torch.Tensor, str, None]

_EDGE = 0.5  # half the width of the anti-aliasing ramp, in pixels


def segment_index(num_segments: Union[Sequence[int], torch.Tensor], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Control-point indices ``(S, 4)`` of every cubic segment and the path ``(S,)`` it belongs to.

    Path ``p`` owns ``3 * num_segments[p] + 1`` consecutive points (diffvg's layout for open paths).
    """
    ns = torch.as_tensor(num_segments, dtype=torch.long, device=device).reshape(-1)
    if ns.numel() and int(ns.min()) < 1:
        raise ValueError(f"every path needs at least one segment; got num_segments={ns.tolist()}")
    per_path = 3 * ns + 1
    path_first = torch.cumsum(per_path, 0) - per_path
    seg_path = torch.repeat_interleave(torch.arange(ns.shape[0], device=ns.device), ns)
    seg_rank = torch.arange(seg_path.shape[0], device=ns.device) - (torch.cumsum(ns, 0) - ns)[seg_path]
    first = path_first[seg_path] + 3 * seg_rank
    return first[:, None] + torch.arange(4, device=ns.device), seg_path


def _background(background: Background, batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` background from a colour name, a grey level, an RGB triple or an image;
    ``(B, 4, H, W)`` transparent black for ``None`` (premultiplied RGBA output)."""
    if background is None:
        return like.new_zeros(1, 4, 1, 1).expand(batch, 4, height, width)
    if isinstance(background, str):
        names = {"white": 1.0, "black": 0.0}
        if background not in names:
            raise ValueError(f"background {background!r}: use one of {sorted(names)}, a number, an RGB triple or a tensor")
        background = names[background]
    bg = torch.as_tensor(background, dtype=like.dtype, device=like.device)
    if bg.ndim == 0:
        bg = bg.expand(3)
    if bg.ndim == 1:
        if bg.shape[0] != 3:
            raise ValueError(f"background colour must have 3 channels (RGB), got shape {tuple(bg.shape)}")
        bg = bg.view(1, 3, 1, 1)
    elif bg.ndim == 3:
        bg = bg.unsqueeze(0)
    if bg.ndim != 4 or bg.shape[1] != 3 or bg.shape[-2:] not in ((1, 1), (height, width)):
        raise ValueError(
            f"background tensor must be (3, {height}, {width}) or (B, 3, {height}, {width}), got {tuple(bg.shape)}"
        )
    return bg.expand(batch, 3, height, width)


@torch.no_grad()
def _bin(starts: torch.Tensor, ends: torch.Tensor, reach: torch.Tensor, tile: int, n_tx: int, n_ty: int):
    """(batch, piece, tile) triples whose tile may lie within ``reach`` of the piece."""
    batch, n_pieces = starts.shape[:2]
    lo = torch.floor((torch.minimum(starts, ends) - reach[..., None]) / tile).long()
    hi = torch.floor((torch.maximum(starts, ends) + reach[..., None]) / tile).long()
    grid = torch.tensor([n_tx, n_ty], device=starts.device)
    inside = ((hi >= 0) & (lo < grid)).all(-1)
    lo = torch.minimum(lo.clamp_min(0), grid - 1)
    hi = torch.minimum(hi, grid - 1)
    span = (hi - lo + 1).clamp_min(1)
    count = (span[..., 0] * span[..., 1] * inside).reshape(-1)
    owner = torch.repeat_interleave(torch.arange(count.shape[0], device=starts.device), count)
    rank = torch.arange(owner.shape[0], device=starts.device) - (torch.cumsum(count, 0) - count)[owner]
    lo, span = lo.reshape(-1, 2)[owner], span.reshape(-1, 2)[owner]
    tx = lo[:, 0] + rank % span[:, 0]
    ty = lo[:, 1] + rank // span[:, 0]
    return owner // n_pieces, owner % n_pieces, ty * n_tx + tx


def _piece_distance2(a: torch.Tensor, b: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Squared distance from pixel centres ``(gx, gy)`` ``(T*T,)`` to segments ``a -> b``.

    ``a``, ``b`` are ``(N, 2)`` (one segment for all pixels of a row) or ``(N, T*T, 2)`` (one per pixel).
    """
    if a.ndim == 2:
        a, b = a[:, None, :], b[:, None, :]
    vx, vy = (b - a).unbind(-1)
    wx = gx - a[..., 0]
    wy = gy - a[..., 1]
    t = ((wx * vx + wy * vy) / (vx * vx + vy * vy).clamp_min(1e-12)).clamp(0.0, 1.0)
    dx = wx - t * vx
    dy = wy - t * vy
    return dx * dx + dy * dy


@torch.no_grad()
def _fully_covered(a: torch.Tensor, b: torch.Tensor, tile: int, half: torch.Tensor) -> torch.Tensor:
    """Whether every pixel centre of the tile is deeper than the anti-aliasing ramp inside the
    stroke of piece ``a -> b`` (relative to the tile corner). Distance to a segment is convex,
    so checking the four corner pixel centres suffices."""
    lo, hi = 0.5, tile - 0.5
    corners_x = a.new_tensor([lo, hi, lo, hi])
    corners_y = a.new_tensor([lo, lo, hi, hi])
    depth = (half - _EDGE - 1e-3).clamp_min(0)
    return _piece_distance2(a, b, corners_x, corners_y).amax(1) < depth * depth


@torch.no_grad()
def _nearest_piece(a, b, cols: torch.Tensor, rows: torch.Tensor, group_of: torch.Tensor, n_groups: int) -> torch.Tensor:
    """For each (group, pixel), the index of the candidate pair whose piece is nearest.

    ``a``, ``b``: ``(N, 2)`` pieces relative to their tile's corner; ``cols``/``rows``: ``(T,)``
    pixel-centre offsets. Uses the tile's grid structure and in-place ops (no autograd here).
    """
    v = b - a
    vv = (v * v).sum(-1).clamp_min(1e-12)
    # t = clamp(((p - a) . v) / |v|^2, 0, 1), separable in the pixel's column and row.
    t = (rows[None, :, None] * (v[:, 1] / vv)[:, None, None] - ((a * v).sum(-1) / vv)[:, None, None]) \
        + cols[None, None, :] * (v[:, 0] / vv)[:, None, None]
    t.clamp_(0.0, 1.0)
    dx = (cols[None, None, :] - a[:, 0, None, None]) - t * v[:, 0, None, None]
    dy = t.mul_(v[:, 1, None, None]).neg_().add_(rows[None, :, None] - a[:, 1, None, None])
    d2 = dx.square_().add_(dy.square_()).reshape(a.shape[0], -1)
    index = group_of[:, None].expand_as(d2)
    best = d2.new_empty(n_groups, d2.shape[1]).scatter_reduce_(0, index, d2, "amin", include_self=False)
    pair = torch.arange(d2.shape[0], device=d2.device)[:, None].expand_as(d2)
    pair = torch.where(d2 == best.gather(0, index), pair, -1)
    return torch.full_like(best, -1, dtype=torch.long).scatter_reduce_(0, index, pair, "amax")


def _composite(alpha: torch.Tensor, rgb: torch.Tensor, group_tile: torch.Tensor, bg_tiles: torch.Tensor,
               straight: bool = False):
    """'Over' of the layers of each tile, in order, onto its background.

    ``alpha`` ``(G, T*T)`` and ``rgb`` ``(G, 3)`` are layers sorted by tile then path;
    ``group_tile`` ``(G,)`` the (sorted) tile of each; ``bg_tiles`` ``(N, 3, T*T)``, or
    ``(N, 4, T*T)`` zeros for a transparent canvas (premultiplied RGBA out).
    Returns the composited tiles that hold layers and their indices into ``bg_tiles``.
    """
    tiles, tile_of, per_tile = torch.unique_consecutive(group_tile, return_inverse=True, return_counts=True)
    depth = torch.arange(alpha.shape[0], device=alpha.device) - (torch.cumsum(per_tile, 0) - per_tile)[tile_of]
    n, m, p = tiles.shape[0], int(per_tile.max()), alpha.shape[1]
    alpha_stack = alpha.new_zeros(n, m, p).index_put((tile_of, depth), alpha)
    rgb_stack = rgb.new_zeros(n, m, rgb.shape[1]).index_put((tile_of, depth), rgb)
    # through[i] = transmittance of layers i..m-1; a layer shows through everything above it.
    through = torch.cumprod((1.0 - alpha_stack).flip(1), 1).flip(1)
    above = torch.cat([through[:, 1:], through.new_ones(n, 1, p)], 1)
    color = torch.einsum("nmp,nmc->ncp", alpha_stack * above, rgb_stack)
    bg = bg_tiles[tiles]
    if bg.shape[1] == 4:  # transparent canvas: colour stays premultiplied, alpha = 1 - total transmittance
        coverage = 1.0 - through[:, :1]
        if straight:  # colour divided by alpha, on the covered tiles only
            covered = coverage > 1e-6
            color = torch.where(covered, color / torch.where(covered, coverage, torch.ones_like(coverage)), 0.0)
        return torch.cat([color, coverage], 1), tiles
    return color + bg * through[:, :1], tiles


def rasterize_strokes(
    points: torch.Tensor,
    num_segments: Union[Sequence[int], torch.Tensor],
    widths: torch.Tensor,
    colors: torch.Tensor,
    height: int,
    width: int,
    background: Background = "white",
    *,
    tile: int = 8,
    tolerance: float = 0.1,
    premultiplied: bool = True,
) -> torch.Tensor:
    """Render open cubic-Bezier strokes, composited in order over ``background``.

    Args:
        points: ``(N, 2)`` or batched ``(B, N, 2)`` control points in pixels; path ``p`` owns
            ``3 * num_segments[p] + 1`` consecutive points.
        num_segments: ``(P,)`` cubic segments per path (shared by the batch).
        widths: ``(P,)`` / ``(B, P)`` stroke half-widths in pixels (diffvg's ``stroke_width``);
            ``(P,)`` is shared by a batch.
        colors: ``(P, 4)`` / ``(B, P, 4)`` straight (not premultiplied) RGBA in [0, 1];
            ``(P, 4)`` is shared by a batch.
        height, width: canvas size in pixels.
        background: ``"white"``/``"black"``, a grey level, an RGB triple, an image
            ``(3, H, W)`` / ``(B, 3, H, W)``, or ``None`` for a transparent canvas (the result is
            then premultiplied RGBA: four channels, colour already multiplied by coverage).
        tile: side of the culling tiles in pixels. Small tiles cull tightly, large ones cost less
            bookkeeping; 8 is the fastest on CPU over a CLIPDraw run (benchmarks/bench_render.py).
        tolerance: largest distance in pixels between a curve and its flattened pieces.
        premultiplied: with ``background=None``, False divides the colour by the alpha where the
            alpha is above 1e-6 (straight RGBA, pydiffvg's layout); ignored otherwise.

    Returns:
        ``(3, H, W)`` (or ``(B, 3, H, W)`` for batched input) RGB images; four channels with
        ``background=None``.
    """
    batched = points.ndim == 3
    if not batched:
        points, widths, colors = points.unsqueeze(0), widths.unsqueeze(0), colors.unsqueeze(0)
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (N, 2) or (B, N, 2), got {tuple(points.shape)}")
    batch = points.shape[0]
    seg_points, seg_path = segment_index(num_segments, device=points.device)
    n_paths = int(torch.as_tensor(num_segments).numel())
    expected = int(seg_points[-1, -1]) + 1 if seg_points.numel() else 0
    if points.shape[1] != expected:
        raise ValueError(f"num_segments describes {expected} control points but points has {points.shape[1]}")
    widths = widths.unsqueeze(0).expand(batch, -1) if widths.ndim == 1 else widths
    colors = colors.unsqueeze(0).expand(batch, -1, -1) if colors.ndim == 2 else colors
    if widths.shape != (batch, n_paths):
        raise ValueError(f"widths must be ({n_paths},) or ({batch}, {n_paths}), got {tuple(widths.shape)}")
    if colors.shape != (batch, n_paths, 4):
        raise ValueError(f"colors must be ({n_paths}, 4) or ({batch}, {n_paths}, 4) RGBA, got {tuple(colors.shape)}")
    if tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError("points hold NaN or infinite coordinates; check the optimizer's learning rate")

    n_tx, n_ty = -(-width // tile), -(-height // tile)
    bg = _background(background, batch, height, width, points)
    channels = bg.shape[1]
    bg = F.pad(bg, (0, n_tx * tile - width, 0, n_ty * tile - height))
    bg_tiles = bg.reshape(batch, channels, n_ty, tile, n_tx, tile).permute(0, 2, 4, 1, 3, 5)
    bg_tiles = bg_tiles.reshape(-1, channels, tile * tile)
    if n_paths == 0:
        return bg[..., :height, :width] if batched else bg[0, :, :height, :width]

    # 1. flatten the curves into line pieces
    ctrl = points[:, seg_points]  # (B, S, 4, 2)
    starts, ends, piece_seg = flatten_cubics(ctrl, flatten_counts(ctrl, tolerance))
    piece_path = seg_path[piece_seg]

    # 2. bin pieces into the tiles they can reach
    reach = widths.detach()[:, piece_path].clamp_min(0) + _EDGE + 1e-3
    pb, pl, ptile = _bin(starts, ends, reach, tile, n_tx, n_ty)
    key = (pb * (n_tx * n_ty) + ptile) * n_paths + piece_path[pl]
    groups, group_of = torch.unique(key, return_inverse=True)  # sorted by (batch, tile, path)
    g_path = groups % n_paths
    g_tile = groups // n_paths  # batch * n_tiles + tile
    g_batch = g_tile // (n_tx * n_ty)

    # 3. coverage of each (path, tile) from the nearest piece: find it without autograd over all
    #    candidate pairs, then measure the distance to that one piece only, with gradients.
    offs = torch.arange(tile, device=points.device, dtype=points.dtype) + 0.5
    gy, gx = torch.meshgrid(offs, offs, indexing="ij")
    gx, gy = gx.reshape(-1), gy.reshape(-1)
    origin = torch.stack([ptile % n_tx, ptile // n_tx], -1).to(points.dtype) * tile
    a_rel, b_rel = starts.detach()[pb, pl] - origin, ends.detach()[pb, pl] - origin
    # Tiles lying wholly inside one piece's stroke are covered (and flat): skip their search.
    full = _fully_covered(a_rel, b_rel, tile, widths.detach()[pb, piece_path[pl]])
    full_group = torch.zeros(groups.shape[0], dtype=torch.bool, device=points.device).index_fill_(0, group_of[full], True)
    search = torch.nonzero(~full_group[group_of]).squeeze(1)
    winner = search.new_zeros(groups.shape[0], tile * tile)
    if search.numel():
        found = _nearest_piece(a_rel[search], b_rel[search], offs, offs, group_of[search], groups.shape[0])
        winner = search[found.clamp_min(0)]  # (G, T*T) pair index; arbitrary where the tile is full
    piece = (pb * starts.shape[1] + pl)[winner]  # (G, T*T) into the flattened (B * L) pieces
    tile_in_batch = g_tile % (n_tx * n_ty)
    g_origin = torch.stack([tile_in_batch % n_tx, tile_in_batch // n_tx], -1).to(points.dtype)[:, None] * tile
    nearest = _piece_distance2(starts.reshape(-1, 2)[piece] - g_origin, ends.reshape(-1, 2)[piece] - g_origin, gx, gy)
    half = widths[g_batch, g_path][:, None]
    coverage = (half + _EDGE - torch.sqrt(nearest + 1e-12)).clamp(0.0, 1.0)
    coverage = torch.where(full_group[:, None], torch.ones_like(coverage), coverage)

    # 4. composite each tile's layers in path order over the background
    rgba = colors[g_batch, g_path]
    color, tiles = _composite(coverage * rgba[:, 3:], rgba[:, :3], g_tile, bg_tiles, straight=not premultiplied)
    out = bg_tiles.index_copy(0, tiles, color)
    out = out.reshape(batch, n_ty, n_tx, channels, tile, tile).permute(0, 3, 1, 4, 2, 5)
    out = out.reshape(batch, channels, n_ty * tile, n_tx * tile)[..., :height, :width]
    return out if batched else out[0]
