# SPDX-License-Identifier: Apache-2.0
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from pyro_dvae import inference, pretrained
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
from pyro_dvae.metrics import tracking_metrics
from pyro_dvae.models.tracking import TrackingGuide, TrackingModel, greedy_tracks, run_tracking

ROOT = pathlib.Path(__file__).resolve().parents[2]
MOT = ROOT.parent / "shared" / "realdata" / "mot"


@pytest.fixture(scope="module")
def crossing():
    gt = np.stack([crossing_scene(40, 3, seed=s) for s in range(4)])
    obs, mask, src = simulate_detections(gt, noise=0.05, drop=0.1, seed=0)
    return gt, torch.tensor(obs, dtype=torch.float32), torch.tensor(mask)


@pytest.mark.parametrize("method", ["mixdvae", "vkf"])
def test_three_crossing_tracks_are_recovered(method, crossing):
    gt, obs, mask = crossing
    est, res = run_tracking(obs, mask, 3, method=method, prior=pretrained.load(), num_iters=10)
    m = tracking_metrics(list(gt), list(est.numpy()))
    assert m["mota"] > 0.9 and m["idf1"] > 0.9, m
    assert res.algorithm == "vem" and len(res.losses) == 10 and np.isfinite(res.losses).all()


def test_mixdvae_runs_with_svi_and_enum_svi(crossing):
    gt, obs, mask = crossing
    for algo in ("svi", "enum-svi"):
        est, res = run_tracking(obs[:1], mask[:1], 3, prior=pretrained.load(), algo=algo, num_iters=5)
        assert est.shape == (1, 40, 3, 4) and torch.isfinite(est).all()
    assert res.info["enumerated_sites"] == ["w"]


def test_vem_refines_the_initialisation_and_learns_the_noise(crossing):
    gt, obs, mask = crossing
    model = TrackingModel(pretrained.load(), 3)
    guide = TrackingGuide(model).initialise(obs, mask)
    from pyro_dvae import inference

    with torch.no_grad():
        inference.run("vem", model, guide, obs, mask, num_iters=8)
    est = guide["s"].mean.permute(0, 2, 1, 3)
    init = greedy_tracks(obs, mask, 3).permute(0, 2, 1, 3)
    err = lambda e: float(((e - torch.tensor(gt, dtype=torch.float32)) ** 2).mean().sqrt())  # noqa: E731
    assert err(est) < err(init)  # smoothing beats the raw-detection initialisation
    ratio = model.likelihood.ratio
    assert ((ratio > 0.01) & (ratio < 0.2)).all() and not torch.allclose(ratio, torch.tensor(0.04))


def test_bad_tracking_inputs():
    prior = pretrained.load()
    obs = torch.rand(1, 5, 3, 4)
    with pytest.raises(ValueError, match="obs_mask must be shaped"):
        run_tracking(obs, torch.ones(1, 5, 2, dtype=torch.bool), 3, prior=prior)
    bad = torch.tensor([[0.5, 0.5, 0.4, 0.6]]).expand(1, 5, 3, 4)
    with pytest.raises(ValueError, match="non-positive width"):
        run_tracking(bad, torch.ones(1, 5, 3, dtype=torch.bool), 3, prior=prior)
    nan = torch.full((1, 5, 3, 4), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        run_tracking(nan, torch.ones(1, 5, 3, dtype=torch.bool), 3, prior=prior)
    from pyro_dvae import priors

    with pytest.raises(ValueError, match="x_dim=4"):
        TrackingModel(priors.build("srnn", x_dim=5, z_dim=2, dense_dim=4, rnn_dim=4, z_dense=[4]), 3)
    with pytest.raises(ValueError, match="needs a prior"):
        run_tracking(torch.rand(1, 5, 3, 4).sort(-1).values, torch.ones(1, 5, 3, dtype=torch.bool), 3)


def test_frames_without_detections_are_handled():
    gt = crossing_scene(30, 3, seed=1)[None]
    obs, mask, _ = simulate_detections(gt, drop=0.0, seed=0)
    mask[:, 10:15] = False  # five frames with no detection at all
    est, _ = run_tracking(torch.tensor(obs, dtype=torch.float32), torch.tensor(mask), 3, prior=pretrained.load(),
                          num_iters=5)
    assert torch.isfinite(est).all()


def test_padding_values_are_ignored_by_every_block():
    # vem hands the raw tensors to every block: garbage (NaN) at masked slots must change nothing
    gt = crossing_scene(20, 3, seed=2)[None]
    obs, mask, _ = simulate_detections(gt, seed=0)
    obs, mask = torch.tensor(obs, dtype=torch.float32), torch.tensor(mask)
    assert not mask.all()
    results = []
    for fill in (0.0, float("nan")):
        padded = obs.masked_fill(~mask.unsqueeze(-1), fill)
        model = TrackingModel(pretrained.load(), 3)
        guide = TrackingGuide(model, sample_z=False).initialise(padded, mask)
        run = inference.run("vem", model, guide, padded, mask, num_iters=3)
        results.append((guide["s"].mean, run.losses[-1]))
    assert torch.isfinite(results[1][0]).all()
    assert torch.allclose(results[0][0], results[1][0]) and results[0][1] == pytest.approx(results[1][1])


def test_example_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "mot_mixdvae.py"), "--iters", "3", "--out-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "mixdvae" in proc.stdout and "vkf" in proc.stdout and "clearly synthetic" in proc.stdout
    assert any(p.suffix == ".png" for p in tmp_path.iterdir()) or "matplotlib not installed" in proc.stdout


@pytest.mark.realdata
@pytest.mark.skipif(not MOT.is_dir(), reason="../shared/realdata/mot absent")
def test_track_cli_on_real_mot15(tmp_path):
    from pyro_dvae.cli import main

    out = tmp_path / "track.json"
    rc = main(["track", "--mot-dir", str(MOT), "--seqs", "TUD-Stadtmitte", "--det-file", "det/det_frcnn.txt",
               "--min-score", "0.5", "--combos", "2", "--iters", "3", "--method", "mixdvae", "--method", "vkf",
               "--out-json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    for method in ("mixdvae", "vkf"):
        m = res[method]
        assert m["num_windows"] == 6 and 0.3 < m["mota"] <= 1 and 0 < m["idf1"] <= 1
        assert m["seconds_per_iter_per_seq"] > 0 and np.isfinite(m["motp"])
