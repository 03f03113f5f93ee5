# SPDX-License-Identifier: Apache-2.0
"""Whole-sequence tracking with births and deaths (``models/mot_tracker.py``)."""

from pathlib import Path

import numpy as np
import pytest
from common import REALDATA, requires_realdata

from pyro_dvae.models.mot_tracker import Associator, TrackerConfig, track_sequence
from pyro_dvae.models.mot_tracker.motion import box_at

W, H = 1000, 600


def scene(seed=0, drop=0.1, clutter=2):
    """Three pedestrians: A walks right over frames 1-80, B walks left over 20-100 and crosses A, C appears
    at 50 and stays to 120 (still); detections with box noise of 5 % of the box size, ``drop`` misses,
    ``clutter`` low-score false positives per frame. Returns ``(frames, boxes xywh, scores, truth)`` with
    ``truth = {name: (first, last, position function)}``."""
    rng = np.random.default_rng(seed)
    truth = {"A": (1, 80, lambda t: (100 + 8 * t, 300)), "B": (20, 100, lambda t: (800 - 8 * (t - 20), 310)),
             "C": (50, 120, lambda t: (500, 100))}
    rows = []
    for name, (first, last, pos) in truth.items():
        for t in range(first, last + 1):
            if rng.random() < drop:
                continue
            x, y = pos(t)
            box = np.array([x, y, 40, 100]) + 0.05 * np.array([40, 100, 40, 100]) * rng.normal(size=4)
            rows.append((t, *box, rng.uniform(0.75, 0.95)))
    for t in range(1, 121):
        for _ in range(clutter):
            rows.append((t, rng.uniform(0, W - 50), rng.uniform(0, H - 120), 40, 100, rng.uniform(0.1, 0.4)))
    rows = np.array(rows)
    return rows[:, 0].astype(int), rows[:, 1:5], rows[:, 5], truth


def _tracks(frames, ids, boxes):
    return {i: (frames[ids == i], boxes[ids == i]) for i in np.unique(ids)}


@pytest.mark.parametrize("refine", [False, True])
def test_births_deaths_and_crossing_are_recovered(refine):
    frames, boxes, scores, truth = scene()
    f, i, b, s = track_sequence(frames, boxes, scores, W, H, config=TrackerConfig(refine=refine, iters=5))
    tracks = _tracks(f, i, b)
    assert len(tracks) == 3  # no clutter track, no identity switch at the crossing
    for tid, (tf, tb) in tracks.items():
        # each track is one true object over (nearly) its whole life
        name = min(truth, key=lambda n: abs(truth[n][0] - tf[0]))
        first, last, pos = truth[name]
        assert abs(tf[0] - first) <= 2 and abs(tf[-1] - last) <= 2, (name, tf[0], tf[-1])
        centre = np.array([pos(t) for t in tf])
        assert np.abs(tb[:, :2] - centre).max() < 25, name  # never jumps to the other pedestrian
    if refine:  # the refinement fills the missed frames of each track's life
        assert all(np.all(np.diff(tf) == 1) for tf, _ in tracks.values())


def test_online_equals_offline_when_the_latency_covers_the_sequence():
    frames, boxes, scores, _ = scene(seed=1)
    cfg = TrackerConfig(window=130, iters=3)
    off = track_sequence(frames, boxes, scores, W, H, config=cfg)
    on = track_sequence(frames, boxes, scores, W, H, config=cfg, latency=130)
    for a, b in zip(off, on):
        np.testing.assert_allclose(a, b)
    short = track_sequence(frames, boxes, scores, W, H, config=cfg, latency=5)
    assert len(short[0]) <= len(off[0])  # a short latency cannot fill gaps it has not seen closed


def test_low_score_detections_carry_a_track_through_an_occlusion():
    # one pedestrian whose detections score 0.3 during frames 20-40 (partly occluded)
    rows = [(t, 100 + 5 * t, 200, 40, 100, 0.3 if 20 <= t <= 40 else 0.9) for t in range(1, 61)]
    rows = np.array(rows, float)
    f, i, _, _ = track_sequence(rows[:, 0], rows[:, 1:5], rows[:, 5], W, H, config=TrackerConfig(refine=False))
    assert len(np.unique(i)) == 1 and len(f) == 60


def test_a_track_dies_after_max_age_frames_without_detections():
    cfg = TrackerConfig(max_age=5, refine=False)
    assoc = Associator(cfg)
    for t in range(1, 11):
        assoc.step(t, np.array([[100.0 + t, 100, 140 + t, 200]]), np.array([0.9]))
    for t in range(11, 20):
        assoc.step(t, np.zeros((0, 4)), np.zeros(0))
    assert not assoc.tracks and len(assoc.finish()) == 1
    assoc.step(20, np.array([[110.0, 100, 150, 200]]), np.array([0.9]))
    assoc.step(21, np.array([[111.0, 100, 151, 200]]), np.array([0.9]))
    assert [t.id for t in assoc.finish()] == [1, 2]  # a new identity: the first track had ended


def _occluded_walker(gap, jump=0.0, last=100):
    """One pedestrian walking right at 4 px per frame over frames 1-``last``, undetected for ``gap`` frames from 41
    (and ``jump`` px off its path when it comes back); returns ``(frames, boxes xywh, scores)``."""
    rows = [(t, 100 + 4 * t + (jump if t > 40 + gap else 0.0), 300, 40, 100, 0.9)
            for t in range(1, last + 1) if not 41 <= t <= 40 + gap]
    rows = np.array(rows)
    return rows[:, 0].astype(int), rows[:, 1:5], rows[:, 5]


@pytest.mark.parametrize("relink", ["cv", "dvae"])
def test_relinking_joins_a_track_across_a_long_occlusion(relink):
    """max_age 10 ends the track during a 20-frame occlusion; re-linking forecasts it across the gap and gives
    the reappearing walker the same identity (and the refinement fills the gap); a reappearance far off the
    forecast path stays a new identity; 'off' is stage 1 alone."""
    from pyro_dvae import pretrained

    prior = pretrained.load("srnn_mot_real")  # trained at every rate down to 7 fps, as re-linking forecasts
    f, b, s = _occluded_walker(20)
    base = dict(max_age=10, refine=False)
    _, ids, _, _ = track_sequence(f, b, s, W, H, config=TrackerConfig(**base, relink="off"))
    assert len(set(ids)) == 2
    frames, ids, _, _ = track_sequence(f, b, s, W, H, config=TrackerConfig(**base, relink=relink), prior=prior)
    assert len(set(ids)) == 1 and len(frames) == len(f)
    frames, ids, _, _ = track_sequence(f, b, s, W, H, config=TrackerConfig(max_age=10, relink=relink),
                                     prior=prior)
    assert len(set(ids)) == 1 and set(range(41, 61)) <= set(frames)  # refined: the gap filled
    f, b, s = _occluded_walker(20, jump=300.0)
    _, ids, _, _ = track_sequence(f, b, s, W, H, config=TrackerConfig(**base, relink=relink), prior=prior)
    assert len(set(ids)) == 2
    f, b, s = _occluded_walker(60, last=160)  # beyond relink_gap (1 s at 30 fps = 30 frames): never joined
    _, ids, _, _ = track_sequence(f, b, s, W, H, config=TrackerConfig(**base, relink=relink), prior=prior)
    assert len(set(ids)) == 2


def test_relinking_options_are_checked():
    from pyro_dvae.models.mot_tracker.files import tracker_settings

    with pytest.raises(ValueError, match="relink"):
        TrackerConfig(relink="kalman")
    with pytest.raises(ValueError, match="relink_cost"):
        TrackerConfig(relink_cost=0)
    with pytest.raises(ValueError, match="--relink cv with --online"):
        tracker_settings(online=True, relink="cv")
    cfg, _ = tracker_settings(dynamics="cv", relink="dvae", prior="srnn_mot_real")  # the prior forecasts
    assert cfg.relink == "dvae" and cfg.dynamics == "cv"
    with pytest.raises(ValueError, match="--prior with --dynamics cv"):
        tracker_settings(dynamics="cv", prior="srnn_mot_real")


def test_smoother_option_is_checked():
    from pyro_dvae.models.mot_tracker.files import tracker_settings

    assert TrackerConfig().smoother == "velocity"
    with pytest.raises(ValueError, match="smoother"):
        TrackerConfig(smoother="drift")
    with pytest.raises(ValueError, match="velocity_scale"):
        TrackerConfig(velocity_scale=0)
    with pytest.raises(ValueError, match="--smoother parallel with --dynamics cv"):
        tracker_settings(dynamics="cv", smoother="parallel")
    with pytest.raises(ValueError, match="--smoother sets the refinement"):
        tracker_settings(no_refine=True, smoother="velocity")
    assert tracker_settings(smoother="parallel")[0].smoother == "parallel"
    assert tracker_settings(velocity_scale=20.0)[0].velocity_scale == 20.0
    assert TrackerConfig().camera == "off" and tracker_settings(camera="scene")[0].camera == "scene"
    with pytest.raises(ValueError, match="--camera scene with --smoother parallel"):
        tracker_settings(smoother="parallel", camera="scene")
    with pytest.raises(ValueError, match="camera"):
        TrackerConfig(camera="ego")
    with pytest.raises(ValueError, match="--velocity-scale 20 with --smoother parallel"):
        tracker_settings(smoother="parallel", velocity_scale=20.0)
    with pytest.raises(ValueError, match="--velocity-scale 20 with --dynamics cv"):
        tracker_settings(dynamics="cv", velocity_scale=20.0)


def test_latents_option_is_checked():
    from pyro_dvae.models.mot_tracker.files import tracker_settings

    with pytest.raises(ValueError, match="latents"):
        TrackerConfig(latents="encoder")
    with pytest.raises(ValueError, match="--latents prior with --dynamics cv"):
        tracker_settings(dynamics="cv", latents="prior")
    with pytest.raises(ValueError, match="--latents sets the refinement"):
        tracker_settings(no_refine=True, latents="posterior")
    assert tracker_settings(latents="posterior")[0].latents == "posterior"


def test_lost_tracks_are_matched_with_the_forecast_made_once_per_loss_event():
    """A walker at 8 px per frame stops while undetected (frames 31-45) and reappears where it stopped: the
    Kalman filter's constant velocity carries the predicted box 120 px on and the walker becomes a new identity;
    with ``predict="dvae"`` the lost track is matched with the forecaster's box (here a forecaster that predicts a
    stop), made once per loss event and read at the frame's fractional step."""
    rows = [(t, 100 + 8 * min(t, 30), 300, 40, 100, 0.9) for t in range(1, 71) if not 31 <= t <= 45]
    rows = np.array(rows, float)
    xyxy = np.concatenate([rows[:, 1:3], rows[:, 1:3] + rows[:, 3:5]], 1)
    calls = []

    def stop(pasts, horizon):
        calls.append((len(pasts), horizon))
        return np.stack([np.repeat(p[-1:], horizon, 0) for p in pasts])

    def run(cfg, forecaster=None):
        assoc = Associator(cfg, 30.0, forecaster)
        for t in range(1, 71):
            at = rows[:, 0] == t
            assoc.step(t, xyxy[at], rows[at, 5])
        return assoc

    assert len(run(TrackerConfig(refine=False, max_age=30)).finish()) == 2
    assoc = run(TrackerConfig(refine=False, max_age=30, predict="dvae"), stop)
    (track,) = assoc.finish()
    assert len(track.frames) == len(rows) and calls == [(1, assoc.horizon)]  # one forecast for the one loss event
    assert assoc.factor == 4 and assoc.horizon == 9  # 7.5 fps steps covering max_age
    path = np.array([[0.0, 0, 10, 10], [4.0, 0, 14, 10], [8.0, 0, 18, 10]])
    np.testing.assert_allclose(box_at(path, 1.5), [6.0, 0, 16, 10])
    np.testing.assert_allclose(box_at(path, 2.5), [10.0, 0, 20, 10])  # linear beyond the last step
    with pytest.raises(ValueError, match="forecaster"):
        Associator(TrackerConfig(predict="dvae"))
    with pytest.raises(ValueError, match="predict"):
        TrackerConfig(predict="kalman")


@requires_realdata("mot17/MOT17-09")
def test_refinement_beats_the_constant_velocity_tracker_on_mot17():
    pytest.importorskip("trackeval")
    from pyro_dvae.data.mot import read_det, read_seqinfo
    from pyro_dvae.data.mot_results import val_half, write_results
    from pyro_dvae.metrics.mot_eval import evaluate

    seq = REALDATA / "mot17" / "MOT17-09"
    info, det = read_seqinfo(seq), read_det(seq / "det" / "det.txt")
    first, last = val_half(info.length)
    keep = (det.frame >= first) & (det.frame <= last)
    scores = {}
    for refine in (False, True):
        out = track_sequence(det.frame[keep], det.boxes[keep], det.score[keep], info.width, info.height,
                             config=TrackerConfig(refine=refine))
        path = Path(pytest.importorskip("tempfile").mkdtemp()) / "MOT17-09.txt"
        write_results(path, *out)
        scores[refine] = evaluate({"MOT17-09": seq / "gt" / "gt.txt"}, {"MOT17-09": path},
                                  frames={"MOT17-09": (first, last)})["combined"]
    assert scores[True]["IDF1"] > scores[False]["IDF1"] + 1 and scores[True]["HOTA"] > scores[False]["HOTA"] + 1


def test_scene_motion_is_the_common_motion_of_the_tracks():
    from types import SimpleNamespace

    from pyro_dvae.models.mot_tracker.motion import scene_motion

    def track(x0, vx, frames):
        boxes = [np.array([x0 + vx * f, 100.0, x0 + vx * f + 20, 150.0]) for f in frames]
        return SimpleNamespace(frames=list(frames), boxes=boxes)

    W, H = 200.0, 100.0
    pan = [track(10 * i, 4.0 + 0.1 * i, range(1, 6)) for i in range(4)]  # a pan: every box moves about 4 px a frame
    motion = scene_motion(pan, W, H)
    assert sorted(motion) == [2, 3, 4, 5]
    assert np.allclose(motion[3], [4.15 / W, 0.0], atol=0.2 / W)
    walkers = [track(10 * i, (-1) ** i * 4.0, range(1, 6)) for i in range(4)]  # two each way: no common motion
    assert all(np.allclose(m, 0.0) for m in scene_motion(walkers, W, H).values())
    assert scene_motion(pan[:2], W, H) == {}  # fewer than three tracks: no estimate
    gappy = [track(10 * i, 4.0, [1, 3, 4]) for i in range(3)]  # frame 3 follows no detected frame 2
    assert sorted(scene_motion(gappy, W, H)) == [4]


def test_refinement_reads_the_tracks_relative_to_the_camera():
    # a zero camera path changes nothing; the camera option runs end to end through the CLI's settings
    import torch

    from pyro_dvae import pretrained
    from pyro_dvae.models.tracking import run_tracking

    rng = np.random.default_rng(0)
    T = 12
    x = 0.3 + 0.01 * np.arange(T)
    obs = np.stack([x, np.full(T, 0.4), x + 0.05, np.full(T, 0.55)], -1)[None, :, None]
    obs = obs + rng.normal(0, 1e-3, (1, T, 1, 4))
    obs = torch.as_tensor(obs, dtype=torch.float32)
    mask = torch.ones(1, T, 1, dtype=torch.bool)
    prior = pretrained.load("srnn_mot_real")
    kw = dict(prior=prior, num_iters=3, mode="velocity", latents="prior", sample_z=False)
    plain, _ = run_tracking(obs, mask, 1, **kw)
    zero, _ = run_tracking(obs, mask, 1, camera=torch.zeros(1, T, 4), **kw)
    torch.testing.assert_close(plain, zero)
    moved, _ = run_tracking(obs, mask, 1, camera=torch.full((1, T, 4), 0.01), **kw)
    assert not torch.allclose(moved, plain)
    with pytest.raises(ValueError, match="camera must be shaped"):
        run_tracking(obs, mask, 1, camera=torch.zeros(1, T, 2), **kw)
    with pytest.raises(ValueError, match="'velocity' E-S step"):
        run_tracking(obs, mask, 1, prior=prior, num_iters=2, camera=torch.zeros(1, T, 4))
    with pytest.raises(ValueError, match="algo='vem'"):
        run_tracking(obs, mask, 1, prior=prior, num_iters=2, algo="svi", camera=torch.zeros(1, T, 4))
