# SPDX-License-Identifier: Apache-2.0
"""Track figures: window picking, identity matching for the colours, the PNGs written."""

import numpy as np
import pytest

from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
from pyro_dvae.plot import match_identities, pick_windows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_pick_windows_spreads_indices():
    assert pick_windows(10, 3) == [0, 4, 9]
    assert pick_windows(61, 3) == [0, 30, 60]
    assert pick_windows(7, 1) == [3]
    assert pick_windows(2, 5) == [0, 1]
    assert pick_windows(0, 3) == [] and pick_windows(5, 0) == []
    idx = pick_windows(100, 6)
    assert idx == sorted(set(idx)) and len(idx) == 6 and idx[0] == 0 and idx[-1] == 99
    gaps = np.diff(idx)
    assert gaps.max() - gaps.min() <= 1  # evenly spread


@pytest.mark.parametrize("cost", ["centre", "iou"])
def test_match_identities_undoes_a_permutation(cost):
    gt = crossing_scene(40, 4, seed=3)
    perm = np.array([2, 0, 3, 1])
    est = gt[:, perm] + np.random.default_rng(0).normal(0, 0.002, gt[:, perm].shape)
    match = match_identities(gt, est, cost=cost)
    np.testing.assert_array_equal(match, perm)  # estimate column m is drawn in gt perm[m]'s colour


def test_match_identities_extra_track_unmatched_and_nan_gt():
    gt = crossing_scene(30, 2, seed=1)
    far = np.tile([[0.9, 0.9, 0.95, 0.95]], (30, 1))[:, None]
    est = np.concatenate([far, gt[:, ::-1]], 1)  # (T, 3, 4): a stray track, then the two swapped
    np.testing.assert_array_equal(match_identities(gt, est), [-1, 1, 0])
    gt_nan = gt.copy()
    gt_nan[:10, 0] = np.nan  # identity 0 absent for a while: matched on the frames it is there
    np.testing.assert_array_equal(match_identities(gt_nan, gt[:, ::-1]), [1, 0])
    with pytest.raises(ValueError):
        match_identities(gt, est, cost="nope")


@pytest.fixture
def captured_figures(monkeypatch):
    """Keep the figures ``plot_tracks`` closes, to inspect what was drawn."""
    plt = pytest.importorskip("matplotlib.pyplot")
    figs, close = [], plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figs.append(fig))
    yield figs
    for fig in figs:
        close(fig)


def _colour_by_curve(ax, style):
    return [(np.asarray(line.get_ydata(), float), line.get_color()) for line in ax.get_lines()
            if line.get_linestyle() == style and len(line.get_ydata()) > 1]


def test_plot_tracks_colours_estimates_like_their_matched_gt(tmp_path, captured_figures):
    from pyro_dvae.plot import plot_tracks

    gt = crossing_scene(30, 3, seed=0)
    obs, mask, _ = simulate_detections(gt[None], noise=0.05, drop=0.1, seed=0)
    perm = [1, 2, 0]
    # the call the CLI makes (positional gt, estimates, path; obs / obs_mask / title keywords)
    path = plot_tracks(gt, {"m": gt[:, perm]}, tmp_path / "a.png", obs=obs[0], obs_mask=mask[0], title="w", dpi=40)
    assert path == tmp_path / "a.png" and path.read_bytes()[:8] == PNG_MAGIC
    (fig,) = captured_figures
    ax_x = fig.axes[1]  # x centre vs frame
    assert ax_x.get_xlabel() == "frame"
    dashed, solid = _colour_by_curve(ax_x, "--"), _colour_by_curve(ax_x, "-")
    assert len(dashed) == 3 and len(solid) == 3
    for y_est, colour in solid:  # each estimate lies on a gt curve of its own colour
        (gt_colour,) = [c for y, c in dashed if np.allclose(y, y_est)]
        assert gt_colour == colour
    assert "MOTA 100.0" in fig._suptitle.get_text() and "IDF1 100.0" in fig._suptitle.get_text()
    assert any("detections" in t.get_text() for t in fig.legends[0].get_texts())


def test_plot_tracks_without_matching_or_metrics(tmp_path, captured_figures):
    from pyro_dvae.plot import plot_tracks

    gt = crossing_scene(20, 2, seed=0)
    plot_tracks(gt, {"a": gt[:, ::-1], "b": gt}, tmp_path / "sub" / "b.png", match=None, metrics=False, dpi=40)
    assert (tmp_path / "sub" / "b.png").read_bytes()[:8] == PNG_MAGIC
    (fig,) = captured_figures
    assert len(fig.axes) == 6 and fig._suptitle is None  # 2 methods x 3 panels, no title, no metrics
    dashed, solid = _colour_by_curve(fig.axes[1], "--"), _colour_by_curve(fig.axes[1], "-")
    # no matching: estimate column n takes gt n's colour, so the swapped estimate shows the wrong colours
    assert [c for _, c in solid] == [c for _, c in dashed]
    assert not np.allclose(solid[0][0], dashed[0][0])


def test_plot_windows_writes_spread_windows(tmp_path, captured_figures):
    torch = pytest.importorskip("torch")
    from pyro_dvae.plot import plot_windows

    gts = np.stack([crossing_scene(20, 2, seed=s) for s in range(5)])
    obs, mask, _ = simulate_detections(gts, noise=0.05, drop=0.1, seed=0)
    paths = plot_windows(gts, {"x": torch.as_tensor(gts[:, :, ::-1].copy()), "y": list(gts)}, tmp_path, k=3,
                         detections=(obs, mask), frame0=[100 * s for s in range(5)], dpi=40)
    assert [p.rsplit("/", 1)[1] for p in map(str, paths)] == ["tracks_0000.png", "tracks_0002.png",
                                                              "tracks_0004.png"]
    assert all(open(p, "rb").read(8) == PNG_MAGIC for p in paths)
    assert captured_figures[1].axes[1].get_xlim()[0] < 200 < captured_figures[1].axes[1].get_xlim()[1]
    assert "window 2" in captured_figures[1]._suptitle.get_text()
    paths = plot_windows(gts, {"x": gts}, tmp_path, indices=[1], names=[f"w{i}" for i in range(5)],
                         titles=[f"t{i}" for i in range(5)], gt_ids=[(10 + i, 20 + i) for i in range(5)],
                         metrics=False, dpi=40)
    assert [str(p) for p in paths] == [str(tmp_path / "w1.png")]
    legend = [t.get_text() for t in captured_figures[-1].legends[0].get_texts()]
    assert "gt id 11" in legend and "gt id 21" in legend and captured_figures[-1]._suptitle.get_text() == "t1"
    with pytest.raises(IndexError):
        plot_windows(gts, {"x": gts}, tmp_path, indices=[5])


def _sequence_rows(gt):
    """``(T, N, 4)`` x1 y1 x2 y2 (normalised) -> MOTChallenge rows (frames from 1, ids from 1, x y w h pixels)."""
    T, N = gt.shape[:2]
    frames = np.repeat(np.arange(1, T + 1), N)
    ids = np.tile(np.arange(1, N + 1), T)
    b = gt.reshape(-1, 4) * 100.0
    return frames, ids, np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)


def test_match_sequence_identities_by_frames_with_iou():
    from pyro_dvae.plot import match_sequence_identities

    gf, gi, gb = _sequence_rows(crossing_scene(30, 3, seed=0))
    est_ids = np.array([70, 50, 60])[gi - 1]  # gt 1 -> 70, 2 -> 50, 3 -> 60
    stray = (np.arange(1, 31), np.full(30, 99), np.tile([[900.0, 900, 10, 10]], (30, 1)))  # never overlaps
    match = match_sequence_identities(gf, gi, gb, np.r_[gf, stray[0]], np.r_[est_ids, stray[1]], np.r_[gb, stray[2]])
    assert match == {50: 2, 60: 3, 70: 1, 99: -1}
    # a track split in two: the longer piece keeps the identity, the shorter one is left unmatched
    split = np.where((gi == 1) & (gf > 20), 80, est_ids)
    assert match_sequence_identities(gf, gi, gb, gf, split, gb) == {50: 2, 60: 3, 70: 1, 80: -1}


def test_plot_sequence_shares_colours_and_greys_unmatched(tmp_path, captured_figures):
    from pyro_dvae.plot import plot_sequence

    gf, gi, gb = _sequence_rows(crossing_scene(30, 3, seed=0))
    est_ids = np.array([70, 50, 60])[gi - 1]
    keep = gf != 12  # a frame without estimates: the solid lines break there
    stray = (np.arange(1, 31), np.full(30, 99), np.tile([[5.0, 5, 10, 10]], (30, 1)))
    est = (np.r_[gf[keep], stray[0]], np.r_[est_ids[keep], stray[1]], np.r_[gb[keep], stray[2]])
    path = plot_sequence(gf, gi, gb, {"dvae": est, "cv": est}, tmp_path / "seq" / "s.png", title="TUD",
                         metrics={"dvae": {"HOTA": 71.25, "IDF1": 80.0, "IDSW": 3}}, detections=(gf, gb),
                         width=100, height=100, dpi=40)
    assert path == tmp_path / "seq" / "s.png" and path.read_bytes()[:8] == PNG_MAGIC
    (fig,) = captured_figures
    assert len(fig.axes) == 4 and fig._suptitle.get_text() == "TUD"  # 2 methods x (x centre, y centre)
    ax_x = fig.axes[0]
    assert ax_x.get_xlabel() == "frame" and "HOTA 71.2" in ax_x.get_title() and "IDSW 3" in ax_x.get_title()
    dashed = {float(line.get_ydata()[0]): line.get_color() for line in ax_x.get_lines() if line.get_linestyle() == "--"}
    solid = [line for line in ax_x.get_lines() if line.get_linestyle() == "-"]
    assert len(dashed) == 3 and len(solid) == 4
    gt_colours = set(dashed.values())
    for line in solid:
        y = np.asarray(line.get_ydata(), float)
        assert np.isnan(y).sum() == (1 if y[0] != 10 else 0)  # the gap at frame 12 (not for the stray)
        if y[0] == 10:  # the stray track: grey, not a gt colour
            assert line.get_color() == "0.6"
        else:  # each estimate drawn in the colour of the gt curve it lies on
            (colour,) = [c for y0, c in dashed.items() if np.isclose(y0, y[0])]
            assert line.get_color() == colour and colour in gt_colours
    assert "0.6" not in gt_colours and len(gt_colours) == 3
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"gt id 1", "gt id 2", "gt id 3", "estimate matched to no gt id"} <= set(legend)
