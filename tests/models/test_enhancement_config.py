# SPDX-License-Identifier: Apache-2.0
"""The typed settings of speech enhancement (:class:`EnhanceConfig` and its groups, :class:`VEMFitOptions`,
:class:`NoiseTrainConfig`) and the file runners built on them."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from pyro_dvae import priors
from pyro_dvae.data import audio
from pyro_dvae.data.noisy import synthetic_noise
from pyro_dvae.data.synthetic_audio import speech_like
from pyro_dvae.models import enhancement as E


@pytest.fixture(scope="module")
def prior():
    torch.manual_seed(0)
    return priors.build("rvae", x_dim=513, z_dim=4, emission="spectral", dense_dim=16, rnn_dim=8, z_dense=[8]).eval()


def _noisy(seconds=0.5):
    return speech_like(seconds, seed=3) + 0.2 * synthetic_noise("pink", seconds, seed=3)


def test_defaults_are_the_dataclasses_and_read_only():
    config = E.EnhanceConfig()
    assert (config.noise, config.mode, config.num_iters, config.lr, config.speech_shape) == ("no", "una", None, None,
                                                                                            None)
    assert dict(E.DEFAULTS["nmf"]) == dataclasses.asdict(E.NMFOptions()) == dataclasses.asdict(config.nmf)
    assert dict(E.DEFAULTS["deep"]) == dataclasses.asdict(E.DeepOptions()) == dataclasses.asdict(config.deep)
    with pytest.raises(TypeError):
        E.DEFAULTS["nmf"]["quantile"] = 0.2
    with pytest.raises(TypeError):
        E.DEFAULTS["nmf"] = {}


@pytest.mark.parametrize("make, needle", [
    (lambda: E.EnhanceConfig(mode="fast"), "mode must be one of"),
    (lambda: E.EnhanceConfig(noise="wind"), "noise must be one of"),
    (lambda: E.EnhanceConfig(num_iters=-1), "num_iters must be an integer >= 0"),
    (lambda: E.EnhanceConfig(noise="nmf", num_iters=0), "num_iters must be >= 1 for nmf"),
    (lambda: E.EnhanceConfig(lr=0.0), "lr must be a finite number > 0"),
    (lambda: E.EnhanceConfig(num_samples=0), "num_samples must be an integer >= 1"),
    (lambda: E.EnhanceConfig(speech_shape=0.0), "speech_shape must be > 0"),
    (lambda: E.EnhanceConfig(speech_shape=math.nan), "speech_shape must be > 0"),
    (lambda: E.EnhanceConfig(noise_options=[1]), "noise_options must be a dict"),
    (lambda: E.EnhanceConfig(nmf={"quantile": 1.5}), "quantile must be in (0, 1)"),
    (lambda: E.NMFOptions(smooth=4), "smooth must be an odd integer"),
    (lambda: E.NMFOptions(init="random"), "init must be one of"),
    (lambda: E.NMFOptions(select="floor"), "select must be one of"),
    (lambda: E.DeepOptions(select="best"), "select must be one of"),
    (lambda: E.DeepOptions(start="zero"), "start must be one of"),
    (lambda: E.DeepOptions(check_every=0), "check_every must be an integer >= 1"),
    (lambda: E.VEMFitOptions(select="best"), "select must be None or 'max-kept'"),
    (lambda: E.VEMFitOptions(nmf_init="random"), "nmf_init must be one of"),
    (lambda: E.NoiseTrainConfig(epochs=0), "epochs must be an integer >= 1"),
    (lambda: E.NoiseTrainConfig(lr=-1.0), "lr must be a finite number > 0"),
    (lambda: E.NoiseTrainConfig(val_fraction=1.0), "val_fraction must be in (0, 1)"),
    (lambda: E.NoiseTrainConfig(seq_len=1), "seq_len must be an integer >= 2"),
])
def test_fields_are_validated_with_one_line_naming_the_field(make, needle):
    with pytest.raises(ValueError) as err:
        make()
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_replace_merges_groups_and_the_short_names():
    config = E.EnhanceConfig(nmf={"quantile": 0.2})
    assert config.nmf.quantile == 0.2 and config.nmf.rank == E.NMFOptions().rank  # a dict is taken over the defaults
    other = config.replace(nmf={"rank": 2}, nmf_init="uniform", num_iters=3)
    assert (other.nmf.quantile, other.nmf.rank, other.nmf.init, other.num_iters) == (0.2, 2, "uniform", 3)
    assert config.nmf.rank == 4 and config.num_iters is None  # the original is unchanged
    assert config.replace() is config and config.replace(nmf_init=None) is config
    with pytest.raises(TypeError):
        config.replace(iters=3)


def test_resolved_takes_the_noise_kinds_values():
    nmf = E.EnhanceConfig(noise="nmf").resolved()
    assert (nmf.num_iters, nmf.lr, nmf.speech_shape) == (15, 1e-3, 0.25)
    assert E.EnhanceConfig().resolved().num_iters == E.DeepOptions().num_iters  # the default noise model is deep
    una = E.EnhanceConfig(noise="lv").resolved()
    unda = E.EnhanceConfig(noise="lv", mode="unda", noise_checkpoint="x.pt").resolved()
    assert (una.num_iters, una.lr, unda.num_iters, unda.lr) == (35, 5e-4, 100, 1e-4)
    given = E.EnhanceConfig(noise="lv", num_iters=7, lr=1e-2, speech_shape=math.inf).resolved()
    assert (given.num_iters, given.lr, given.speech_shape) == (7, 1e-2, math.inf)
    assert E.EnhanceConfig(deep={"speech_shape": None}, noise="no").resolved().speech_shape == math.inf  # Gaussian
    assert E.EnhanceConfig(noise=None, mode="und", noise_checkpoint="x.pt").resolved("nolv").noise == "nolv"


def test_noise_source_checks_name_the_python_and_the_command_line_options():
    cases = [(E.EnhanceConfig(noise="nmf", mode="und"), ("nmf", "una", "--noise nmf")),
             (E.EnhanceConfig(noise="lv", mode="una", noise_checkpoint="x.pt"), ("fresh noise model", "--noise-model")),
             (E.EnhanceConfig(noise="lv", mode="unda"), ("needs a noise model trained", "noise_checkpoint",
                                                          "--mode unda needs --noise-model")),
             (E.EnhanceConfig(noise=None), ("needs the noise model's name",))]
    for config, needles in cases:
        with pytest.raises(ValueError) as err:
            config.check_noise_source()
        assert all(n in str(err.value) for n in needles), (needles, str(err.value))
    E.EnhanceConfig(noise="lv", mode="und", noise_checkpoint="x.pt").check_noise_source()
    with pytest.raises(ValueError, match="--mode und.*drop --iters"):
        E.files.check_file_config(E.EnhanceConfig(noise="lv", mode="und", noise_checkpoint="x.pt", num_iters=3))


def test_config_and_short_forms_give_the_same_estimate(prior):
    x = _noisy()
    short = E.enhance(x, prior, "lv", "una", num_iters=2, noise_options={"rnn_dim": 4, "dense_dim": 4})
    config = E.EnhanceConfig(noise="lv", num_iters=2, noise_options={"rnn_dim": 4, "dense_dim": 4})
    typed = E.enhance(x, prior, config)
    keyword = E.enhance(x, prior, noise="lv", mode="una", config=E.EnhanceConfig(num_iters=5), num_iters=2,
                        noise_options={"rnn_dim": 4, "dense_dim": 4})
    np.testing.assert_array_equal(short.waveform, typed.waveform)
    np.testing.assert_array_equal(short.waveform, keyword.waveform)
    assert typed.info["num_iters"] == 2 and typed.info["lr"] == E.DeepOptions().lr
    with pytest.raises(TypeError, match="twice"):
        E.enhance(x, prior, "lv", noise="nmf")


def test_option_groups_reach_the_model(prior, monkeypatch):
    """The nmf group builds the fresh NMF model and drives its VEM fit (enhance_dev.py's --defaults)."""
    model = E.build_model(prior, "nmf", "una", nmf=E.NMFOptions(rank=2, smooth=1, quantile=0.3))
    assert (model.noise.rank, model.noise.smooth, model.noise.quantile) == (2, 1, 0.3)
    assert E.build_model(prior, "lv", "una", deep=E.DeepOptions(start="anchor")).noise.start == "anchor"
    seen = []
    real = E.run.fit_vem
    monkeypatch.setattr(E.run, "fit_vem", lambda model, power, options, **k: seen.append(options) or real(
        model, power, options, **k))
    E.enhance(_noisy(), prior, noise="nmf", num_iters=1, nmf={"gain_floor": None, "high_share": None}, e_steps=2,
              vem_samples=3)
    (opts,) = seen
    assert (opts.num_iters, opts.e_steps, opts.num_samples, opts.gain_floor, opts.quantile) == (1, 2, 3, None, None)
    assert opts.nmf_init == "floor" and opts.lr == E.NMFOptions().lr


def test_train_noise_checks_its_config_first(prior):
    x = torch.rand(4, 10, 513) + 0.1
    with pytest.raises(ValueError, match="epochs must be"):
        E.train_noise(prior, "lv", x, x, epochs=0)
    with pytest.raises(ValueError, match="batch_size must be"):
        E.train_noise(prior, "lv", x, x, E.NoiseTrainConfig(batch_size=0))


def test_enhance_file_writes_and_summarises(prior, tmp_path):
    sf = pytest.importorskip("soundfile")
    path = tmp_path / "p.pt"
    prior.save(path, sample_rate=audio.SAMPLE_RATE, n_fft=audio.N_FFT, hop=audio.HOP)
    x = _noisy(0.6)
    sf.write(tmp_path / "noisy.wav", 0.5 * x / np.abs(x).max(), 16000, subtype="FLOAT")
    out = tmp_path / "sub" / "out.wav"
    summary = E.enhance_file(str(tmp_path / "noisy.wav"), str(out), prior=str(path), num_iters=1)
    assert out.exists() and summary["prior"] == str(path) and summary["iters"] == 1
    assert (summary["noise"], summary["mode"], summary["sample_rate"]) == ("no", "una", 16000)
    assert "output" not in summary
    with pytest.raises(ValueError, match="--mode unda needs --noise-model"):  # checked before the file is read
        E.enhance_file(str(tmp_path / "missing.wav"), str(out), noise="lv", mode="unda")
