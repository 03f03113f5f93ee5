# SPDX-License-Identifier: Apache-2.0
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from pyro_dvae import priors
from pyro_dvae.cli import main

TINY = ["--epochs", "3", "--num-train", "128", "--num-val", "32", "--seq-len", "20", "--batch-size", "32",
        "--lr", "3e-3", "--warmup-epochs", "1", "--ss-start", "1", "--ss-end", "3", "--quiet"]


def test_train_prior_synthetic_beats_untrained(tmp_path):
    out, log, summary = tmp_path / "srnn.pt", tmp_path / "log.json", tmp_path / "summary.json"
    rc = main(["train-prior", "--model", "srnn", "--data", "synthetic-trajectories", "--out", str(out),
               "--log-json", str(log), "--out-json", str(summary), "--seed", "1", *TINY])
    assert rc == 0
    s = json.loads(summary.read_text())
    assert s["best_val_loss"] < s["untrained_val_loss"]
    assert len(json.loads(log.read_text())["history"]) == 3
    prior = priors.load(out, expect="srnn")
    assert prior.x_dim == 4 and prior.z_dim == 4


def test_train_prior_audio_folder(tmp_path):
    sf = pytest.importorskip("soundfile")
    rng = np.random.default_rng(0)
    for i in range(2):
        sf.write(tmp_path / f"s{i}.wav", rng.normal(0, 0.2, 16000), 16000)
    out = tmp_path / "spec.pt"
    rc = main(["train-prior", "--model", "vae", "--data", str(tmp_path), "--out", str(out), "--epochs", "2",
               "--seq-len", "10", "--z-dim", "4", "--dense-dim", "16", "--rnn-dim", "8", "--z-dense", "8",
               "--quiet"])
    assert rc == 0
    prior = priors.load(out)
    assert prior.emission == "spectral" and prior.x_dim == 513


def test_cli_errors(tmp_path, capsys):
    rc = main(["train-prior", "--model", "vae", "--data", str(tmp_path / "nowhere"), "--out", "x.pt"])
    assert rc == 2 and "no such data folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train-prior", "--model", "lstm", "--data", "synthetic-trajectories", "--out", "x.pt"])


def test_console_script_entry_point(tmp_path):
    out = tmp_path / "vae.pt"
    proc = subprocess.run([sys.executable, "-m", "pyro_dvae.cli", "train-prior", "--model", "vae", "--data",
                           "synthetic-trajectories", "--out", str(out), *TINY], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "untrained" in proc.stdout
    assert torch.load(out, weights_only=True)["prior"] == "vae"
