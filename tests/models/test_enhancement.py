# SPDX-License-Identifier: Apache-2.0
import json
import math
import warnings

import numpy as np
import pyro
import pytest
import torch
from common import REALDATA, requires_realdata
from pyro.infer import TraceMeanField_ELBO

from pyro_dvae import noise, priors
from pyro_dvae.data import audio
from pyro_dvae.data.noisy import mix_at_snr, synthetic_noise
from pyro_dvae.data.synthetic_audio import speech_like
from pyro_dvae.masks import scale_mixture_gain, wiener_gain
from pyro_dvae.metrics import si_sdr
from pyro_dvae.models import enhancement as E
from pyro_dvae.models.enhancement import fit as EF
from pyro_dvae.models.enhancement import losses as EL
from pyro_dvae.models.enhancement import run as ER
from pyro_dvae.models.enhancement import training as U
from pyro_dvae.priors.rvae import RVAEPathSampler
from pyro_dvae.training import TrainConfig, train_prior

FRONT_END = {"sample_rate": audio.SAMPLE_RATE, "n_fft": audio.N_FFT, "hop": audio.HOP}


@pytest.fixture(scope="module")
def prior():
    """A small causal RVAE trained for a few seconds on synthetic speech-like signals (513 bins)."""
    torch.manual_seed(0)
    chunks = audio.power_chunks([speech_like(2.0, seed=k) for k in range(6)], seq_len=25)
    p = priors.build("rvae", x_dim=513, z_dim=8, emission="spectral", dense_dim=64, rnn_dim=32, z_dense=[32])
    train_prior(p, chunks, chunks[:4], TrainConfig(epochs=30, batch_size=8, lr=5e-3, warmup_epochs=2, patience=100))
    return p.eval()


@pytest.fixture(scope="module")
def noisy_power():
    """Noisy training chunks (synthetic speech + hum / tones at random SNRs): (N, 20, 513)."""
    rng = np.random.default_rng(0)
    sigs = []
    for k in range(4):
        s = speech_like(1.0, seed=50 + k)
        n = synthetic_noise(("hum", "tones")[k % 2], 1.5, seed=k)
        sigs.append(mix_at_snr(s, n, rng.uniform(0, 5))[0])
    return audio.power_chunks(sigs, seq_len=20)


def _tones_mixture(snr=0.0):
    clean = 0.5 * speech_like(1.0, seed=99)
    return clean, mix_at_snr(clean, synthetic_noise("tones", 1.5, seed=7), snr)[0]


def test_nmf_m_step_never_raises_the_is_divergence_in_vem(prior):
    clean, noisy = _tones_mixture()
    X, _ = E.prepare_noisy(noisy)
    P = X.abs() ** 2
    model = E.build_model(prior, "nmf", "una", noise_options={"rank": 3})
    model.noise.initialise(P)
    model.gain = torch.ones(P.shape[:-1])
    guide = E.EnhancementGuide(model, e_steps=1, lr=1e-3, num_samples=3)
    for _ in range(5):
        guide["z"].update(model, guide, P)
        guide["v"].update(model, guide, P)
        v_s = guide["v"].v_s.double()
        model.noise.W, model.noise.H = model.noise.W.double(), model.noise.H.double()
        gain, Pd = model.gain.double(), P.double()
        before = model.noise.cost(Pd, v_s, gain)
        for _ in range(3):  # the M-step: W, H then g; each update is monotone in the sample-averaged IS cost
            gain = model.noise.m_step(Pd, v_s, gain)
            after = model.noise.cost(Pd, v_s, gain)
            assert after <= before * (1 + 1e-10)
            before = after
        model.noise.W, model.noise.H, model.gain = model.noise.W.float(), model.noise.H.float(), gain.float()


def test_wiener_filter_of_known_variances_is_the_posterior_mean():
    g = torch.Generator().manual_seed(0)
    v_s, v_n = torch.tensor([2.0, 0.5, 1.0]), torch.tensor([1.0, 1.5, 0.01])
    n = 200_000
    cn = lambda v: (torch.randn(n, 3, generator=g) + 1j * torch.randn(n, 3, generator=g)) * (v / 2).sqrt()  # noqa
    s, x = cn(v_s), None
    x = s + cn(v_n)
    slope = (s * x.conj()).mean(0).real / (x.abs() ** 2).mean(0)  # least-squares E[s | x] = a x
    torch.testing.assert_close(slope, wiener_gain(v_s[None], v_n[None]), atol=0.01, rtol=0.0)
    # samples of the variances are averaged as masks, not as variances
    vs2, vn2 = torch.tensor([[1.0], [3.0]]), torch.tensor([[1.0], [1.0]])
    torch.testing.assert_close(wiener_gain(vs2, vn2), torch.tensor([0.5 * (0.5 + 0.75)]))


def test_wiener_gain_averages_the_posterior_draws(prior):
    _, noisy = _tones_mixture()
    P = E.prepare_noisy(noisy)[0].abs() ** 2
    model = E.build_model(prior, "no", "una")
    pyro.set_rng_seed(3)
    v_s, v_n, _ = model.posterior(P, 5)
    pyro.set_rng_seed(3)
    torch.testing.assert_close(model.wiener_gain(P, 5), (v_s / (v_s + v_n)).mean(0))


@pytest.mark.parametrize("name", ["lv", "no", "nolv"])
def test_deep_noise_models_train_and_lower_their_loss(prior, noisy_power, name):
    train = val = noisy_power  # a tiny set: the loss on it must fall
    res = U.train_noise(prior, name, train, val, epochs=4, batch_size=4, lr=3e-3, seed=1,
                        noise_options={"rnn_dim": 16, "dense_dim": 16})
    torch.manual_seed(1)  # train_noise's initial weights
    start = E.EnhancementModel(prior, noise.build(name, 513, z_dim=prior.z_dim, rnn_dim=16, dense_dim=16))
    elbo = TraceMeanField_ELBO(max_plate_nesting=E.PLATES)
    assert U.evaluate_noise(res.model, val, 4, elbo) == pytest.approx(res.best_val)  # the best weights are kept
    before, after = U.evaluate_noise(start, train, 4, elbo), U.evaluate_noise(res.model, train, 4, elbo)
    assert after < before - 1e-2


def test_unda_starts_from_the_und_weights_and_then_moves(prior, noisy_power, tmp_path):
    path = tmp_path / "nolv.pt"
    U.train_noise(prior, "nolv", noisy_power[:-2], noisy_power[-2:], epochs=2, batch_size=4, lr=3e-3,
                  noise_options={"rnn_dim": 16, "dense_dim": 16}, out=path, **FRONT_END)
    ckpt = torch.load(path, weights_only=True)
    model = E.build_model(prior, "nolv", "unda", path)
    for k, v in model.noise.state_dict().items():
        assert torch.equal(v, ckpt["state_dict"][k]), k
    for k, v in model.encoder_state().items():
        assert torch.equal(v, ckpt["encoder_state"][k]), k
    fresh = dict(prior.named_parameters())
    assert any(not torch.equal(v, fresh[k]) for k, v in model.encoder_state().items())  # U-ND tuned the encoder
    _, noisy = _tones_mixture()
    P = E.prepare_noisy(noisy)[0].abs() ** 2
    E.fit_svi(model, P, num_steps=2, lr=1e-3)
    assert any(not torch.equal(v, ckpt["state_dict"][k]) for k, v in model.noise.state_dict().items())
    assert len(pyro.get_param_store().keys()) == 0  # svi's parameter names are removed afterwards
    und = E.enhance(noisy, prior, "nolv", "und", noise_checkpoint=path)
    assert und.result is None and und.waveform.shape == noisy.shape
    with pytest.raises(ValueError, match="holds a 'nolv' model"):
        E.build_model(prior, "lv", "und", path)


def test_enhancement_raises_si_sdr_on_a_synthetic_noisy_signal(prior):
    clean, noisy = _tones_mixture(0.0)
    out = E.enhance(noisy, prior, "nolv", "una", num_iters=30, lr=5e-4)
    assert out.waveform.shape == noisy.shape and np.isfinite(out.waveform).all()
    assert out.result.algorithm == "svi" and len(out.result.losses) == 30
    assert si_sdr(out.waveform, clean) > si_sdr(noisy, clean) + 3.0
    assert 0.0 <= float(out.mask.min()) and float(out.mask.max()) <= 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # this small prior leaves the tones mixture to the NMF noise
        nmf = E.enhance(noisy, prior, "nmf", "una", num_iters=3)
    assert nmf.result.algorithm == "vem" and nmf.result.info["schedule"] == ["z", "v", "nmf"]
    assert np.isfinite(nmf.waveform).all()


def test_a_swapped_guide_fits_z_in_the_encoders_place(prior):
    # U-NA with the nolv noise model on the tones mixture, 30 steps: the encoder (default, fine-tuned) 14.6 dB, an
    # AutoNormal over z started at the encoder's mean and scale 8.4 dB (docs/guides/guides.md): it enhances, and the
    # encoder's fine-tuning does better
    clean, noisy = _tones_mixture(0.0)
    before = {k: v.clone() for k, v in prior.state_dict().items()}
    keys = set(pyro.get_param_store().keys())
    default = si_sdr(E.enhance(noisy, prior, "nolv", "una", num_iters=30, lr=5e-4).waveform, clean)
    out = E.enhance(noisy, prior, "nolv", "una", num_iters=30, lr=5e-4, guide="auto-normal")
    assert type(out.result.guide).__name__ == "AutoNormal" and len(out.result.losses) == 30
    swapped = si_sdr(out.waveform, clean)
    assert si_sdr(noisy, clean) + 6.0 <= swapped < default and out.info["recovered"] is None
    assert set(pyro.get_param_store().keys()) == keys  # the fit ran in a parameter-store scope of its own
    assert all(torch.equal(before[k], v) for k, v in prior.state_dict().items())


@pytest.mark.parametrize("name", ["rvae", "rvae-noncausal"])
def test_fast_rvae_draw_is_the_priors_own_draw(name):
    torch.manual_seed(0)
    p = priors.build(name, x_dim=9, z_dim=3, emission="spectral", dense_dim=8, rnn_dim=6, z_dense=[8, 5])
    sampler = RVAEPathSampler.build(p)
    assert sampler is not None
    x, eps = torch.rand(2, 7, 9) + 0.1, torch.randn(2, 7, 3)
    with torch.no_grad():
        torch.testing.assert_close(sampler(x, eps), p.encode(x).sample_fn(eps)[0])
    assert RVAEPathSampler.build(priors.build("dkf", x_dim=9, z_dim=3, emission="spectral", dense_dim=8,
                                                rnn_dim=6, z_dense=[8])) is None


def test_every_spectral_prior_of_the_zoo_runs(prior):
    P = torch.rand(1, 6, 9) ** 2
    for name in ("vae", "dkf", "srnn", "dsae", "light-dvae", "hit-dvae"):
        p = priors.build(name, x_dim=9, z_dim=2, emission="spectral", dense_dim=8, rnn_dim=8, z_dense=[8])
        for nz in ("nmf", "nolv"):
            model = E.build_model(p, nz, "una", noise_options={"rank": 2} if nz == "nmf" else {"rnn_dim": 4})
            res = E.fit_vem(model, P, num_iters=2) if nz == "nmf" else E.fit_svi(model, P, num_steps=2)
            assert np.isfinite(res.losses).all()
            assert model.wiener_gain(P, 2).shape == P.shape


def test_bad_inputs(prior, tmp_path):
    with pytest.raises(ValueError, match="silent"):
        E.enhance(np.zeros(4000), prior)
    with pytest.raises(ValueError, match="shorter than one STFT frame"):
        E.enhance(np.ones(500), prior)
    with pytest.raises(ValueError, match="NaN"):
        E.enhance(np.full(4000, np.nan), prior)
    x = speech_like(0.5, seed=1)
    with pytest.raises(ValueError, match="nmf.*una"):
        E.enhance(x, prior, "nmf", "und")
    with pytest.raises(ValueError, match="needs a noise model trained"):
        E.enhance(x, prior, "lv", "und")
    with pytest.raises(ValueError, match="fresh noise model"):
        E.enhance(x, prior, "lv", "una", noise_checkpoint="any.pt")
    with pytest.raises(ValueError, match="mode must be"):
        E.enhance(x, prior, "lv", "fast")
    with pytest.raises(ValueError, match="num_iters"):
        E.enhance(x, prior, "nmf", "una", num_iters=0)
    traj = priors.build("srnn", x_dim=4, z_dim=2, dense_dim=8, rnn_dim=8, z_dense=[8])
    with pytest.raises(ValueError, match="spectral"):
        E.EnhancementModel(traj, noise.build("nmf", 4))
    with pytest.raises(ValueError, match="bins"):
        E.EnhancementModel(prior, noise.build("nmf", 33))
    # a noise model trained for another prior, or another front end
    other = priors.build("rvae", x_dim=513, z_dim=8, emission="spectral", dense_dim=64, rnn_dim=32, z_dense=[32])
    path = tmp_path / "noise.pt"
    noise.save_noise(path, noise.build("no", 513, rnn_dim=4, dense_dim=4), other, {}, 16000, 1024, 256)
    with pytest.raises(ValueError, match="different weights"):
        E.enhance(x, prior, "no", "und", noise_checkpoint=path)
    noise.save_noise(path, noise.build("no", 513, rnn_dim=4, dense_dim=4), prior, {}, 8000, 1024, 256)
    with pytest.raises(ValueError, match="sample_rate=8000"):
        E.enhance(x, prior, "no", "und", noise_checkpoint=path)
    # pure noise: documented handling is a warning that little speech was found
    with pytest.warns(UserWarning, match="noise only"):
        E.enhance(synthetic_noise("tones", 1.0, seed=3), prior, "nolv", "una", num_iters=0)


def _write(path, x, sr=16000):
    import soundfile as sf

    sf.write(path, x, sr, subtype="FLOAT")
    return path


def test_cli_train_noise_and_enhance_end_to_end(prior, tmp_path, capsys):
    from scipy.signal import resample_poly

    from pyro_dvae.cli import main

    prior_path = tmp_path / "speech.pt"
    prior.save(prior_path, **FRONT_END)
    noisy_dir = tmp_path / "noisy"
    noisy_dir.mkdir()
    for k in range(3):
        s = speech_like(1.0, seed=60 + k)
        _write(noisy_dir / f"n{k}.wav", 0.5 * mix_at_snr(s, synthetic_noise("hum", 1.5, seed=k), 3.0)[0])
    noise_path = tmp_path / "nolv.pt"
    assert main(["train-noise", "--noisy-dir", str(noisy_dir), "--prior", str(prior_path), "--noise", "nolv",
                 "--out", str(noise_path), "--epochs", "2", "--seq-len", "20", "--batch-size", "4", "--quiet",
                 "--out-json", str(tmp_path / "tn.json")]) == 0
    assert json.loads((tmp_path / "tn.json").read_text())["epochs_run"] == 2
    clean, noisy = _tones_mixture(5.0)
    noisy_22k = resample_poly(noisy, 441, 320)  # a 22.05 kHz input: the output keeps its rate and length
    _write(tmp_path / "noisy.wav", noisy_22k, 22050)
    _write(tmp_path / "clean.wav", resample_poly(clean, 441, 320), 22050)
    out_json = tmp_path / "enh.json"
    assert main(["enhance", str(tmp_path / "noisy.wav"), "--prior", str(prior_path), "--mode",  # no --noise: und
                 "und", "--noise-model", str(noise_path), "--out", str(tmp_path / "out.wav"), "--ref",  # takes the
                 str(tmp_path / "clean.wav"), "--out-json", str(out_json)]) == 0  # checkpoint's noise model
    import soundfile as sf

    info = sf.info(tmp_path / "out.wav")
    assert info.samplerate == 22050 and info.frames == len(noisy_22k)
    summary = json.loads(out_json.read_text())
    assert (summary["noise"], summary["mode"]) == ("nolv", "und")
    for kind in ("output", "input"):
        assert set(summary[kind]) == {"si_sdr", "pesq_wb", "pesq_nb", "estoi", "rtf"}
    assert summary["output"]["rtf"] > 0 and summary["input"]["rtf"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["enhance", str(tmp_path / "noisy.wav"), "--prior", str(prior_path), "--noise", "nmf",
                     "--iters", "2", "--out", str(tmp_path / "out2.wav")]) == 0
        assert main(["enhance", str(tmp_path / "noisy.wav"), "--prior", str(prior_path), "--iters", "2", "--out",
                     str(tmp_path / "out3.wav"), "--out-json", str(tmp_path / "enh3.json")]) == 0
    assert json.loads((tmp_path / "enh3.json").read_text())["noise"] == "no"  # the default noise model (U-NA)
    # bad input: a clear error and exit code 2
    (tmp_path / "x.mp3").write_bytes(b"ID3")
    assert main(["enhance", str(tmp_path / "x.mp3"), "--prior", str(prior_path), "--noise", "nmf", "--out",
                 str(tmp_path / "o.wav")]) == 2
    _write(tmp_path / "silent.wav", np.zeros(8000))
    assert main(["enhance", str(tmp_path / "silent.wav"), "--prior", str(prior_path), "--noise", "nmf", "--out",
                 str(tmp_path / "o.wav")]) == 2
    assert main(["enhance", str(tmp_path / "noisy.wav"), "--prior", str(noise_path), "--noise", "nmf", "--out",
                 str(tmp_path / "o.wav")]) == 2
    assert main(["enhance", str(tmp_path / "noisy.wav"), "--prior", str(prior_path), "--noise", "nmf", "--mode",
                 "und", "--out", str(tmp_path / "o.wav")]) == 2
    err = capsys.readouterr().err
    assert "unsupported audio format" in err and "silent" in err and "nmf" in err
    clipped = np.clip(3 * noisy, -1, 1)
    _write(tmp_path / "clipped.wav", clipped)
    with pytest.warns(UserWarning, match="clipped"):
        assert main(["enhance", str(tmp_path / "clipped.wav"), "--prior", str(prior_path), "--noise", "nolv",
                     "--iters", "1", "--out", str(tmp_path / "o.wav")]) == 0


@requires_realdata("speech/cmu_arctic/cmu_arctic_us_axb_a0004.wav", "noise/speech_commands/running_tap.wav")
def test_real_speech_in_real_noise_runs_end_to_end(prior):
    speech = REALDATA / "speech" / "cmu_arctic" / "cmu_arctic_us_axb_a0004.wav"
    noise_file = REALDATA / "noise" / "speech_commands" / "running_tap.wav"
    clean = audio.load_audio(str(speech))[:32000]
    noisy, _ = mix_at_snr(clean, audio.load_audio(str(noise_file)), 0.0, offset=16000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = E.enhance(noisy, prior, "nmf", "una", num_iters=3)
        und = E.enhance(noisy, prior, "nolv", "una", num_iters=3)
    for o in (out, und):
        assert o.waveform.shape == noisy.shape and np.isfinite(o.waveform).all()
        assert np.isfinite(si_sdr(o.waveform, clean))


def test_collapse_is_detected_and_recovered(prior, monkeypatch):
    """A fit whose speech estimate vanishes is detected; the other gain start is tried; if every start fails the
    input is returned unchanged (never a near-silent file)."""
    x = speech_like(1.0, seed=7) + 0.1 * synthetic_noise("pink", 1.0, seed=7)
    fit, calls = ER._fit, []

    def collapse_first(model, *args):
        calls.append(args[-1])
        result = fit(model, *args)
        if len(calls) == 1:  # a constructed failure: the noise model takes everything
            model.gain = torch.full_like(model.gain, 1e-12)
            model.selected_mask = None  # the final mask is then the collapsed fit's
        return result

    monkeypatch.setattr(ER, "_fit", collapse_first)
    with pytest.warns(UserWarning, match="collapsed"):
        out = E.enhance(x, prior, "nmf", "una", num_iters=2)
    assert calls == [False, True]  # the closed-form gain start was the recovery
    assert out.info["recovered"] == "restart" and out.info["attempts"][0]["kept_energy"] < E.COLLAPSE
    assert out.info["attempts"][1]["kept_energy"] >= E.COLLAPSE
    assert (out.waveform**2).sum() > E.COLLAPSE * (x**2).sum()

    def always(model, *args):
        result = fit(model, *args)
        model.gain = torch.full_like(model.gain, 1e-12)
        model.selected_mask = None
        return result

    monkeypatch.setattr(ER, "_fit", always)
    with pytest.warns(UserWarning, match="unchanged"):
        out = E.enhance(x, prior, "nmf", "una", num_iters=2)
    assert out.info["recovered"] == "input"
    np.testing.assert_allclose(out.waveform, x, atol=1e-4 * np.abs(x).max())


def test_narrowband_input_leaves_the_empty_band_out(prior):
    """An input with nothing above 4 kHz: the empty band is left out of the likelihood and the output keeps a
    sane share of the input energy."""
    from pyro_dvae.data.heldout import narrowband

    x = narrowband(speech_like(1.5, seed=3) + 0.05 * synthetic_noise("pink", 1.5, seed=3))
    X, _ = E.prepare_noisy(x)
    model = E.build_model(prior, "nmf", "una")
    bins = model.set_band(X.abs() ** 2)
    assert bins is not None and 256 <= int(bins.sum()) < 330 and not bins[-1] and bins[0]
    full = speech_like(1.5, seed=3) + 0.05 * synthetic_noise("pink", 1.5, seed=3)
    assert model.set_band(E.prepare_noisy(full)[0].abs() ** 2) is None
    out = E.enhance(x, prior, "nmf", "una", num_iters=3)
    assert out.info["band_bins"] == int(bins.sum())
    assert 0.05 < (out.waveform**2).sum() / (x**2).sum() <= 1.0


@pytest.fixture(scope="module")
def real_priors():
    """The shipped priors ``pyro-dvae enhance`` uses by default, by noise model (trained on the training speakers of
    the held-out protocol only): LigHT-DVAE for both."""
    from pyro_dvae import pretrained
    from pyro_dvae.cli.enhance import DEFAULT_PRIOR

    prior = E.load_speech_prior(pretrained.path(DEFAULT_PRIOR))
    return {"nmf": prior, "lv": prior}


@requires_realdata("speech/librispeech/train-clean-100", "noise/speech_commands")
@pytest.mark.parametrize("narrow", [False, True], ids=["16k", "8k"])
def test_real_unseen_speakers_improve_and_narrowband_does_not_collapse(real_priors, narrow):
    """Two test speakers (never trained on) in a held-out segment of real tap noise at 5 dB, wideband and band-limited
    to 4 kHz: the nmf and the lv (U-NA) estimates keep a sane share of the energy and improve SI-SDR on average."""
    from pyro_dvae.data import heldout

    speakers = heldout.speech_split(str(REALDATA / "speech" / "librispeech" / "train-clean-100"))["test"][:2]
    noises = {"tap": heldout.noise_split(str(REALDATA / "noise" / "speech_commands"))["running_tap"]}
    gains = {"nmf": [], "lv": []}
    for item in heldout.noisy_set(speakers, noises, snrs=(5,), seconds=2.0, narrow=narrow):
        for kind in gains:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = E.enhance(item["noisy"], real_priors[kind], kind, "una")
            kept = (out.waveform**2).sum() / (item["noisy"] ** 2).sum()
            assert 0.1 < kept <= 1.0, (kind, kept)
            assert (out.info["band_bins"] < 400) == narrow and out.info["recovered"] is None
            gains[kind].append(si_sdr(out.waveform, item["clean"]) - si_sdr(item["noisy"], item["clean"]))
    assert all(np.mean(g) > 1.0 for g in gains.values()), gains


def test_vem_keeps_the_iteration_that_keeps_the_most_speech(prior):
    """fit_vem's max-kept selection: the kept mask is one of the iterations' and keeps at least the energy share
    of the last iteration's."""
    x = speech_like(1.0, seed=5) + 0.2 * synthetic_noise("pink", 1.0, seed=5)
    X, _ = E.prepare_noisy(x)
    power = (X.abs() ** 2).to(torch.float32)
    model = E.build_model(prior, "nmf", "una")
    fit = E.fit_vem(model, power, num_iters=4, nmf_init="floor", select="max-kept")
    assert len(fit.losses) == 4 and 0 <= model.selected_iter < 4
    v_s, v_n, _ = model.posterior(power, 4)
    last = E.kept_energy(wiener_gain(v_s, v_n), power)
    assert E.kept_energy(model.selected_mask, power) >= last - 0.05  # about what the last fit keeps, or more
    with pytest.raises(ValueError, match="select"):
        E.fit_vem(model, power, num_iters=1, select="best")
    E.fit_vem(model, power, num_iters=2, select=None)
    assert model.selected_mask is None


def test_default_nmf_keeps_its_floor_dictionary(prior):
    """The enhancement default: W stays the input's median-power spectrum (the "floor" start), only H and the
    gain move; the reference's learnt dictionary does move W."""
    x = speech_like(1.0, seed=7) + 0.2 * synthetic_noise("pink", 1.0, seed=7)
    X, _ = E.prepare_noisy(x)
    power = (X.abs() ** 2).to(torch.float32)
    model = E.build_model(prior, "nmf", "una")
    assert not model.noise.learn_dictionary and model.noise.quantile == E.NMFOptions().quantile
    model.noise.initialise(power, "floor")
    W0, H0 = model.noise.W.clone(), model.noise.H.clone()
    E.fit_vem(model, power, num_iters=3, nmf_init="floor")
    assert torch.equal(model.noise.W, W0) and not torch.equal(model.noise.H, H0)
    assert model.selected_mask is None  # the last iteration's fit
    learnt = E.build_model(prior, "nmf", "una", noise_options={"learn_dictionary": True})
    E.fit_vem(learnt, power, num_iters=3, nmf_init="floor")
    assert not torch.allclose(learnt.noise.W, W0)


def test_nmf_dictionary_reads_a_low_quantile_when_speech_dominates(prior, monkeypatch):
    """`enhance`'s NMF fit: W is the 0.2-quantile spectrum, started at the mean noise level that floor implies,
    when the no-reference speech share reaches NMFOptions.high_share (the median then holds much
    speech), the median at its own level below it."""
    x = speech_like(1.0, seed=7) + 0.2 * synthetic_noise("pink", 1.0, seed=7)
    X, _ = E.prepare_noisy(x)
    power = (X.abs() ** 2).to(torch.float32)
    d = E.NMFOptions()
    for share, quantile in ((d.high_share, d.high_share_quantile), (d.high_share - 0.01, d.quantile)):
        monkeypatch.setattr(ER, "speech_share", lambda *a, share=share, **k: share)
        model = E.build_model(prior, "nmf", "una")
        model.set_band(power)
        seen = {}
        monkeypatch.setattr(model.noise, "initialise",
                            lambda *a, _f=model.noise.initialise, **k: seen.update(args=a) or _f(*a, **k))
        floors = []
        monkeypatch.setattr(model.noise, "m_step", lambda *a, _f=model.noise.m_step, **k:
                            floors.append(k["gain_floor"]) or _f(*a, **k))
        config = E.EnhanceConfig(num_iters=2, lr=1e-3, e_steps=1, vem_samples=2, num_samples=2)
        assert config.nmf.init == "floor"
        ER._fit(model, power, config, False)
        high = quantile == d.high_share_quantile
        assert seen["args"][2:] == (quantile if high else None, high and d.high_share_mean_level)  # None: 0.5
        assert floors == [d.gain_floor] * 2 and model.gain_floor == d.gain_floor  # every M-step floors the gain
        ref = E.build_model(prior, "nmf", "una")
        ref.noise.initialise(power, "floor", quantile, mean_level=high)
        torch.testing.assert_close(model.noise.W, ref.noise.W)
        assert model.noise.start_quantile == quantile
        start = ref.noise.variance().mean()
        low = ref.noise.initialise(power, "floor", quantile).variance().mean()
        torch.testing.assert_close(start / low, torch.tensor(1 / -math.log1p(-quantile) if high else 1.0,
                                                             dtype=start.dtype))
    assert d.high_share_quantile < d.quantile and d.high_share_mean_level


def test_speech_share_reads_the_stationary_floor():
    """The no-reference speech share: about 0 for stationary noise alone; below the true share, but near it, when
    loud bursts (speech-like) sit on the noise in a third of the frames (they lift the floor's quantile); the live
    bins only when a band mask is given."""
    g = torch.Generator().manual_seed(0)
    noise = torch.distributions.Exponential(torch.ones(300, 64)).sample() * 1.0
    assert E.speech_share(noise) < 0.05
    burst = torch.zeros(300, 64)
    burst[::3] = 20.0 * torch.rand(100, 64, generator=g)
    noisy = noise + burst
    truth = float(burst.sum() / noisy.sum())
    assert truth - 0.2 < E.speech_share(noisy) < truth
    half = torch.zeros(64, dtype=torch.bool)
    half[:32] = True
    dead = noisy.clone()
    dead[:, 32:] = 1e-12  # an empty top band: it must not count
    assert abs(E.speech_share(dead, half) - E.speech_share(noisy[:, :32])) < 1e-6
    with pytest.raises(ValueError, match="quantile"):
        E.speech_share(noisy, quantile=1.0)


def test_speech_share_reads_the_median_for_noise_with_quiet_gaps():
    """Stationary noise has the exponential law's spread (log(log 2 / -log 0.8) = 1.13) and keeps the 0.2-quantile
    floor; noise made of loud events with quiet gaps spreads far more, its floor is near zero, and the automatic
    choice (the median) comes closer to the true speech share than that floor."""
    g = torch.Generator().manual_seed(1)
    expo = torch.distributions.Exponential(torch.ones(2000, 64))
    steady = expo.sample()
    assert abs(E.log_power_spread(steady) - math.log(math.log(2) / -math.log(0.8))) < 0.05
    assert E.speech_share(steady) == E.speech_share(steady, quantile=0.2)
    level = torch.full((2000, 1), 1e-3)
    level[torch.rand(2000, 1, generator=g) < 0.6] = 10.0  # events in 60 % of the frames, quiet gaps between
    events = expo.sample() * level
    speech = torch.zeros(2000, 64)
    speech[::2] = 4.0 * torch.rand(1000, 64, generator=g)
    noisy = events + speech
    truth = float(speech.sum() / noisy.sum())
    assert E.log_power_spread(noisy) > E.TRANSIENT_SPREAD > E.log_power_spread(steady + speech)
    auto, floor = E.speech_share(noisy), E.speech_share(noisy, quantile=0.2)
    assert floor > 0.9 > truth + 0.5  # the floor sees the gaps: almost everything looks like speech
    assert abs(auto - truth) < abs(floor - truth) - 0.2


def test_svi_floor_guard_falls_back_only_below_the_floor(prior, monkeypatch):
    """``select="floor"``: the last step's fit while it keeps at least FLOOR_SHARE of the no-reference speech share;
    below it, the last checked fit that did, and the max-kept one if none did (the same fit as ``"max-kept"``)."""
    x = speech_like(1.0, seed=6) + 0.2 * synthetic_noise("pink", 1.0, seed=6)
    X, _ = E.prepare_noisy(x)
    power = (X.abs() ** 2).to(torch.float32)

    def fit(select, share):
        monkeypatch.setattr(EF, "FLOOR_SHARE", share)
        model = E.build_model(prior, "lv", "una", noise_options={"rnn_dim": 4, "dense_dim": 4}, seed=0)
        pyro.set_rng_seed(0)
        E.fit_svi(model, power, num_steps=4, check_every=2, select=select)
        return model

    above = fit("floor", 0.0)  # every fit is above: the last step's
    assert above.selected_mask is None and above.selected_iter is None
    none_above, max_kept = fit("floor", 2.0), fit("max-kept", 2.0)  # no fit keeps twice the speech share
    assert none_above.selected_iter in (1, 3) and none_above.selected_iter == max_kept.selected_iter
    torch.testing.assert_close(none_above.selected_mask, max_kept.selected_mask)
    with pytest.raises(ValueError, match="select"):
        E.fit_svi(above, power, num_steps=1, select="best")
    assert E.DeepOptions().select == "floor" and E.DeepOptions().unda_select is None


def test_deep_una_defaults_start_at_the_mean_level_and_unda_runs_longer(prior, monkeypatch):
    """U-NA's fresh deep noise model starts at the mean noise level (``DeepOptions.start``) and runs
    ``num_iters`` steps; U-NDA, started from a trained model, runs ``unda_num_iters``."""
    assert E.DeepOptions().start == "mean" and E.build_model(prior, "lv", "una").noise.start == "mean"
    steps = []
    monkeypatch.setattr(ER, "_fit", lambda model, power, config, gain: steps.append(config.num_iters))
    x = speech_like(1.0, seed=7) + 0.2 * synthetic_noise("pink", 1.0, seed=7)
    for mode in ("una", "unda"):
        E.enhance(x, prior, "lv", mode, model=E.build_model(prior, "lv", "una"))
    assert steps == [E.DeepOptions().num_iters, E.DeepOptions().unda_num_iters] == [35, 100]


def test_joint_adam_orders_parameters_by_name_not_address():
    """Pyro passes a step's parameters as a set (ordered by memory address, which changes run to run): JointAdam
    must order them by their parameter-store names, or the clipped norm's summation order, hence the fit, changes
    from one run to the next."""
    pyro.clear_param_store()
    names = [f"test.p{k:02d}" for k in range(12)]
    for n in reversed(names):  # created in the reverse of the name order: addresses do not follow the names
        pyro.param(n, torch.randn(3))
    params = [pyro.get_param_store().get_param(n).unconstrained() for n in names]
    for p in params:
        p.grad = torch.ones_like(p)
    opt = E.JointAdam(1e-3)
    opt(set(params))
    assert [id(p) for p in opt._opt.param_groups[0]["params"]] == [id(p) for p in params]
    pyro.clear_param_store()


def test_deep_fit_is_the_same_run_to_run(prior):
    """The same seed gives the same fit (fresh models, so fresh parameter addresses)."""
    x = speech_like(0.5, seed=7) + 0.2 * synthetic_noise("pink", 0.5, seed=7)
    outs = [E.enhance(x, prior, "lv", "una", num_iters=6, noise_options={"rnn_dim": 4, "dense_dim": 4}).waveform
            for _ in range(2)]
    np.testing.assert_array_equal(outs[0], outs[1])


def test_svi_keeps_the_checked_step_that_keeps_the_most_speech(prior):
    x = speech_like(1.0, seed=6) + 0.2 * synthetic_noise("pink", 1.0, seed=6)
    X, _ = E.prepare_noisy(x)
    power = (X.abs() ** 2).to(torch.float32)
    model = E.build_model(prior, "lv", "una", noise_options={"rnn_dim": 4, "dense_dim": 4})
    E.fit_svi(model, power, num_steps=5, check_every=2)
    assert model.selected_iter in (1, 3, 4) and model.selected_mask.shape == power.shape
    assert ((model.selected_mask >= 0) & (model.selected_mask <= 1)).all()
    E.fit_svi(model, power, num_steps=2, select=None)
    assert model.selected_mask is None


def test_train_noise_stops_when_the_noise_model_takes_the_speech(prior, noisy_power, monkeypatch):
    """The no-reference stopping rule: once the validation speech estimate keeps under KEPT_RATIO of its first
    epoch's energy share, training stops and the best epoch before that is kept."""
    shares = iter([0.8, 0.79, 0.8 * U.KEPT_RATIO - 0.01, 0.1, 0.1])
    monkeypatch.setattr(EL, "kept_share", lambda *a, **k: next(shares))
    res = U.train_noise(prior, "no", noisy_power[:-2], noisy_power[-2:], epochs=5, batch_size=4, lr=3e-3, seed=1,
                        noise_options={"rnn_dim": 4, "dense_dim": 4})
    assert res.stopped_on_speech and len(res.history) == 3 and res.best_epoch <= 2
    assert [h["kept_energy"] for h in res.history] == [0.8, 0.79, 0.8 * U.KEPT_RATIO - 0.01]


def test_speech_shape_sets_the_output_gain_and_not_the_guards(prior):
    """``speech_shape``: the output gain is the Gamma scale mixture's posterior mean over the fit's posterior draws
    (:func:`~pyro_dvae.masks.scale_mixture_gain`); the guards still read the Wiener gain's kept energy."""
    clean, noisy = _tones_mixture(5.0)
    model = E.build_model(prior, "nmf", "una")
    out = E.enhance(noisy, prior, model=model, num_iters=2, speech_shape=0.5)
    assert out.info["speech_shape"] == 0.5 and model.speech_shape == 0.5
    X, _ = E.prepare_noisy(noisy)
    power = (X.abs() ** 2).to(torch.float32)
    pyro.set_rng_seed(3)
    got = model.wiener_gain(power, 4)
    pyro.set_rng_seed(3)
    v_s, v_n, _ = model.posterior(power, 4)
    torch.testing.assert_close(got, scale_mixture_gain(v_s, v_n, power, 0.5))
    assert not torch.allclose(got, wiener_gain(v_s, v_n), atol=1e-3)
    plain = E.enhance(noisy, prior, num_iters=2, speech_shape=math.inf)
    assert plain.info["speech_shape"] is None and not torch.allclose(plain.mask, out.mask, atol=1e-3)
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="speech_shape"):
            E.enhance(noisy, prior, num_iters=1, speech_shape=bad)

    def svi(shape):
        m = E.build_model(prior, "lv", "una", noise_options={"rnn_dim": 4, "dense_dim": 4}, seed=0)
        m.speech_shape = shape
        pyro.set_rng_seed(0)
        E.fit_svi(m, power, num_steps=4, check_every=2, select="max-kept")
        return m

    gaussian, heavy = svi(None), svi(0.5)
    assert heavy.selected_iter == gaussian.selected_iter  # chosen on the Wiener gain's kept energy
    assert not torch.allclose(heavy.selected_mask, gaussian.selected_mask, atol=1e-3)  # but the output gain is stored
