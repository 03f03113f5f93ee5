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
from dataclasses import dataclass, field

import torch
from pyro.infer import TraceMeanField_ELBO

from pyro_dvae import noise as noise_models
from pyro_dvae.data.audio import HOP, N_FFT, SAMPLE_RATE

from .config import NOISES, PLATES
from .fit import eval_mode_backward
from .model import EnhancementModel, check_power


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
                progress=False, clip_norm=10.0, engine=None, resume=None, resume_to=None):
    """U-ND: train a deep noise model and the speech encoder on noisy speech only (the decoder stays frozen), on
    the training engine (:mod:`pyro_dvae.engine`).

    Minimises :func:`noise_loss` (the unsupervised negative ELBO of the noisy power; no clean reference is
    ever used) with Adam over shuffled mini-batches, keeps the weights of the best validation epoch and stops
    after ``patience`` epochs without improvement, or as soon as the speech estimate on the validation chunks
    keeps less than :data:`KEPT_RATIO` of the energy share it kept after the first epoch (the noise model has
    started to explain the speech).

    :param DVAE prior: the speech prior the noise model is trained for (not modified).
    :param str noise: ``"lv"``, ``"no"`` or ``"nolv"``.
    :param train: noisy power chunks ``(N, T, F)``: a tensor (e.g.
        :func:`~pyro_dvae.data.audio.power_sequences` of a folder of noisy speech) or a
        :class:`~pyro_dvae.engine.ChunkStore`.
    :param val: held-out noisy power chunks ``(M, T', F)`` (the same kinds).
    :param str out: checkpoint path (:func:`~pyro_dvae.noise.save_noise`), written after every improving epoch.
    :param device: ``"cpu"`` / ``"cuda"`` when no ``engine`` is given (default: the prior's device).
    :param engine: :class:`~pyro_dvae.engine.Engine` (accelerator, devices, strategy, ...).
    :param str resume: a Lightning checkpoint of an earlier run (``resume_to``) to continue from.
    :returns: :class:`NoiseTrainResult`.
    """
    from pyro_dvae.engine import Engine, SequenceData, Sequences, fit

    from .task import NoiseTask

    if noise not in NOISES or noise == "nmf":
        raise ValueError(f"train_noise trains a deep noise model (lv, no, nolv), got {noise!r}"
                         + ("; nmf is fitted per utterance, nothing to train" if noise == "nmf" else ""))
    for name, data in (("train", train), ("validation", val)):
        if not hasattr(data, "shape") or len(data.shape) != 3 or len(data) == 0:
            raise ValueError(f"{name} data must be a non-empty (N, T, F) tensor of noisy power")
        check_power(data if torch.is_tensor(data) else data[torch.arange(min(len(data), 8))][0], prior.x_dim)
    if engine is None:
        device = torch.device(device) if device is not None else prior.x_loc.device
        engine = Engine(accelerator="gpu" if device.type == "cuda" else "cpu", threads=torch.get_num_threads())
    opts = {"z_dim": prior.z_dim, **(noise_options or {})}
    torch.manual_seed(seed)
    wrap = lambda x: Sequences(x.cpu()) if torch.is_tensor(x) else x  # noqa: E731
    data = SequenceData(wrap(train), wrap(val), batch_size, seed=seed, num_workers=engine.num_workers)
    if resume_to is None and out is not None:
        resume_to = f"{out}.resume.ckpt"
    # a prior on CUDA is differentiated in eval mode here too (the encoder's parameter names, DDP's probe)
    with eval_mode_backward(prior.x_loc.device):
        model = EnhancementModel(prior, noise_models.build(noise, prior.x_dim, **opts))
        task = NoiseTask(model, prior, lr, clip_norm, engine.threads, seed, (sample_rate, n_fft, hop))
        res = fit(task, data, epochs, patience=patience, engine=engine, out=out, resume_to=resume_to,
                  resume=resume, progress=progress, log_extra={"noise": noise})
    model.cpu()
    return NoiseTrainResult(model, history=res.history, best_epoch=res.best_epoch, best_val=res.best_val,
                            stopped_on_speech=res.stopped_by_task)


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


def trainable_state(model):
    return {"noise": {k: v.detach().clone() for k, v in model.noise.state_dict().items()},
            "encoder": model.encoder_state()}


def load_trainable_state(model, state):
    model.noise.load_state_dict(state["noise"])
    model.load_encoder_state(state["encoder"])


@torch.no_grad()
def kept_parts(model, x, seed=1234):
    """``[sum mask^2 x, sum x]`` of a validation batch (:func:`~pyro_dvae.models.enhancement.kept_energy`'s
    parts, fixed posterior draws that leave the validation loss's random stream alone)."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        mask = model.wiener_gain(x, 2)
    return torch.stack([(mask**2 * x).sum(), x.sum()]).double()


def _kept_share(parts):
    """The share of the validation energy the speech estimate keeps, from the summed :func:`_kept_parts`."""
    return float(parts[0] / parts[1].clamp_min(1e-300))


@torch.no_grad()
def evaluate_noise(model, data, batch_size, elbo=None, seed=1234):
    """Validation loss of :func:`train_noise` (:func:`noise_loss` per TF bin, fixed noise, batches of
    ``batch_size``): what the training's ``best_val`` is measured with."""
    elbo = elbo or TraceMeanField_ELBO(max_plate_nesting=PLATES)
    total = 0.0
    with torch.random.fork_rng(devices=[data.device] if data.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(data), batch_size):
            xb = data[i:i + batch_size]
            total += float(noise_loss(model, xb, elbo)) * len(xb)
    return total / len(data)
