# SPDX-License-Identifier: Apache-2.0
import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from common import REALDATA, requires_realdata

from pyro_dvae import inference, pretrained
from pyro_dvae.data.synthetic import crossing_scene, simulate_detections
from pyro_dvae.metrics import tracking_metrics
from pyro_dvae.models.tracking import TrackingGuide, TrackingModel, greedy_tracks, run_tracking

ROOT = pathlib.Path(__file__).resolve().parents[2]
MOT = REALDATA / "mot"


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
    out = proc.stdout
    assert "mixdvae" in out and "vkf" in out and "clearly synthetic" in out
    assert any(p.suffix == ".png" for p in tmp_path.iterdir()) or "matplotlib not installed" in out
    # the whole-sequence part: a table of three methods x (two sequences + COMBINED), with HOTA when
    # TrackEval is installed
    part = out[out.index("Whole sequences"):]
    header = next(line for line in part.splitlines() if line.split()[:2] == ["method", "sequence"])
    assert all(c in header for c in ("MOTA", "IDF1", "IDSW")) and "HOTA" in header
    rows = {}
    method = None
    for line in part.splitlines():
        cells = line.split()
        if cells and cells[0] in ("dvae", "cv", "assoc-only"):
            method, cells = cells[0], cells[1:]
        if method and cells and cells[0] in ("TUD-Stadtmitte", "TUD-Campus", "COMBINED"):
            rows[method, cells[0]] = cells[1:]
    assert set(rows) == {(m, s) for m in ("dvae", "cv", "assoc-only")
                         for s in ("TUD-Stadtmitte", "TUD-Campus", "COMBINED")}, part
    for (m, _), cells in rows.items():
        mota, idf1 = float(cells[1]), float(cells[2])
        assert 30 < mota <= 100 and 30 < idf1 <= 100, (m, cells)  # a working tracker, not noise
    for m in ("dvae", "cv"):  # refinement fills the occlusion gaps the association alone leaves as misses
        assert float(rows[m, "COMBINED"][1]) > float(rows["assoc-only", "COMBINED"][1])
    if importlib.util.find_spec("trackeval") is not None:
        assert "scored by TrackEval" in part and rows["dvae", "COMBINED"][0] != "n/a"
    if "matplotlib not installed" not in out:
        assert (tmp_path / "tud-stadtmitte_whole_sequence.png").is_file()
        assert f"figure: {tmp_path / 'tud-stadtmitte_whole_sequence.png'}" in out


def test_example_whole_sequence_motmetrics_fallback():
    # the scoring used without TrackEval: motmetrics with our IoU, same table layout, no HOTA
    spec = importlib.util.spec_from_file_location("mot_mixdvae_example", ROOT / "examples" / "mot_mixdvae.py")
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    from pyro_dvae.data.mot import read_gt

    name = "TUD-Campus"
    gt = read_gt(ex.tud_gt_path(name))
    perfect = {name: (gt.frame, gt.ids + 100, gt.boxes, np.ones(len(gt.frame)))}
    res = ex.score_motmetrics({name: ex.tud_gt_path(name)}, perfect, {name: ex.TUD[name]})
    row = res["per_sequence"][name]
    assert row["HOTA"] is None and row["MOTA"] == pytest.approx(100) and row["IDF1"] == pytest.approx(100)
    assert row["IDSW"] == row["FP"] == row["FN"] == 0 and res["combined"]["MOTA"] == pytest.approx(100)
    f, b, s = ex.simulate_sequence_detections(gt, seed=[0, 1])
    f2, b2, s2 = ex.simulate_sequence_detections(gt, seed=[0, 1])
    np.testing.assert_array_equal(b, b2)  # seeded
    fp = s < 0.5  # only false positives score under 0.5
    assert ((s >= 0.1) & (s <= 1)).all() and 1 <= np.bincount(f[fp]).max() <= 2
    assert 0.7 * len(gt.frame) < (~fp).sum() < 0.9 * len(gt.frame)  # 10 % dropped plus the occlusion gaps


@requires_realdata("mot/TUD-Stadtmitte")
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


def test_tracking_config_checks_its_fields_and_overrides_replace_them(crossing):
    from pyro_dvae.models.tracking import TrackingConfig

    for kw, match in [(dict(method="kalman"), "method must be one of"), (dict(algo="mcmc"), "algo must be"),
                      (dict(method="vkf", algo="svi"), "VKF baseline runs with algo='vem'"),
                      (dict(num_iters=0), "num_iters must be an integer >= 1"),
                      (dict(lr=0.0), "lr must be a finite number > 0"),
                      (dict(clutter_prob=1.0), r"clutter_prob must be in \[0, 1\)"),
                      (dict(ratio=-1.0), "ratio must be a finite number > 0"), (dict(mode="both"), "mode must be")]:
        with pytest.raises(ValueError, match=match):
            TrackingConfig(**kw)
    gt, obs, mask = crossing
    cfg = TrackingConfig(method="vkf", num_iters=2)
    a, res_a = run_tracking(obs[:1], mask[:1], 3, config=cfg)
    b, res_b = run_tracking(obs[:1], mask[:1], 3, config=TrackingConfig(num_iters=2), method="vkf")
    assert len(res_a.losses) == 2 and torch.equal(a, b)
    with pytest.raises(TypeError):
        run_tracking(obs[:1], mask[:1], 3, config=cfg, num_iterations=2)
