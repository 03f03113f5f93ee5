# SPDX-License-Identifier: Apache-2.0
"""Model-size presets and per-data defaults of prior training (what ``pyro-dvae train-prior`` trains when an option
is left unset), and the synthetic-trajectory data it trains motion priors on.

- :data:`TRAJ_SIZES` / :data:`SPEC_SIZES`: the layer sizes of a trajectory (box) prior and of a spectral (audio)
  prior; :func:`prior_kwargs` turns a family name, the kind of data and any explicit sizes into the keyword
  arguments of :func:`pyro_dvae.priors.build`;
- :data:`TRAJ_TRAINING` / :data:`AUDIO_TRAINING`: epochs, batch size, learning rate, KL weight and sequence length per
  kind of data (:func:`training_defaults`; MDVAE trains on 30-frame sequences);
- :func:`synthetic_trajectory_data`: the training stream and the validation set of synthetic box trajectories;
- :func:`checkpoint_extra`: the front-end entries a spectral (or audio-visual) prior's checkpoint carries.
"""

import torch

#: sizes of a trajectory (box) prior
TRAJ_SIZES = {"z_dim": 4, "dense_dim": 32, "rnn_dim": 32, "z_dense": [32]}
#: sizes of a spectral (power-spectrum) prior
SPEC_SIZES = {"z_dim": 16, "dense_dim": 256, "rnn_dim": 128, "z_dense": [64, 32]}
#: a spectral prior's power floor below the mean training power, dB (``level_floor_db`` of
#: :class:`~pyro_dvae.priors.DVAE`; chosen on the dev speakers, BENCHMARKS.md)
AUDIO_LEVEL_FLOOR_DB = 15.0
#: the size keys of :func:`prior_kwargs`
SIZE_KEYS = ("z_dim", "dense_dim", "rnn_dim", "z_dense")
#: training defaults per kind of data (an option left unset takes these)
TRAJ_TRAINING = {"epochs": 100, "batch_size": 256, "lr": 1e-3, "beta": 1.0, "seq_len": 60}
#: audio: the DVAE speech-enhancement reference's KL weight (0.01) and more, smaller steps than its batch of 128:
#: 36 minutes of speech are 70 steps of 32 chunks an epoch
AUDIO_TRAINING = {"epochs": 100, "batch_size": 32, "lr": 1e-3, "beta": 0.01, "seq_len": 50}
#: frames per sequence of MDVAE (the reference's sequences)
MDVAE_SEQ_LEN = 30
#: MDVAE's training defaults (the audio-visual benchmark's recipe)
MDVAE_TRAINING = {"epochs": 50, "batch_size": 64, "lr": 1e-3, "beta": 1.0, "seq_len": MDVAE_SEQ_LEN}
#: the ``data`` name of the synthetic trajectories (anything else but :data:`MOT_TRACKS` is an audio folder)
SYNTHETIC_TRAJECTORIES = "synthetic-trajectories"
#: the ``data`` name of the real pedestrian tracks of the MOTChallenge ground truth (:mod:`pyro_dvae.data.tracks`)
MOT_TRACKS = "mot-tracks"
#: the ``data`` names of box trajectories
TRAJECTORY_DATA = (SYNTHETIC_TRAJECTORIES, MOT_TRACKS)
#: the seed offset of the synthetic validation tracks
VAL_SEED_OFFSET = 10_000


def training_defaults(audio, model=None):
    """``{"epochs", "batch_size", "lr", "beta", "seq_len"}`` for audio folders (``audio=True``) or trajectories;
    ``model="mdvae"`` keeps :data:`MDVAE_TRAINING` (its own KL weights, 30-frame sequences)."""
    defaults = dict(AUDIO_TRAINING if audio else TRAJ_TRAINING)
    if model == "mdvae":
        defaults.update(MDVAE_TRAINING)
    return defaults


def emission(audio):
    """The emission of a prior trained on audio (``"spectral"``: power spectra) or on trajectories
    (``"gaussian"``)."""
    return "spectral" if audio else "gaussian"


def prior_kwargs(model, x_dim, audio, *, residual=True, **sizes):
    """The :func:`pyro_dvae.priors.build` keyword arguments of ``train-prior``.

    The size preset of the kind of data (:data:`SPEC_SIZES` or :data:`TRAJ_SIZES`) with the ``sizes`` that are
    not ``None`` on top (``z_dim``, ``dense_dim``, ``rnn_dim``, ``z_dense``); a family without latent variables
    (``deepar``) gets ``z_dim=0`` and no latent MLP; an autoregressive trajectory prior predicts the change from
    the previous box unless ``residual=False``; a spectral prior models the power above a floor
    :data:`AUDIO_LEVEL_FLOOR_DB` below the mean training power (``level_floor_db``; ``--model-option
    level_floor_db=null`` turns it off). MDVAE keeps its own size defaults (only the sizes given are passed; it has
    no ``x_dim``).

    :param str model: the prior family (:func:`pyro_dvae.priors.available`).
    :param int x_dim: features per step of the training data.
    :param bool audio: audio data (spectral prior) or trajectories (Gaussian prior).
    """
    from . import priors

    unknown = sorted(set(sizes) - set(SIZE_KEYS))
    if unknown:
        raise TypeError(f"prior_kwargs() got unexpected size(s) {unknown}; sizes are {SIZE_KEYS}")
    given = {k: v for k, v in sizes.items() if v is not None}
    if model == "mdvae":
        return dict(z_dim=sizes.get("z_dim"), **{k: given[k] for k in ("dense_dim", "rnn_dim") if k in given})
    kwargs = {**(SPEC_SIZES if audio else TRAJ_SIZES), **given}
    z_dim = kwargs.pop("z_dim")
    cls = priors.prior_class(model)
    if not cls.latent_sites:  # deepar: no latent variables
        z_dim = 0
        kwargs.pop("z_dense")
    if not audio and cls.autoregressive and residual:
        kwargs["residual"] = True  # motion priors predict the change from the previous box
    if audio:
        kwargs["level_floor_db"] = AUDIO_LEVEL_FLOOR_DB
    return dict(x_dim=x_dim, z_dim=z_dim, emission=emission(audio), **kwargs)


def synthetic_trajectory_data(num_train, num_val, seq_len, *, seed=0, frame_aspect=None, speed_range=(1.0, 1.0)):
    """``(train, val)``: a :class:`~pyro_dvae.engine.TrajectoryStream` of ``num_train`` synthetic box tracks (new
    tracks every epoch) and a fixed ``(num_val, seq_len, 4)`` validation tensor (seed ``seed + 10000``).

    :param frame_aspect: ``(low, high)`` range of frame width / height (default: MixDVAE's 16:9 statistics).
    :param speed_range: ``(low, high)`` per-track speed factor range (log-uniform).
    """
    from .data import synthetic_trajectories
    from .engine import TrajectoryStream

    kw = dict(frame_aspect=frame_aspect, speed_range=tuple(speed_range))
    train = TrajectoryStream(num_train, seq_len, seed=seed, **kw)
    val = torch.as_tensor(synthetic_trajectories(num_val, seq_len, seed=seed + VAL_SEED_OFFSET, **kw))
    return train, val


def checkpoint_extra(model, audio):
    """The extra entries of a trained prior's checkpoint: the STFT front end of a spectral prior (``sample_rate``,
    ``n_fft``, ``hop``) and, for MDVAE, the visual stream's generator."""
    if not audio:
        return {}
    from .data.audio import HOP, N_FFT, SAMPLE_RATE

    extra = {"sample_rate": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP}
    if model == "mdvae":
        from .data.audiovisual import SIZE

        extra["visual"] = {"generator": "pyro_dvae.data.audiovisual", "size": SIZE}
    return extra
