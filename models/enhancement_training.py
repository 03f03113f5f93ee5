# SPDX-License-Identifier: Apache-2.0
"""U-ND: training a deep noise model (and the speech encoder) once, on noisy speech only.

The loss is the enhancement model's negative ELBO (:class:`~pyro_dvae.models.enhancement.EnhancementModel`,
:class:`~pyro.infer.TraceMeanField_ELBO`) per time-frequency bin of noisy power spectrograms: the speech decoder
is frozen, the encoder (started from the speech prior's) and the noise network are trained, and no clean
reference is ever read. The checkpoint (:func:`pyro_dvae.noise.save_noise`) identifies the speech prior and the
front end it was trained for.

**References:**

[1] X. Lin, S. Leglaive, L. Girin, X. Alameda-Pineda (2023), "Unsupervised Speech Enhancement with Deep
    Dynamical Generative Speech and Noise Models", Interspeech.
"""

import math
import time
from dataclasses import dataclass, field

import torch
from pyro.infer import TraceMeanField_ELBO

from pyro_dvae import noise as noise_models
from pyro_dvae.data.audio import HOP, N_FFT, SAMPLE_RATE

from .enhancement import NOISES, PLATES, EnhancementModel, adam, check_power, eval_mode_backward, kept_energy


@dataclass
class NoiseTrainResult:
    """Output of :func:`train_noise`: the trained :class:`EnhancementModel` (best weights), the per-epoch
    ``history`` (train / validation negative ELBO per TF bin, the share of the validation energy the speech
    estimate keeps, seconds), ``best_epoch``, ``best_val`` and ``stopped_on_speech`` (training stopped because
    the noise model started to take the speech over, :data:`KEPT_RATIO`)."""

    model: EnhancementModel
    history: list = field(default_factory=list)
    best_epoch: int = 0
    best_val: float = math.inf
    stopped_on_speech: bool = False


def noise_loss(model, power, elbo=None):
    """Negative ELBO per time-frequency bin of noisy power ``(B, T, F)`` (a differentiable scalar)."""
    elbo = elbo or TraceMeanField_ELBO(max_plate_nesting=PLATES)
    return elbo.differentiable_loss(model.model, model.guide, power) / power.numel()


def train_noise(prior, noise, train, val, *, epochs=30, batch_size=32, lr=1e-3, patience=10, seed=0,
                noise_options=None, out=None, sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop=HOP, device=None,
                progress=False, clip_norm=10.0):
    """U-ND: train a deep noise model and the speech encoder on noisy speech only (the decoder stays frozen).

    Minimises :func:`noise_loss` (the unsupervised negative ELBO of the noisy power; no clean reference is
    ever used) with Adam over shuffled mini-batches, keeps the weights of the best validation epoch and stops
    after ``patience`` epochs without improvement, or as soon as the speech estimate on the validation chunks
    keeps less than :data:`KEPT_RATIO` of the energy share it kept after the first epoch (the noise model has
    started to explain the speech).

    :param DVAE prior: the speech prior the noise model is trained for (not modified).
    :param str noise: ``"lv"``, ``"no"`` or ``"nolv"``.
    :param torch.Tensor train: noisy power chunks ``(N, T, F)`` (e.g.
        :func:`~pyro_dvae.data.audio.power_sequences` of a folder of noisy speech).
    :param torch.Tensor val: held-out noisy power chunks ``(M, T', F)``.
    :param str out: checkpoint path (:func:`~pyro_dvae.noise.save_noise`), written after every improving epoch.
    :returns: :class:`NoiseTrainResult`.
    """
    if noise not in NOISES or noise == "nmf":
        raise ValueError(f"train_noise trains a deep noise model (lv, no, nolv), got {noise!r}"
                         + ("; nmf is fitted per utterance, nothing to train" if noise == "nmf" else ""))
    for name, data in (("train", train), ("validation", val)):
        if not torch.is_tensor(data) or data.dim() != 3 or len(data) == 0:
            raise ValueError(f"{name} data must be a non-empty (N, T, F) tensor of noisy power")
        check_power(data, prior.x_dim)
    device = torch.device(device) if device is not None else prior.x_loc.device
    with eval_mode_backward(device), eval_mode_backward(prior.x_loc.device):
        return _train_noise(prior, noise, train, val, epochs, batch_size, lr, patience, seed, noise_options, out,
                            sample_rate, n_fft, hop, device, progress, clip_norm)


def _train_noise(prior, noise, train, val, epochs, batch_size, lr, patience, seed, noise_options, out, sample_rate,
                 n_fft, hop, device, progress, clip_norm):
    opts = {"z_dim": prior.z_dim, **(noise_options or {})}
    torch.manual_seed(seed)
    model = EnhancementModel(prior, noise_models.build(noise, prior.x_dim, **opts))
    model.to(device)
    dtype = model.prior.x_loc.dtype
    train, val = train.to(device, dtype), val.to(device, dtype)
    params = model.trainable_parameters()
    opt = adam(params, lr)
    elbo = TraceMeanField_ELBO(max_plate_nesting=PLATES)
    gen = torch.Generator().manual_seed(seed)
    res = NoiseTrainResult(model)
    best = _trainable_state(model)
    bad = 0
    epochs_iter = range(1, int(epochs) + 1)
    if progress:
        from tqdm.auto import tqdm

        epochs_iter = tqdm(epochs_iter, desc=f"train {noise} noise", unit="epoch")
    for epoch in epochs_iter:
        t0 = time.perf_counter()
        perm = torch.randperm(len(train), generator=gen).to(device)
        total, count = 0.0, 0
        for i in range(0, len(train), batch_size):
            xb = train[perm[i:i + batch_size]]
            loss = noise_loss(model, xb, elbo)
            opt.zero_grad()
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, clip_norm)
            if not (torch.isfinite(loss) and torch.isfinite(norm)):
                opt.zero_grad()
                continue
            opt.step()
            total, count = total + float(loss.detach()) * len(xb), count + len(xb)
        val_loss = _evaluate(model, val, batch_size, elbo)
        kept = _kept_energy(model, val, batch_size)
        res.history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": val_loss,
                            "kept_energy": kept, "seconds": time.perf_counter() - t0})
        first_kept = res.history[0]["kept_energy"]
        if kept < KEPT_RATIO * first_kept:  # the noise model has started to take the speech over: stop here
            res.stopped_on_speech = True
            break
        if val_loss < res.best_val:
            res.best_val, res.best_epoch, bad = val_loss, epoch, 0
            best = _trainable_state(model)
            if out is not None:
                _load_trainable_state(model, best)
                noise_models.save_noise(out, model.noise, prior, model.encoder_state(), sample_rate, n_fft, hop,
                                        training={"history": res.history, "best_epoch": epoch, "best_val": val_loss})
        else:
            bad += 1
            if bad >= patience:
                break
    _load_trainable_state(model, best)
    if out is not None:  # final write: the full history with the best weights
        noise_models.save_noise(out, model.noise, prior, model.encoder_state(), sample_rate, n_fft, hop,
                                training={"history": res.history, "best_epoch": res.best_epoch,
                                          "best_val": res.best_val})
    return res


#: ``train_noise`` stops when the speech estimate on the validation chunks keeps less than this fraction of the
#: share of the energy it kept after the first epoch (a stopping rule that needs no clean reference). On the noisy
#: training speech of the held-out benchmark, trained by the validation ELBO alone, a NO model's kept share fell
#: from 0.77 to 0.13 in 30 epochs while the ELBO kept improving (it learns to predict the speech from the past
#: noisy frames; U-ND / U-NDA then collapsed on the test files); LV's fell from 0.80 to 0.53. Chosen on the 16 dev
#: utterances (mean SI-SDR gain of U-ND): NO +1.26 dB with 0.8 (stops after epoch 5), -3.69 with 0.5 (epoch 12),
#: -0.55 without (14 of 16 files collapsed); LV +2.01 with 0.8 (epoch 14), +1.83 without (epoch 27). A second dev
#: comparison, 16 utterances in each band (mean gain / worst file): 0.95 vs 0.8, U-ND NO 8 kHz +1.10 / -2.35 vs
#: -0.16 / -5.15, 16 kHz +1.91 / -1.94 vs +1.26 / -6.06; LV +1.72 / -1.69 vs +1.59 / -2.44 and +2.46 / +0.50 vs
#: +2.01 / -6.60; NOLV like NO; U-NDA 8 kHz LV +2.18 / +0.26 vs +1.93 / -0.75, NO +2.00 / -1.08 vs +1.03 / -3.80.
KEPT_RATIO = 0.95


def _trainable_state(model):
    return {"noise": {k: v.detach().clone() for k, v in model.noise.state_dict().items()},
            "encoder": model.encoder_state()}


def _load_trainable_state(model, state):
    model.noise.load_state_dict(state["noise"])
    model.load_encoder_state(state["encoder"])


@torch.no_grad()
def _kept_energy(model, data, batch_size, seed=1234):
    """:func:`~pyro_dvae.models.enhancement.kept_energy` of the validation chunks (fixed posterior draws)."""
    with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []):
        torch.manual_seed(seed)
        mask = torch.cat([model.wiener_gain(data[i:i + batch_size], 2) for i in range(0, len(data), batch_size)])
    return kept_energy(mask, data)


@torch.no_grad()
def _evaluate(model, data, batch_size, elbo, seed=1234):
    total = 0.0
    with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(data), batch_size):
            xb = data[i:i + batch_size]
            total += float(noise_loss(model, xb, elbo)) * len(xb)
    return total / len(data)
