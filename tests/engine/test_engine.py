# SPDX-License-Identifier: Apache-2.0
"""The training engine (pyro_dvae.engine): sampler, chunk store, schedules, the lazy-parameter trap, resume and
a two-process CPU DDP run."""

import json
import os

import lightning.pytorch as pl
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from pyro_dvae import priors, training
from pyro_dvae.data import synthetic_trajectories
from pyro_dvae.engine import ELBOTask, Engine, RankBatches, SequenceData, Sequences, fit
from pyro_dvae.prior_task import PriorTask

SIZES = dict(z_dim=3, dense_dim=12, rnn_dim=12, z_dense=[12])


def tracks(n, seed):
    return torch.as_tensor(synthetic_trajectories(n, 12, seed=seed))


# ------------------------------------------------------------------------------------------------ data
@pytest.mark.parametrize("n, batch", [(10, 3), (12, 4), (7, 7)])
def test_rank_batches_cover_the_data_and_stay_in_step(n, batch):
    for pad in (True, False):
        per_rank = [list(RankBatches(n, batch, shuffle=pad, seed=1, rank=r, world=2, pad=pad)) for r in range(2)]
        seen = torch.cat([b for rank in per_rank for _, b in rank])
        assert set(seen.tolist()) == set(range(n))  # every sequence, every epoch
        if pad:
            assert len(per_rank[0]) == len(per_rank[1])  # the ranks' all-reduces stay in step
        else:
            assert len(seen) == n  # validation counts each sequence once
    a, b = RankBatches(n, batch, seed=1), RankBatches(n, batch, seed=1)
    b.set_epoch(1)
    assert [x.tolist() for _, x in a] != [x.tolist() for _, x in b]  # a new order every epoch
    assert all(e == 1 for e, _ in b)


def test_chunk_store_holds_the_folder_chunks(tmp_path):
    sf = pytest.importorskip("soundfile")
    from pyro_dvae.data.audio import power_sequences
    from pyro_dvae.data.synthetic_audio import speech_like
    from pyro_dvae.engine import ChunkStore

    folder = tmp_path / "audio"
    folder.mkdir()
    for k in range(2):
        sf.write(folder / f"s{k}.wav", speech_like(1.5, seed=k), 16000)
    store = ChunkStore.build(str(folder), str(tmp_path / "store"), seq_len=10, hop=5, pitch_shifts=(0.0, 1.0))
    expect = power_sequences(str(folder), seq_len=10, hop=5, pitch_shifts=(0.0, 1.0))
    assert store.shape == tuple(expect.shape)
    torch.testing.assert_close(store.tensor(), expect)
    meta = os.path.getmtime(tmp_path / "store" / "chunks.json")
    again = ChunkStore.build(str(folder), str(tmp_path / "store"), seq_len=10, hop=5, pitch_shifts=(0.0, 1.0))
    assert os.path.getmtime(tmp_path / "store" / "chunks.json") == meta and len(again) == len(store)  # reused
    train, val = store.split(0.25, seed=0)
    assert len(train) + len(val) == len(store) and not set(train.indices) & set(val.indices)
    x, mask = train[(3, torch.tensor([2, 0]))]
    torch.testing.assert_close(x, expect[np.sort(train.indices[[2, 0]])])
    assert mask is None


# ------------------------------------------------------------------------------------------------ the task
def test_kl_warmup_scales_the_latent_sites_only():
    """Under the engine's task, the loss at KL weight k is the observation term plus k times the KL term (the
    same draws): only the latent sites are scaled."""
    torch.manual_seed(0)
    prior = priors.build("srnn", x_dim=4, **SIZES)
    x = tracks(6, 0)
    prior.fit_normalisation(x)
    cfg = training.TrainConfig(epochs=5, warmup_epochs=4, ss_max=0.0)
    task = PriorTask(prior, cfg)

    def loss(epoch):
        torch.manual_seed(3)
        return float(task.loss((x, None), epoch)[0].detach())

    assert [task.schedules(e)["kl_scale"] for e in (1, 3, 5)] == [0.0, 0.5, 1.0]
    obs, full, half = loss(1), loss(5), loss(3)
    assert half == pytest.approx(obs + 0.5 * (full - obs), rel=1e-5)
    assert full != pytest.approx(obs)


def lazy_model(x, mask=None):
    loc = pyro.sample("loc", dist.Normal(torch.zeros(2), 10.0).to_event(1))
    with pyro.plate("n", x.shape[0]):
        pyro.sample("x", dist.Normal(loc, 1.0).expand(x.shape[1:]).to_event(2), obs=x)


def test_a_lazily_initialised_guide_is_trained():
    """An AutoNormal guide creates its parameters on its first call: the warm-up batch in setup() makes them
    exist before the optimiser is built, so they are trained (the trap of the issue)."""
    from pyro.infer.autoguide import AutoNormal

    torch.manual_seed(0)
    x = torch.randn(64, 3, 2) + torch.tensor([2.0, -1.0])
    with pytest.raises(ValueError, match="module_local_params"):
        ELBOTask(lazy_model, AutoNormal(lazy_model))
    pyro.settings.set(module_local_params=True)
    try:
        guide = AutoNormal(lazy_model)
        task = ELBOTask(lazy_model, guide, lr=0.05)
        res = fit(task, SequenceData(Sequences(x), Sequences(x[:16]), 16), 20, patience=50)
    finally:
        pyro.settings.set(module_local_params=False)
    assert len(list(guide.parameters())) > 0
    torch.testing.assert_close(guide.locs.loc.detach(), torch.tensor([2.0, -1.0]), atol=0.3, rtol=0)
    assert res.history[-1]["val_loss"] < res.history[0]["val_loss"]


def test_resume_continues_from_the_saved_epoch(tmp_path):
    train, val = tracks(96, 0), tracks(32, 1)
    torch.manual_seed(0)
    prior = priors.build("vae", x_dim=4, **SIZES)
    cfg = dict(batch_size=32, warmup_epochs=1, patience=50)
    first = training.train_prior(prior, train, val, training.TrainConfig(epochs=2, **cfg), out=tmp_path / "p.pt")
    resumed = training.train_prior(priors.build("vae", x_dim=4, **SIZES), train, val,
                                   training.TrainConfig(epochs=3, **cfg), out=tmp_path / "p.pt",
                                   resume=tmp_path / "p.pt.resume.ckpt")
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3] and resumed.history[:2] == first.history
    assert torch.load(tmp_path / "p.pt", weights_only=True)["training"]["epoch"] == 3


def test_progress_is_plain_lines_when_the_output_is_not_a_terminal(capsys, monkeypatch):
    """A redirected log (train-prior / train-noise > log) gets one plain line per epoch, no progress bar and no
    escape codes; on a terminal Lightning's bar is shown instead."""
    import io

    from pyro_dvae.engine import run as engine_run

    assert not engine_run.on_terminal(io.StringIO()) and not engine_run.on_terminal(object())
    train, val = tracks(64, 0), tracks(16, 1)
    cfg = training.TrainConfig(epochs=2, batch_size=32, warmup_epochs=1, patience=50)
    torch.manual_seed(0)
    training.train_prior(priors.build("vae", x_dim=4, **SIZES), train, val, cfg, progress=True)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"], out
    assert "val_loss" in lines[0] and "\r" not in out and "\x1b" not in out
    monkeypatch.setattr(engine_run, "on_terminal", lambda stream=None: True)
    training.train_prior(priors.build("vae", x_dim=4, **SIZES), train, val, cfg, progress=True)
    out = capsys.readouterr().out
    assert "epoch 1/2:" not in out and "\r" in out  # tqdm's bar
    training.train_prior(priors.build("vae", x_dim=4, **SIZES), train, val, cfg, progress=False)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------------ DDP
class _RankState(pl.Callback):
    """Saves each rank's final weights."""

    def __init__(self, folder):
        self.folder = folder

    def on_fit_end(self, trainer, task):
        torch.save({k: v.detach().cpu() for k, v in task.prior.state_dict().items()},
                   os.path.join(self.folder, f"rank{trainer.global_rank}.pt"))


def test_two_cpu_processes_with_ddp_agree(tmp_path):
    """2 CPU processes (gloo, ddp_spawn): both ranks end with identical weights, the prior's checkpoint comes from
    rank 0 and loads, and the parent process gets the history and the best weights back."""
    train, val = tracks(64, 0), tracks(16, 1)
    torch.manual_seed(0)
    prior = priors.build("srnn", x_dim=4, **SIZES)
    prior.fit_normalisation(train)
    cfg = training.TrainConfig(epochs=2, batch_size=16, warmup_epochs=1, patience=50)
    task = PriorTask(prior, cfg, threads=1)
    res = fit(task, SequenceData(Sequences(train), Sequences(val), 16), 2, patience=50,
              engine=Engine(devices=2, strategy="ddp_spawn"), out=str(tmp_path / "p.pt"),
              callbacks=[_RankState(str(tmp_path))])
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    assert [h["epoch"] for h in res.history] == [1, 2] and np.isfinite(res.best_val)
    loaded = priors.load(tmp_path / "p.pt")
    assert training.evaluate(loaded, val, batch_size=16) < 1e6
    for k, v in loaded.state_dict().items():  # the parent's prior holds the best weights
        assert torch.equal(v, prior.state_dict()[k].cpu()), k


def test_torchrun_launches_the_command_on_two_processes(tmp_path):
    """`torchrun -m pyro_dvae.cli train-prior ... --devices 2`: each rank runs the command, rank 0 alone prints and
    writes the summary, and the checkpoint loads."""
    import json
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port), "-m",
           "pyro_dvae.cli", "train-prior", "--model", "vae", "--data", "synthetic-trajectories", "--epochs", "2",
           "--num-train", "128", "--num-val", "16", "--seq-len", "12", "--batch-size", "32", "--devices", "2",
           "--strategy", "ddp", "--out", str(tmp_path / "v.pt"), "--out-json", str(tmp_path / "v.json"), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("validation loss (negative ELBO per step)") == 1  # rank 0 only
    summary = json.loads((tmp_path / "v.json").read_text())
    assert summary["processes"] == 2 and summary["epochs_run"] == 2
    assert priors.load(tmp_path / "v.pt").x_dim == 4


def test_an_audiovisual_store_of_another_generator_version_is_rebuilt(tmp_path, monkeypatch):
    sf = pytest.importorskip("soundfile")
    from pyro_dvae.data import audiovisual
    from pyro_dvae.data.synthetic_audio import speech_like
    from pyro_dvae.engine import ChunkStore

    folder = tmp_path / "audio"
    folder.mkdir()
    sf.write(folder / "100-1-0000.wav", speech_like(1.5, seed=0), 16000)
    store = ChunkStore.build(str(folder), str(tmp_path / "store"), seq_len=10, kind="audiovisual")
    meta = tmp_path / "store" / "chunks.json"
    first = os.path.getmtime(meta)
    ChunkStore.build(str(folder), str(tmp_path / "store"), seq_len=10, kind="audiovisual")
    assert os.path.getmtime(meta) == first  # the same version: reused
    monkeypatch.setattr(audiovisual, "VERSION", audiovisual.VERSION + 1)
    again = ChunkStore.build(str(folder), str(tmp_path / "store"), seq_len=10, kind="audiovisual")
    assert json.load(open(meta))["settings"]["generator"] == audiovisual.VERSION and len(again) == len(store)


# ------------------------------------------------------------------------------------------------ threads
def test_threads_is_a_setting_and_a_context_manager():
    from pyro_dvae.engine import threads

    before = torch.get_num_threads()
    with threads(2) as n:
        assert n == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with threads(None):  # leaves the count alone
        assert torch.get_num_threads() == before
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="threads must be an integer >= 1"):
            threads(bad)
