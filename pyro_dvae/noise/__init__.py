# SPDX-License-Identifier: Apache-2.0
"""Noise variance models for speech enhancement ``x = s + n``, ``n_ft ~ CN(0, v_n,ft)``.

- ``nmf``: ``v_n = W H`` fitted per utterance by multiplicative IS-NMF updates (RVAE-VEM [1, 2]);
- ``lv``: ``v_n`` from the speech latents ``z`` through a recurrent network [3];
- ``no``: ``v_n`` from the past noisy observations ``x_{1:t-1}`` through a causal LSTM [3];
- ``nolv``: both [3].

Example::

    from pyro_dvae import noise
    noise.available()                                  # ['nmf', 'lv', 'no', 'nolv']
    model = noise.build("nolv", num_bins=513, z_dim=16)
    v_n = model.variance(power, z)                     # (B, T, F)

**References:**

[1] S. Leglaive, X. Alameda-Pineda, L. Girin, R. Horaud (2020), "A Recurrent Variational Autoencoder for
    Speech Enhancement", ICASSP.
[2] X. Bie, S. Leglaive, X. Alameda-Pineda, L. Girin (2022), "Unsupervised Speech Enhancement Using
    Dynamical Variational Autoencoders", IEEE/ACM TASLP 30.
[3] X. Lin, S. Leglaive, L. Girin, X. Alameda-Pineda (2023), "Unsupervised Speech Enhancement with Deep
    Dynamical Generative Speech and Noise Models", Interspeech.
"""

from .. import checks
from .base import NoiseModel, exponential_quantile, log_power, noise_anchor
from .checkpoint import FORMAT, PriorMismatchError, load_noise_checkpoint, prior_fingerprint, save_noise
from .deep import DeepNoise, LVNoise, NOLVNoise, NONoise
from .nmf import NMFNoise

_NOISE = {"nmf": NMFNoise, "lv": LVNoise, "no": NONoise, "nolv": NOLVNoise}
_BUILT_IN = frozenset(_NOISE)

__all__ = ["FORMAT", "DeepNoise", "LVNoise", "NMFNoise", "NOLVNoise", "NONoise", "NoiseModel", "PriorMismatchError",
           "available", "build", "exponential_quantile", "from_checkpoint", "get", "load_noise_checkpoint",
           "log_power", "noise_anchor", "prior_fingerprint", "register", "save_noise", "unregister"]


def available():
    """Names accepted by :func:`build` (the built-in models, then those added by :func:`register`)."""
    return list(_NOISE)


def register(name, cls):
    """Add a noise model class under ``name``: :func:`build`, :func:`from_checkpoint`, :func:`available` and the
    enhancement settings (:class:`~pyro_dvae.models.enhancement.EnhanceConfig` ``noise=name``, hence
    :func:`~pyro_dvae.models.enhancement.enhance`) then know it.

    Example (``docs/tutorials/writing_a_noise_model.py``)::

        noise.register("stationary", StationaryNoise)
        out = enhance(noisy, prior, noise="stationary", num_iters=40)

    :param str name: the registry name; give the class the same ``name`` attribute.
    :param type cls: a :class:`NoiseModel` subclass, built as ``cls(num_bins, **options)``. With ``deep = True``
        its parameters are fitted by SVI with the speech encoder (:func:`~pyro_dvae.models.enhancement.fit_svi`,
        ``mode="una"``); the built-in ``nmf`` alone runs by variational EM.
    :raises TypeError: if ``cls`` is not a :class:`NoiseModel` subclass.
    :raises ValueError: if the name is taken, or differs from ``cls.name``.
    """
    checks.new_entry("noise model", _NOISE, name, cls, NoiseModel)
    if cls.name != name:
        raise ValueError(f"{cls.__name__}.name is {cls.name!r}: set it to the registry name {name!r}")
    _NOISE[name] = cls


def unregister(name):
    """Remove a noise model added with :func:`register` (the built-in ones stay)."""
    checks.remove_entry("noise model", _NOISE, name, _BUILT_IN)


def get(name):
    """The noise model class registered as ``name``."""
    if name not in _NOISE:
        raise ValueError(f"unknown noise model {name!r}; available: {', '.join(_NOISE)}")
    return _NOISE[name]


def build(name, num_bins, **options):
    """Build a noise model by name (``options``: ``rank``, ``seed`` for ``nmf``; ``z_dim``, ``rnn_dim``,
    ``dense_dim``, ``quantile`` for the deep models; those of its class for a :func:`register` ed one)."""
    cls = get(name)
    try:
        return cls(num_bins, **options)
    except TypeError as e:
        raise ValueError(f"bad options for noise model {name!r}: {e}") from None


def from_checkpoint(ckpt):
    """Rebuild the noise model stored in a checkpoint dictionary (:func:`load_noise_checkpoint`)."""
    config = dict(ckpt["config"])
    model = build(ckpt["noise"], config.pop("num_bins"), **config)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"noise weights do not match a {ckpt['noise']!r} model with config {ckpt['config']}: {e}") \
            from None
    return model
