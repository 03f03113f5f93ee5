# SPDX-License-Identifier: Apache-2.0
"""Figures of tracking windows (needs the ``plot`` extra: matplotlib, imported lazily with the Agg backend).

One figure per window, one row per method, three panels per row: the image-plane path of the box
centres, the x centre against the frame and the y centre against the frame. Ground truth is dashed,
each method's estimate solid, detections grey dots. Each estimated track is matched to a ground-truth
identity (Hungarian assignment on the mean centre distance over the window, or on the mean IoU) and drawn
in that identity's colour, so an estimate of another colour running along a ground-truth path is a real
identity switch; frames where an estimated box misses its matched ground truth (IoU < 0.5, the metrics'
threshold) are marked with an ``x``. The window's MOTA / IDF1 / ID switches of each method go in the titles.

* :func:`plot_tracks` — one window, any number of methods, returns the PNG path;
* :func:`plot_windows` — several windows of a batch, returns the PNG paths;
* :func:`pick_windows` — ``k`` window indices spread evenly over a batch;
* :func:`match_identities` — the estimate-to-ground-truth identity matching used for the colours.

Whole sequences (tracks that are born and die, MOTChallenge rows ``frame, id, box``):

* :func:`match_sequence_identities` — each estimated id to the ground-truth id it covers in the most frames
  (Hungarian assignment on the number of frames with IoU >= 0.5, the count behind IDF1);
* :func:`plot_sequence` — box centres against the frame, ground truth dashed and estimates solid, one colour
  per ground-truth identity shared by its matched estimate, unmatched estimates grey; one row per method.
"""

import os
import warnings

import numpy as np

#: IoU under which an estimated box does not count as its matched identity (MOTChallenge convention,
#: the same as :func:`pyro_dvae.metrics.tracking_metrics`).
MIN_IOU = 0.5


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        raise ImportError("plotting needs matplotlib: pip install 'pyro-dvae[plot]'") from None
    return plt


def _centre(b):
    b = np.asarray(b, float)
    return (b[..., :2] + b[..., 2:4]) / 2


def pick_windows(num_windows, k=3):
    """``k`` window indices spread evenly over ``range(num_windows)`` (first and last included; the middle
    one when ``k == 1``; all of them when ``k >= num_windows``), sorted and distinct.

    >>> pick_windows(10, 3)
    [0, 4, 9]
    """
    num_windows, k = int(num_windows), int(k)
    if num_windows <= 0 or k <= 0:
        return []
    if k >= num_windows:
        return list(range(num_windows))
    if k == 1:
        return [(num_windows - 1) // 2]
    return sorted({int(i) for i in np.linspace(0, num_windows - 1, k).round()})


def match_identities(gt, est, cost="centre"):
    """Match estimated tracks to ground-truth identities over a window (Hungarian assignment).

    :param gt: ``(T, N, 4)`` ground-truth boxes (x1, y1, x2, y2); NaN boxes (absent) are ignored.
    :param est: ``(T, M, 4)`` estimated boxes.
    :param str cost: ``"centre"`` (mean box-centre distance over the frames) or ``"iou"`` (``1 -`` mean IoU;
        ties between tracks that never overlap are broken by the centre distance).
    :returns: int array ``(M,)``: the ground-truth index of each estimated track, ``-1`` for an estimated
        track left unmatched (only when ``M > N``).
    """
    from scipy.optimize import linear_sum_assignment

    from pyro_dvae.data.mot import iou_xyxy

    gt, est = np.asarray(gt, float), np.asarray(est, float)
    if gt.ndim != 3 or est.ndim != 3 or gt.shape[0] != est.shape[0]:
        raise ValueError(f"need gt (T, N, 4) and est (T, M, 4) with the same T, got {gt.shape} and {est.shape}")
    with np.errstate(invalid="ignore"):
        dist = np.linalg.norm(_centre(gt)[:, :, None] - _centre(est)[:, None], axis=-1)  # (T, N, M)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an identity absent from the whole window: all NaN
        mean_dist = np.nanmean(dist, 0)
    mean_dist = np.nan_to_num(mean_dist, nan=1e6)
    if cost == "centre":
        c = mean_dist
    elif cost == "iou":
        c = 1.0 - iou_xyxy(gt, est).mean(0) + 1e-3 * mean_dist / (1.0 + mean_dist.max())
    else:
        raise ValueError(f"cost must be 'centre' or 'iou', got {cost!r}")
    rows, cols = linear_sum_assignment(c)
    match = np.full(est.shape[1], -1, int)
    match[cols] = rows
    return match


def window_metrics(gt, est):
    """MOTA, IDF1, ID switches, ... of one window: :func:`pyro_dvae.metrics.tracking_metrics` on ``[gt], [est]``."""
    from pyro_dvae.metrics import tracking_metrics

    return tracking_metrics([np.asarray(gt, float)], [np.asarray(est, float)])


def _metrics_text(m):
    pct = lambda v: "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"  # noqa: E731
    return f"MOTA {pct(m.get('mota'))}  IDF1 {pct(m.get('idf1'))}  IDS {m.get('num_switches', 'n/a')}"


def _colours(plt, n):
    cmap = plt.cm.tab10 if n <= 10 else plt.cm.tab20
    return [cmap(i % cmap.N) for i in range(n)]


def plot_tracks(gt, estimates, path, title="", obs=None, obs_mask=None, *, metrics=True, match="centre",
                frame0=0, gt_ids=None, annotate=4, dpi=100):
    """Save a PNG of one window: ground truth vs each method's estimate (see the module docstring).

    :param gt: ``(T, N, 4)`` ground-truth boxes (x1, y1, x2, y2, normalised).
    :param dict estimates: method name -> ``(T, M, 4)`` estimated boxes (numpy or torch); one row per method.
    :param str path: the PNG written (its folder is created).
    :param str title: figure title (e.g. the sequence and frames).
    :param obs: optional ``(T, K, 4)`` detections drawn as grey dots; ``obs_mask (T, K)`` marks the real ones.
    :param metrics: ``True``: compute each method's MOTA / IDF1 / ID switches on this window and show them;
        a dict method -> :func:`~pyro_dvae.metrics.tracking_metrics` dict: show those; ``False``: none.
    :param str match: identity-matching cost for the colours (:func:`match_identities`), or ``None`` to colour
        estimate ``n`` like ground truth ``n`` (no matching).
    :param int frame0: frame number of the window's first frame (the time axes show ``frame0 + t``).
    :param gt_ids: optional ``N`` labels of the ground-truth identities in the legend (e.g. the MOT track ids,
        ``MOTWindow.ids``); default ``0 .. N-1``.
    :param int annotate: frame labels along each ground-truth path in the image-plane panel (0: none).
    :returns: ``path``.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D

    gt = np.asarray(gt, float)
    estimates = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, float) for k, v in estimates.items()}
    if not estimates:
        raise ValueError("need at least one method's estimate")
    T, N = gt.shape[:2]
    frames = frame0 + np.arange(T)
    if metrics is True:
        metrics = {name: window_metrics(gt, est) for name, est in estimates.items()}
    metrics = metrics or {}
    M = max(e.shape[1] for e in estimates.values())
    colours = _colours(plt, max(N, M))  # unmatched estimates (M > N) take the colours after the gt ones
    g = _centre(gt)
    det = None
    if obs is not None:
        obs = np.asarray(obs, float)
        keep = np.ones(obs.shape[:2], bool) if obs_mask is None else np.asarray(obs_mask, bool)
        det_t = np.broadcast_to(frames[:, None], keep.shape)[keep]
        det = _centre(obs)[keep], det_t

    from pyro_dvae.data.mot import iou_xyxy

    rows = len(estimates)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 3.6 * rows + 1.2), squeeze=False,
                             gridspec_kw={"width_ratios": [1.1, 1, 1]})
    marks = np.unique(np.linspace(0, T - 1, annotate).round().astype(int)) if annotate else []
    for r, (name, est) in enumerate(estimates.items()):
        e = _centre(est)
        if match is None:
            m_of = np.where(np.arange(est.shape[1]) < N, np.arange(est.shape[1]), -1)
        else:
            m_of = match_identities(gt, est, cost=match)
        ax_xy, ax_x, ax_y = axes[r]
        if det is not None:
            ax_xy.scatter(det[0][:, 0], det[0][:, 1], s=5, c="0.7", zorder=1)
            ax_x.scatter(det[1], det[0][:, 0], s=5, c="0.7", zorder=1)
            ax_y.scatter(det[1], det[0][:, 1], s=5, c="0.7", zorder=1)
        for n in range(N):
            kw = dict(ls="--", color=colours[n], lw=1.2, alpha=0.9, zorder=2)
            ax_xy.plot(g[:, n, 0], g[:, n, 1], **kw)
            ax_xy.plot(g[0, n, 0], g[0, n, 1], "o", mfc="none", color=colours[n], ms=7, zorder=4)
            ax_x.plot(frames, g[:, n, 0], **kw)
            ax_y.plot(frames, g[:, n, 1], **kw)
            for t in marks:
                ax_xy.annotate(str(frames[t]), g[t, n], textcoords="offset points", xytext=(3, 3), fontsize=7,
                               color=colours[n])
        for m in range(est.shape[1]):
            n = m_of[m]
            c = colours[n] if n >= 0 else colours[N + (m % max(M - N, 1))]
            kw = dict(ls="-", color=c, lw=1.8, zorder=3)
            ax_xy.plot(e[:, m, 0], e[:, m, 1], **kw)
            ax_x.plot(frames, e[:, m, 0], **kw)
            ax_y.plot(frames, e[:, m, 1], **kw)
            # frames where this estimate does not cover its matched identity (IoU < MIN_IOU): misses / switches
            off = np.ones(T, bool) if n < 0 else iou_xyxy(gt[:, n:n + 1], est[:, m:m + 1])[:, 0, 0] < MIN_IOU
            if off.any():
                for ax, x, y in ((ax_xy, e[off, m, 0], e[off, m, 1]), (ax_x, frames[off], e[off, m, 0]),
                                 (ax_y, frames[off], e[off, m, 1])):
                    ax.plot(x, y, "x", color=c, ms=4, mew=1, zorder=5)
        label = name + (f" — {_metrics_text(metrics[name])}" if name in metrics else "")
        ax_xy.set_title(f"{label}\nimage plane (o: first frame, numbers: frame)", fontsize=9)
        ax_xy.invert_yaxis()
        ax_xy.set_xlabel("x centre (normalised)")
        ax_xy.set_ylabel("y centre (normalised, down)")
        ax_x.set_title(f"{name}: x centre vs frame", fontsize=9)
        ax_x.set_xlabel("frame")
        ax_x.set_ylabel("x centre")
        ax_y.set_title(f"{name}: y centre vs frame", fontsize=9)
        ax_y.set_xlabel("frame")
        ax_y.set_ylabel("y centre (down)")
        ax_y.invert_yaxis()
        for ax in axes[r]:
            ax.grid(alpha=0.3)
    handles = [Line2D([], [], ls="--", color="0.2", lw=1.2, label="ground truth (dashed)"),
               Line2D([], [], ls="-", color="0.2", lw=1.8, label="estimate (solid, colour of its matched gt id)"),
               Line2D([], [], ls="", marker="x", color="0.2", label=f"estimate off its gt id (IoU < {MIN_IOU})")]
    if det is not None:
        handles.append(Line2D([], [], ls="", marker="o", ms=4, color="0.7", label="detections"))
    handles += [Line2D([], [], ls="-", lw=4, color=colours[n], label=f"gt id {n if gt_ids is None else gt_ids[n]}")
                for n in range(N)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4 + N), fontsize=8, frameon=False)
    head = title.strip()
    if metrics:
        head += ("\n" if head else "") + "   |   ".join(f"{k}: {_metrics_text(v)}" for k, v in metrics.items())
    if head:
        fig.suptitle(head, fontsize=11)
    fig.tight_layout(rect=(0, 0.45 / (3.6 * rows + 1.2), 1, 1))
    return _save(fig, path, dpi)


def _save(fig, path, dpi):
    """Write ``fig`` to ``path`` (its folder created when missing), close it and return ``path``."""
    import matplotlib.pyplot as plt

    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_windows(gts, estimates, out_dir, *, indices=None, k=3, detections=None, titles=None, names=None, frame0=None,
                 gt_ids=None, prefix="tracks", **kwargs):
    """One :func:`plot_tracks` figure per chosen window of a batch, all methods in each figure.

    :param gts: ``(W, T, N, 4)`` array or list of ``W`` ``(T, N, 4)`` ground-truth windows.
    :param dict estimates: method -> ``(W, T, M, 4)`` (numpy / torch) or list of ``W`` windows.
    :param str out_dir: folder of the PNGs (created).
    :param indices: windows to draw; default :func:`pick_windows` ``(W, k)``.
    :param detections: optional ``(obs, obs_mask)``: lists / arrays of ``W`` ``(T, K_w, 4)`` detections and their
        ``(T, K_w)`` masks (drawn as grey dots).
    :param titles: optional list of ``W`` titles (default ``"window i"``).
    :param names: optional list of ``W`` file-name stems (default ``f"{prefix}_{i:04d}"``).
    :param frame0: optional list of ``W`` first-frame numbers for the time axes.
    :param gt_ids: optional list of ``W`` tuples of ``N`` identity labels for the legends (``MOTWindow.ids``).
    :param kwargs: passed to :func:`plot_tracks` (``metrics``, ``match``, ``annotate``, ``dpi``).
    :returns: list of the PNG paths written, in the order of ``indices``.
    """
    W = len(gts)
    indices = pick_windows(W, k) if indices is None else [int(i) for i in indices]
    obs, obs_mask = (None, None) if detections is None else detections
    paths = []
    for i in indices:
        if not 0 <= i < W:
            raise IndexError(f"window {i} out of range (0..{W - 1})")
        stem = names[i] if names is not None else f"{prefix}_{i:04d}"
        path = os.path.join(out_dir, f"{stem}.png")
        paths.append(plot_tracks(gts[i], {m: e[i] for m, e in estimates.items()}, path,
                                 title=titles[i] if titles is not None else f"window {i}",
                                 obs=None if obs is None else obs[i],
                                 obs_mask=None if obs_mask is None else obs_mask[i],
                                 frame0=0 if frame0 is None else int(frame0[i]),
                                 gt_ids=None if gt_ids is None else gt_ids[i], **kwargs))
    return paths


# ------------------------------------------------------------------------------------------ whole sequences
def _rows(frames, ids, boxes, what):
    frames = np.asarray(frames).astype(int).reshape(-1)
    ids = np.asarray(ids).astype(int).reshape(-1)
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    if not len(frames) == len(ids) == len(boxes):
        raise ValueError(f"{what}: frames, ids and boxes need the same length, got {len(frames)}, {len(ids)} and "
                         f"{len(boxes)}")
    return frames, ids, boxes


def match_sequence_identities(gt_frames, gt_ids, gt_boxes, est_frames, est_ids, est_boxes, min_iou=MIN_IOU):
    """Match the estimated identities of a whole sequence to its ground-truth identities.

    The cost is the number of frames where the two boxes overlap with ``IoU >= min_iou`` (the true-positive
    count of IDF1), maximised by the Hungarian assignment, one estimated id per gt id; an estimated id left
    over, or assigned a gt id it never overlaps, is unmatched.

    :param gt_frames: ``(n,)`` frame numbers, ``gt_ids (n,)`` identities, ``gt_boxes (n, 4)`` ``x, y, w, h``
        (MOTChallenge rows); ``est_*`` the same for the tracker output.
    :returns: dict ``{estimated id: gt id}``, ``-1`` for an unmatched estimated id (every estimated id is a key).
    """
    from scipy.optimize import linear_sum_assignment

    from pyro_dvae.data.mot import iou_xyxy, xywh_to_xyxy

    gf, gi, gb = _rows(gt_frames, gt_ids, gt_boxes, "ground truth")
    ef, ei, eb = _rows(est_frames, est_ids, est_boxes, "estimate")
    g_ids, g_idx = np.unique(gi, return_inverse=True)
    e_ids, e_idx = np.unique(ei, return_inverse=True)
    counts = np.zeros((len(g_ids), len(e_ids)), int)
    gb, eb = xywh_to_xyxy(gb), xywh_to_xyxy(eb)
    for f in np.intersect1d(gf, ef):
        a, b = np.flatnonzero(gf == f), np.flatnonzero(ef == f)
        hit = iou_xyxy(gb[a], eb[b]) >= min_iou
        ga, eb_ = np.nonzero(hit)
        np.add.at(counts, (g_idx[a][ga], e_idx[b][eb_]), 1)
    match = {int(e): -1 for e in e_ids}
    if counts.size:
        rows, cols = linear_sum_assignment(-counts)
        for r, c in zip(rows, cols):
            if counts[r, c] > 0:
                match[int(e_ids[c])] = int(g_ids[r])
    return match


def _identity_colours(plt, n):
    """``n`` colours with no grey in them (grey is for unmatched tracks): tab10 without its grey, black, then
    tab20's light shades without grey, repeated if needed."""
    dark = [plt.cm.tab10(i) for i in range(10) if i != 7] + [(0.0, 0.0, 0.0, 1.0)]
    light = [plt.cm.tab20(i) for i in range(1, 20, 2) if i != 15]
    palette = dark + light
    return [palette[i % len(palette)] for i in range(n)]


def _broken(frames, values):
    """Frames and values with a NaN inserted at each gap in the frames (so that a line is not drawn across)."""
    order = np.argsort(frames, kind="stable")
    frames, values = frames[order].astype(float), values[order]
    gaps = np.flatnonzero(np.diff(frames) > 1) + 1
    return np.insert(frames, gaps, np.nan), np.insert(values, gaps, np.nan)


def plot_sequence(gt_frames, gt_ids, gt_boxes, estimates, path, title="", metrics=None, detections=None,
                  width=None, height=None, min_iou=MIN_IOU, dpi=100):
    """Save a PNG of a whole sequence: the box centres of the ground truth and of each method's tracks against
    the frame (left: x centre, right: y centre), one row per method.

    Ground truth is dashed, estimates solid; every ground-truth identity has its own colour, and the estimated
    track matched to it (:func:`match_sequence_identities`) is drawn in the same colour, so a track that changes
    colour along a path is an identity switch; estimated tracks matched to no identity are grey. Frames where an
    estimate is off its matched identity (IoU < ``min_iou``, or unmatched) are marked with an ``x``.

    :param gt_frames: ``(n,)`` frames, ``gt_ids (n,)`` identities, ``gt_boxes (n, 4)`` ``x, y, w, h`` in pixels.
    :param estimates: ``{method: (frames, ids, boxes x y w h)}`` (one row each), or one such tuple.
    :param str path: the PNG written (its folder is created).
    :param str title: figure title (e.g. the sequence).
    :param dict metrics: optional ``{method: {"HOTA": .., "IDF1": .., "IDSW": ..}}`` (percentages) shown in the
        row titles.
    :param detections: optional ``(frames, boxes x y w h)`` drawn as light grey dots (the tracker's input).
    :param width: optional image width (pixels): the x panel shows ``0 .. width``; ``height`` bounds the y
        panel, which shows the ground truth's range of y centres, padded.
    :returns: ``path``.
    """
    plt = _pyplot()
    from matplotlib.lines import Line2D

    gf, gi, gb = _rows(gt_frames, gt_ids, gt_boxes, "ground truth")
    if isinstance(estimates, (tuple, list)):
        estimates = {"estimate": estimates}
    if not estimates:
        raise ValueError("need at least one method's estimate")
    estimates = {k: _rows(*v, f"estimate {k!r}") for k, v in estimates.items()}
    metrics = metrics or {}
    g_ids = np.unique(gi)
    colours = dict(zip(g_ids.tolist(), _identity_colours(plt, len(g_ids))))
    grey = "0.6"
    centre = lambda b: b[:, :2] + b[:, 2:] / 2  # noqa: E731
    gc = centre(gb)
    from pyro_dvae.data.mot import iou_xyxy, xywh_to_xyxy

    rows = len(estimates)
    fig, axes = plt.subplots(rows, 2, figsize=(15, 3.4 * rows + 1.3), squeeze=False, gridspec_kw={"width_ratios":
                                                                                                  [1.6, 1]})
    for r, (name, (ef, ei, eb)) in enumerate(estimates.items()):
        match = match_sequence_identities(gf, gi, gb, ef, ei, eb, min_iou=min_iou)
        ec = centre(eb)
        for k, ax in enumerate(axes[r]):
            if detections is not None:
                df, db = np.asarray(detections[0]), np.asarray(detections[1], float).reshape(-1, 4)
                ax.scatter(df, centre(db)[:, k], s=3, c="0.8", zorder=1, lw=0)
            for g in g_ids:
                sel = gi == g
                ax.plot(*_broken(gf[sel], gc[sel, k]), ls="--", color=colours[g], lw=1.3, zorder=2)
            for e, g in match.items():
                sel = np.flatnonzero(ei == e)
                c = colours[g] if g >= 0 else grey
                ax.plot(*_broken(ef[sel], ec[sel, k]), ls="-", color=c, lw=1.9 if g >= 0 else 1.4,
                        alpha=1.0 if g >= 0 else 0.8, zorder=3)
                # frames where this track is not on its gt identity (missing there, or IoU < min_iou)
                off = np.ones(len(sel), bool)
                if g >= 0:
                    gsel = np.flatnonzero(gi == g)
                    pos = dict(zip(gf[gsel].tolist(), gsel.tolist()))
                    both = np.array([int(f) in pos for f in ef[sel]], bool)
                    if both.any():
                        gj = np.array([pos[int(f)] for f in ef[sel][both]])
                        iou = iou_xyxy(xywh_to_xyxy(gb[gj])[:, None], xywh_to_xyxy(eb[sel][both])[:, None])[:, 0, 0]
                        off[both] = iou < min_iou
                if off.any():
                    ax.plot(ef[sel][off], ec[sel, k][off], "x", color=c, ms=5, mew=1.1, zorder=4)
            ax.set_xlabel("frame")
            ax.grid(alpha=0.3)
        m = metrics.get(name, {})
        pct = lambda v: "n/a" if v is None or not np.isfinite(v) else f"{v:.1f}"  # noqa: E731
        text = "   ".join(f"{k} {pct(m[k]) if k != 'IDSW' else int(m[k])}" for k in ("HOTA", "MOTA", "IDF1", "IDSW")
                           if m.get(k) is not None)
        matched = sum(g >= 0 for g in match.values())
        ax_x, ax_y = axes[r]
        ax_x.set_title(f"{name}" + (f":  {text}" if text else "") + f"\n{len(match)} tracks, {matched} matched "
                       f"to a gt identity — x centre vs frame", fontsize=9.5)
        ax_x.set_ylabel("x centre of the box (pixels)")
        ax_y.set_title(f"{name}: y centre vs frame", fontsize=9.5)
        ax_y.set_ylabel("y centre (pixels, down)")
        # y range: the ground truth's, padded (pedestrians walk across: their y centres span a narrow band)
        lo, hi = np.nanmin(gc[:, 1]), np.nanmax(gc[:, 1])
        pad = max(0.25 * (hi - lo), 10.0)
        ax_y.set_ylim(min(hi + pad, height) if height else hi + pad, max(lo - pad, 0) if height else lo - pad)
        if width:
            ax_x.set_ylim(0, width)
    handles = [Line2D([], [], ls="--", color="0.2", lw=1.3, label="ground truth (dashed)"),
               Line2D([], [], ls="-", color="0.2", lw=1.9, label="estimate (solid, colour of its matched gt id)"),
               Line2D([], [], ls="-", color=grey, lw=1.4, label="estimate matched to no gt id"),
               Line2D([], [], ls="", marker="x", color="0.2", label=f"estimate off its gt id (IoU < {min_iou})")]
    if detections is not None:
        handles.append(Line2D([], [], ls="", marker="o", ms=3, color="0.8", label="detections (input)"))
    handles += [Line2D([], [], ls="-", lw=4, color=colours[g], label=f"gt id {g}") for g in g_ids]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    if title.strip():
        fig.suptitle(title.strip(), fontsize=11)
    n_leg = int(np.ceil(len(handles) / 8))
    fig.tight_layout(rect=(0, (0.25 + 0.22 * n_leg) / (3.4 * rows + 1.3), 1, 1))
    return _save(fig, path, dpi)
