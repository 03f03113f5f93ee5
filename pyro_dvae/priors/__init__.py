# SPDX-License-Identifier: Apache-2.0
"""The DVAE zoo: build, list and load priors by name.

Example::

    from pyro_dvae import priors
    prior = priors.build("srnn", x_dim=4, z_dim=4, dense_dim=16, rnn_dim=16, z_dense=[16])
    prior.save("srnn.pt")
    same = priors.load("srnn.pt")
"""

import os

from .. import checks
from .base import DVAE, FORMAT, NORM_BUFFERS
from .deepar import DeepAR
from .distributions import SequentialNormal
from .dkf import DKF
from .dsae import DSAE
from .light import HiTDVAE, LigHTDVAE
from .mdvae import MDVAE, MDVAESizes
from .rvae import RVAE
from .srnn import SRNN
from .srnn_velocity import VelocitySRNN
from .storn import STORN
from .vae import VAE
from .vrnn import VRNN

_PRIORS = {
    "vae": (VAE, {}),
    "dkf": (DKF, {}),
    "storn": (STORN, {}),
    "vrnn": (VRNN, {}),
    "srnn": (SRNN, {}),
    "srnn-velocity": (VelocitySRNN, {}),
    "rvae": (RVAE, {"causal": True}),
    "rvae-noncausal": (RVAE, {"causal": False}),
    "dsae": (DSAE, {}),
    "deepar": (DeepAR, {}),
    "light-dvae": (LigHTDVAE, {}),
    "hit-dvae": (HiTDVAE, {}),
    "mdvae": (MDVAE, {}),
}
_BUILT_IN = frozenset(_PRIORS)

__all__ = ["DVAE", "SequentialNormal", "available", "build", "prior_class", "load", "load_checkpoint", "load_spectral",
           "register", "same_prior", "unregister",
           "VAE", "DKF", "STORN", "VRNN", "SRNN", "VelocitySRNN", "RVAE", "DSAE", "DeepAR",
           "LigHTDVAE", "HiTDVAE", "MDVAE", "MDVAESizes"]


def available(multimodal=True):
    """Names accepted by :func:`build`; ``multimodal=False``: the single-stream priors only (those the tracking,
    separation and enhancement models take), without MDVAE."""
    return [n for n in _PRIORS if multimodal or _PRIORS[n][0] is not MDVAE]


def prior_class(name):
    """The class behind a registered name."""
    if name not in _PRIORS:
        raise ValueError(f"unknown prior {name!r}; available: {', '.join(_PRIORS)}")
    return _PRIORS[name][0]


def register(name, cls, **fixed):
    """Add a prior class to the zoo under ``name``: :func:`build`, :func:`load` (checkpoints store the name),
    :func:`available` and ``pyro-dvae`` commands that take a prior file then know it.

    Example (``docs/priors/writing_a_prior.md``)::

        priors.register("frame-mlp", FrameMLP)
        prior = priors.build("frame-mlp", x_dim=4, z_dim=2)

    :param str name: the registry name; give the class the same ``name`` attribute.
    :param type cls: a :class:`DVAE` subclass, built as ``cls(x_dim, z_dim, **options)``.
    :param fixed: options the name fixes (as ``causal=False`` for ``"rvae-noncausal"``).
    :raises TypeError: if ``cls`` is not a :class:`DVAE` subclass.
    :raises ValueError: if the name is taken.
    """
    checks.new_entry("prior", _PRIORS, name, cls, DVAE)
    _PRIORS[name] = (cls, dict(fixed))


def unregister(name):
    """Remove a prior added with :func:`register` (the built-in ones stay)."""
    checks.remove_entry("prior", _PRIORS, name, _BUILT_IN)


def build(name, x_dim=None, z_dim=None, **sizes):
    """Build a prior by name.

    :param str name: one of :func:`available`.
    :param int x_dim: observation size (required, except for ``"mdvae"``, whose ``x_a_dim`` / ``x_v_dim``
        default to 513 power bins and 32 x 32 pixels).
    :param int z_dim: latent size (default 16; ``z_av_dim`` for MDVAE).
    :param sizes: ``emission``, ``dense_dim``, ``rnn_dim``, ``z_dense`` and model-specific options
        (``v_dim`` for DSAE; ``v_dim``, ``n_heads``, ``n_layers``, ``ff_dim`` for
        LigHT-/HiT-DVAE).
    """
    cls, fixed = prior_class(name), _PRIORS[name][1]
    if cls is not MDVAE:
        if x_dim is None:
            raise ValueError(f"prior {name!r} needs x_dim (the observation size)")
        z_dim = 16 if z_dim is None else z_dim
    for key, val in fixed.items():
        if key in sizes and sizes[key] != val:
            raise ValueError(f"prior {name!r} fixes {key}={val}")
        sizes[key] = val
    try:
        prior = cls(x_dim, z_dim, **sizes)
    except TypeError as e:
        raise ValueError(f"bad options for prior {name!r}: {e}") from None
    prior.name = name
    return prior


def same_prior(name, config, prior):
    """Whether a checkpoint's ``(name, config)`` describe ``prior``'s architecture; a config written before an
    option existed (the option then at its default) still matches."""
    if name != prior.name:
        return False
    if config == prior.config:
        return True
    try:
        config = dict(config)
        return build(name, config.pop("x_dim"), config.pop("z_dim"), **config).config == prior.config
    except (ValueError, KeyError):
        return False


def load_checkpoint(path):
    """Read and validate a checkpoint dictionary (``torch.load(weights_only=True)``)."""
    from ..checkpoint import read_torch_file

    if not os.path.exists(path):
        raise FileNotFoundError(f"no prior checkpoint at {path}")
    ckpt = read_torch_file(path, "pyro_dvae prior checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pyro_dvae prior checkpoint (missing format tag {FORMAT!r})")
    for key in ("prior", "config", "state_dict"):
        if key not in ckpt:
            raise ValueError(f"{path}: checkpoint lacks {key!r}")
    return ckpt


def load(path, map_location="cpu", expect=None):
    """Rebuild a prior saved with :meth:`DVAE.save`.

    :param str path: checkpoint file.
    :param map_location: device for the weights.
    :param str expect: optional prior name the file must hold; another class is a clear error.
    """
    ckpt = load_checkpoint(path)
    name = ckpt["prior"]
    if expect is not None and name != expect:
        raise ValueError(f"{path} holds a {name!r} prior, expected {expect!r}")
    config = dict(ckpt["config"])
    if config.get("emission") == "spectral":  # spectral checkpoints written before the option: raw output
        config.setdefault("spectral_output", "raw")
    prior = build(name, config.pop("x_dim"), config.pop("z_dim"), **config)
    state = dict(ckpt["state_dict"])
    for key in NORM_BUFFERS:  # checkpoints written before the normalisation buffers: identity
        if hasattr(prior, key):
            state.setdefault(key, getattr(prior, key))
    try:
        prior.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match a {name!r} prior with config {ckpt['config']}: {e}") from None
    return prior.to(map_location)


def load_spectral(path, sample_rate=16000, n_fft=1024, hop=256, task="this task"):
    """Load a spectral prior checkpoint, checking that it matches an STFT front end.

    Checkpoints may carry ``sample_rate``, ``n_fft`` and ``hop`` entries (``pyro-dvae train-prior`` writes them
    for audio); one without them is taken to use the package's front end (16 kHz, 1024, 256). Another value, a
    Gaussian (trajectory) prior or a prior of another number of bins than ``n_fft // 2 + 1`` is a
    :class:`ValueError` naming ``task``.
    """
    ckpt = load_checkpoint(path)
    for key, want in (("sample_rate", sample_rate), ("n_fft", n_fft), ("hop", hop)):
        if key in ckpt and int(ckpt[key]) != int(want):
            raise ValueError(f"{path}: prior trained with {key}={ckpt[key]}, but {task} uses {key}={want}")
    prior = load(path)
    if isinstance(prior, MDVAE):
        raise ValueError(f"{path}: an MDVAE models audio and video together; {task} takes a single-stream spectral "
                         "prior (e.g. pyro-dvae train-prior --model rvae --data SPEECH_DIR)")
    if prior.emission != "spectral":
        raise ValueError(f"{path}: a {prior.emission!r}-emission {prior.name} prior cannot model spectra; train it "
                         "on audio (emission 'spectral')")
    if prior.x_dim != n_fft // 2 + 1:
        raise ValueError(f"{path}: the prior models {prior.x_dim} frequency bins, an STFT of n_fft={n_fft} has "
                         f"{n_fft // 2 + 1} (expected x_dim={n_fft // 2 + 1})")
    return prior.eval()
