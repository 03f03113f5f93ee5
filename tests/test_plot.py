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
                         obs=obs, obs_mask=mask, frame0=[100 * s for s in range(5)], dpi=40)
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
