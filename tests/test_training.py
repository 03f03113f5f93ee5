# SPDX-License-Identifier: Apache-2.0
import json

import pytest
import torch

from pyro_dvae import prior_task, priors
from pyro_dvae.data import synthetic_trajectories
from pyro_dvae.training import TrainConfig, TrainFiles, evaluate, train_prior

SIZES = dict(z_dim=4, dense_dim=16, rnn_dim=16, z_dense=[16])


@pytest.fixture(scope="module")
def tracks():
    train = torch.as_tensor(synthetic_trajectories(192, 20, seed=0))
    val = torch.as_tensor(synthetic_trajectories(64, 20, seed=1))
    return train, val


def fast_config(**kw):
    base = dict(epochs=4, batch_size=32, lr=3e-3, warmup_epochs=2, ss_start=2, ss_end=4, patience=50)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("name", priors.available(multimodal=False))
def test_training_lowers_validation_loss(name, tracks):
    train, val = tracks
    torch.manual_seed(0)
    prior = priors.build(name, x_dim=4, **{**SIZES, **({} if priors.prior_class(name).latent_sites else {"z_dim": 0})})
    before = evaluate(prior, val)
    res = train_prior(prior, train, val, fast_config())
    assert len(res.history) == 4
    assert res.best_val < before - 0.5, (before, res.best_val)
    assert evaluate(prior, val, batch_size=32) == pytest.approx(res.best_val)  # the prior ends holding the best weights
    assert [h["kl_scale"] for h in res.history] == [0.0, 0.5, 1.0, 1.0]
    expected_ss = [0.0, 0.0, 0.5, 1.0] if prior.autoregressive else [0.0] * 4
    assert [h["ss_prob"] for h in res.history] == expected_ss


def test_checkpoint_log_and_resume(tracks, tmp_path):
    train, val = tracks
    out, log = tmp_path / "p.pt", tmp_path / "log.json"
    torch.manual_seed(0)
    prior = priors.build("srnn", x_dim=4, **SIZES)
    res = train_prior(prior, train, val, fast_config(epochs=2), out=out, log_json=log)
    saved = json.loads(log.read_text())
    assert [h["epoch"] for h in saved["history"]] == [1, 2]
    assert saved["best_val"] == pytest.approx(res.best_val)
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["training"]["epoch"] == 2
    loaded = priors.load(out)
    assert evaluate(loaded, val, batch_size=32) == pytest.approx(res.best_val)

    fresh = priors.build("srnn", x_dim=4, **SIZES)
    with pytest.raises(ValueError, match="resume from the .resume.ckpt"):  # the prior's own file is for use
        train_prior(fresh, train, val, fast_config(epochs=4), resume=out)
    res2 = train_prior(fresh, train, val, fast_config(epochs=4), out=out, log_json=log, resume=f"{out}.resume.ckpt")
    assert [h["epoch"] for h in res2.history] == [1, 2, 3, 4]
    assert res2.history[:2] == res.history
    assert res2.best_val <= res.best_val

    other = priors.build("dkf", x_dim=4, **SIZES)
    with pytest.raises(ValueError, match="cannot resume"):
        train_prior(other, train, val, fast_config(), resume=f"{out}.resume.ckpt")


def test_non_finite_loss_is_skipped_and_lr_halved(tracks, monkeypatch, tmp_path):
    train, val = tracks
    calls = {"n": 0}
    real = prior_task.elbo_loss  # looked up by the engine's task at every step

    def flaky(prior, x, mask=None, kl_scale=1.0, ss_prob=0.0):
        calls["n"] += 1
        loss = real(prior, x, mask, kl_scale, ss_prob)
        return loss * float("nan") if calls["n"] == 2 else loss

    monkeypatch.setattr(prior_task, "elbo_loss", flaky)
    prior = priors.build("vae", x_dim=4, **SIZES)
    res = train_prior(prior, train, val, fast_config(epochs=1), out=tmp_path / "p.pt")
    assert res.skipped_steps == 1
    assert res.history[0]["lr"] == pytest.approx(3e-3 / 2)
    ckpt = torch.load(tmp_path / "p.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_early_stopping_counts_after_schedules(tracks):
    train, val = tracks
    prior = priors.build("vae", x_dim=4, **SIZES)
    # a learning rate this small cannot improve the fixed-noise validation loss after epoch 1 for long
    res = train_prior(prior, train, val, fast_config(epochs=30, lr=1e-12, warmup_epochs=0, ss_start=0,
                                                       ss_end=0, patience=2))
    assert res.stopped_early and len(res.history) < 30


def test_bad_training_inputs(tracks):
    train, val = tracks
    prior = priors.build("vae", x_dim=4, **SIZES)
    with pytest.raises(ValueError, match="x_dim=4"):
        train_prior(prior, train[..., :3], val, fast_config())
    with pytest.raises(ValueError, match="empty"):
        train_prior(prior, train[:0], val, fast_config())
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError):
        TrainConfig(ss_start=10, ss_end=5)


def test_overrides_name_config_or_file_fields(tracks, tmp_path):
    train, val = tracks
    prior = priors.build("vae", x_dim=4, **SIZES)
    res = train_prior(prior, train[:64], val, epochs=1, batch_size=32, out=tmp_path / "p.pt")
    assert len(res.history) == 1 and (tmp_path / "p.pt.resume.ckpt").exists()
    assert TrainFiles(out="a.pt").resume_path() == "a.pt.resume.ckpt"
    assert TrainFiles(out="a.pt", resume_to="r.ckpt").resume_path() == "r.ckpt" and TrainFiles().resume_path() is None
    with pytest.raises(TypeError, match="'epoch'"):
        train_prior(prior, train, val, epoch=1)
    with pytest.raises(ValueError, match="checkpoint_extra must be a dict"):
        TrainFiles(checkpoint_extra=[1])


def test_prior_task_does_not_import_training():
    import subprocess
    import sys

    code = "import sys, pyro_dvae.prior_task; assert 'pyro_dvae.training' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("name", ["srnn", "storn", "light-dvae"])
def test_sequential_scheduled_sampling_feeds_the_free_running_past(name):
    """At ss_prob 1 the sequential form's inputs are exactly the decoder's own free-running output (what
    resynthesis and generation feed it); at 0 < p < 1 each step holds either the truth or that step's own
    prediction given the inputs chosen before it."""
    torch.manual_seed(0)
    prior = priors.build(name, x_dim=4, z_dim=2, dense_dim=8).eval()
    x, z = torch.randn(3, 7, 4), torch.randn(3, 7, 2)
    v = torch.randn(3, prior.v_dim) if name == "light-dvae" else None

    def stepwise(feed):
        return prior._stepwise(z, feed, v) if v is not None else prior.stepwise_decode(z, feed)

    def predict(x_):  # the parallel form's predictor: never used by "sequential"
        return torch.full_like(x_, 99.0)

    free = prior.decode_stepwise(z, lambda t, m, s: m, latents=None if v is None else {"v": v})[0]
    prior.ss_mode = "sequential"
    assert torch.allclose(prior._scheduled_inputs(x, predict, 1.0, stepwise), free, atol=1e-6)
    torch.manual_seed(1)
    mixed = prior._scheduled_inputs(x, predict, 0.5, stepwise)
    torch.manual_seed(1)
    pick = torch.rand(x.shape[:-1]) < 0.5
    assert 0 < int(pick.sum()) < pick.numel()
    assert torch.equal(mixed[~pick], x[~pick])
    # each picked step is the prediction given the mixed past before it
    again = prior._scheduled_inputs(mixed, predict, 0.0, stepwise)  # 0: the inputs are returned unchanged
    assert again is mixed
    own = []
    stepwise(lambda t, m, s: (own.append(m), mixed[..., t, :])[1])
    own = torch.stack(own, -2)
    assert torch.allclose(mixed[pick], own[pick], atol=1e-6)
    assert not torch.allclose(mixed[pick], predict(x)[pick])
    prior.ss_mode = "parallel"
    torch.manual_seed(1)
    assert torch.equal(prior._scheduled_inputs(x, predict, 0.5, stepwise)[pick], predict(x)[pick])


def test_sequential_scheduled_sampling_trains_and_validates_free_running(tracks):
    train, val = tracks
    torch.manual_seed(0)
    prior = priors.build("srnn", x_dim=4, **SIZES)
    res = train_prior(prior, train, val, fast_config(ss_mode="sequential", val_ss_prob=1.0, epochs=3, ss_end=3))
    assert prior.ss_mode == "sequential" and len(res.history) == 3
    prior.ss_mode = "parallel"  # the validation loss at ss_prob 1 differs between the two forms
    free = prior_task.PriorTask(prior, TrainConfig(epochs=3, ss_mode="sequential", val_ss_prob=1.0))
    tf = prior_task.PriorTask(prior, TrainConfig(epochs=3))
    torch.manual_seed(0)
    a = free.val_loss((val, None))[0]
    torch.manual_seed(0)
    b = tf.val_loss((val, None))[0]
    assert a != pytest.approx(b)
    # evaluate() scores the same way when asked (the run's initial validation loss) and restores the prior's mode
    free_eval = evaluate(prior, val, ss_prob=1.0, ss_mode="sequential")
    assert prior.ss_mode == "parallel" and free_eval != pytest.approx(evaluate(prior, val))
    assert free_eval == pytest.approx(evaluate(prior, val, ss_prob=1.0, ss_mode="sequential"))
    with pytest.raises(ValueError, match="ss_mode"):
        TrainConfig(ss_mode="free")
    with pytest.raises(ValueError, match="val_ss_prob"):
        TrainConfig(val_ss_prob=1.5)
