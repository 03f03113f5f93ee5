# SPDX-License-Identifier: Apache-2.0
"""Real-track windows for motion priors (pyro_dvae.data.tracks): a tiny MOT17-style sequence written here, and the
shared real data where present."""

import numpy as np
import pytest
import torch
from common import REALDATA, requires_realdata

from pyro_dvae.data import tracks


def _write_seq(root, name, rows, width=200, height=100, length=20, rate=30):
    folder = root / name
    (folder / "gt").mkdir(parents=True)
    (folder / "seqinfo.ini").write_text(f"[Sequence]\nname={name}\nframeRate={rate}\nseqLength={length}\n"
                                        f"imWidth={width}\nimHeight={height}\n")
    (folder / "gt" / "gt.txt").write_text("\n".join(",".join(str(v) for v in r) for r in rows) + "\n")
    return folder


def _mot17_rows():
    rows = []
    for f in range(1, 21):  # identity 1 walks right; frame 8 is occluded
        rows.append([f, 1, 10 + 2 * f, 20, 10, 40, 1, 1, 0.1 if f == 8 else 0.9])
    for f in range(1, 21):  # identity 2: a distractor class and an ignored box
        rows.append([f, 2, 50, 20, 10, 40, 1, 7, 1.0])
        rows.append([f, 3, 80, 20, 10, 40, 0, 1, 1.0])
    return rows


def test_segments_are_visible_contiguous_and_normalised(tmp_path):
    folder = _write_seq(tmp_path, "MOT17-99", _mot17_rows())
    segs = tracks.read_segments(folder)
    assert [(s.track_id, list(s.frames[[0, -1]])) for s in segs] == [(1, [1, 7]), (1, [9, 20])]
    s = segs[0]
    assert s.frame_rate == 30 and s.step == 1 and s.boxes.shape == (7, 4)
    np.testing.assert_allclose(s.boxes[0], [12 / 200, 20 / 100, 22 / 200, 60 / 100])  # x1 y1 x2 y2 / (W, H)
    first_half = tracks.read_segments(folder, (1, 10))
    assert max(s.frames.max() for s in first_half) == 10


def test_rate_variants_cover_every_phase_down_to_the_lowest_rate(tmp_path):
    seg = tracks.TrackSegment("S", 1, np.arange(1, 41), np.random.default_rng(0).random((40, 4)), 30.0)
    assert tracks.rate_factors(30) == [1, 2, 3, 4] and tracks.rate_factors(7) == [1]
    assert tracks.rate_factors(14) == [1, 2]
    variants = tracks.rate_variants([seg])
    assert sorted({v.step for v in variants}) == [1, 2, 3, 4] and len(variants) == 1 + 2 + 3 + 4
    quarter = [v for v in variants if v.step == 4]
    assert {int(v.frames[0]) for v in quarter} == {1, 2, 3, 4} and all(v.frame_rate == 7.5 for v in quarter)
    assert all((np.diff(v.frames) == 4).all() for v in quarter)
    w, meta = tracks.segment_windows(variants, 8, 3)
    assert w.shape[1:] == (8, 4) and w.dtype == np.float32 and len(meta) == len(w)


def test_split_by_identity_and_stream():
    segs = [tracks.TrackSegment("S", i, np.arange(30), np.full((30, 4), 0.1 * i) + [0, 0, 0.05, 0.1], 30.0)
            for i in range(1, 11)]
    train, val = tracks.split_identities(segs, 0.2, seed=0)
    assert len(val) == 2 and not {s.track_id for s in train} & {s.track_id for s in val}
    w, _ = tracks.segment_windows(train, 10, 5)
    stream = tracks.TrackWindowStream(w, tracks.Augment(), synthetic_fraction=0.5, seed=1)
    x, mask = stream[(3, torch.arange(8))]
    assert x.shape == (8, 10, 4) and mask is None and torch.isfinite(x).all()
    assert torch.equal(x, stream[(3, torch.arange(8))][0]) and not torch.equal(x, stream[(4, torch.arange(8))][0])
    assert stream.tensor(5).shape == (5, 10, 4)


def test_augment_keeps_boxes_in_the_image_and_their_shape():
    rng = np.random.default_rng(0)
    base = np.linspace([0.1, 0.2, 0.15, 0.4], [0.6, 0.3, 0.65, 0.5], 20)[None].repeat(200, 0)
    out = tracks.Augment()(base, rng)
    assert out.shape == base.shape and out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    w, h = out[..., 2] - out[..., 0], out[..., 3] - out[..., 1]
    assert (w > 0).all() and (h > 0).all()
    assert np.allclose(w / w[:, :1], 1, atol=1e-5) and np.allclose(h / h[:, :1], 1, atol=1e-5)  # rigid per window


def test_reserved_sequences_are_refused(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        tracks.corpus(tmp_path, "train", sequences=["MOT17-02", "TUD-Campus"])
    with pytest.raises(ValueError, match="holdout"):
        tracks.corpus(tmp_path, "train", holdout="MOT17-02")


@requires_realdata("mot17/MOT17-02", "mot/PETS09-S2L1")
def test_real_corpus_keeps_the_held_out_frames_out_of_training():
    from pyro_dvae.data.mot import read_seqinfo

    train = tracks.corpus(REALDATA, "train", holdout="PETS09-S2L1")
    heldout = tracks.corpus(REALDATA, "heldout", holdout="PETS09-S2L1")
    assert {s.seq for s in train} == {*tracks.MOT17_SEQUENCES, *tracks.MOT15_SEQUENCES} - {"PETS09-S2L1"}
    assert {s.seq for s in heldout} == {*tracks.MOT17_SEQUENCES, "PETS09-S2L1"}
    for seq in tracks.MOT17_SEQUENCES:
        n = read_seqinfo(tracks.sequence_dir(REALDATA, seq)).length
        assert max(s.frames.max() for s in train if s.seq == seq) <= n // 2
        assert min(s.frames.min() for s in heldout if s.seq == seq) >= n // 2 + 2
    boxes = np.concatenate([s.boxes for s in train])
    assert -0.5 < boxes.min() and boxes.max() < 1.5  # image-normalised (MOT17 boxes may run past the edges)
    assert np.all(boxes[:, 2:] > boxes[:, :2])
    x, val, info = tracks.track_training_data(60, realdata=str(REALDATA), holdout="PETS09-S2L1")
    assert "PETS09-S2L1" not in info["sequences"] and x.shape[1:] == (60, 4) and val.shape[1:] == (60, 4)


def test_train_prior_refuses_track_options_on_other_data(tmp_path, capsys):
    from pyro_dvae.cli import main

    assert main(["train-prior", "--model", "srnn", "--data", "synthetic-trajectories", "--out",
                 str(tmp_path / "p.pt"), "--holdout", "KITTI-17"]) == 2
    assert "--data mot-tracks" in capsys.readouterr().err


@requires_realdata("mot17/MOT17-02", "mot/PETS09-S2L1", "mot/KITTI-17", "mot/ETH-Sunnyday", "mot/Venice-2")
def test_train_prior_on_real_tracks(tmp_path):
    import json

    from pyro_dvae import priors
    from pyro_dvae.cli import main

    out, summary = tmp_path / "real.pt", tmp_path / "summary.json"
    assert main(["train-prior", "--model", "srnn-velocity", "--data", "mot-tracks", "--realdata", str(REALDATA),
                 "--holdout", "KITTI-17", "--synthetic-fraction", "0.2", "--out", str(out), "--out-json",
                 str(summary), "--epochs", "1", "--batch-size", "512", "--dense-dim", "4", "--rnn-dim", "4",
                 "--z-dense", "4", "--quiet"]) == 0
    s = json.loads(summary.read_text())
    assert s["train_sequences"] > 1000 and s["best_val_loss"] < s["untrained_val_loss"]
    assert priors.load(out, expect="srnn-velocity").x_dim == 4
