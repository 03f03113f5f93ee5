# SPDX-License-Identifier: Apache-2.0
"""Checkpoints of trained (U-ND) noise models, tied to the speech prior and front end they were trained for.

A noise checkpoint holds the noise model (name, config, weights), the fine-tuned speech *encoder* weights
that were trained with it, the identity of the speech prior (its name, config and a SHA-256 of its
weights: :func:`prior_fingerprint`) and the STFT front end (``sample_rate``, ``n_fft``, ``hop``). Loading
it for another prior or front end is a :class:`ValueError` (:class:`PriorMismatchError` for the prior): a noise
model explains what *that* prior's decoder leaves unexplained, and its weights mean nothing for another one.
Files are written atomically and load with ``torch.load(weights_only=True)``.
"""

import hashlib
import os

import torch

from pyro_dvae.priors.base import save_checkpoint

from ..checkpoint import read_torch_file

FORMAT = "pyro_dvae.noise"
FORMAT_VERSION = 1


class PriorMismatchError(ValueError):
    """A noise checkpoint trained for another speech prior than the one given."""


def prior_fingerprint(prior):
    """``{"name", "config", "sha256"}`` identifying a prior: the SHA-256 runs over its state dict (names,
    shapes and float64 values, in sorted key order), so any change of a weight or buffer changes it."""
    h = hashlib.sha256()
    for key, val in sorted(prior.state_dict().items()):
        val = val.detach().to("cpu", torch.float64).contiguous()
        h.update(key.encode())
        h.update(str(tuple(val.shape)).encode())
        h.update(val.numpy().tobytes())
    return {"name": prior.name, "config": prior.config, "sha256": h.hexdigest()}


def save_noise(path, noise, prior, encoder_state, sample_rate, n_fft, hop, **extra):
    """Write a noise checkpoint (module docstring); ``prior`` is the speech prior as loaded (not fine-tuned),
    ``encoder_state`` the fine-tuned encoder weights by parameter name."""
    state = {k: v.detach().cpu() for k, v in noise.state_dict().items()}
    enc = {k: v.detach().cpu() for k, v in encoder_state.items()}
    for name, tensors in (("noise", state), ("encoder", enc)):
        for k, v in tensors.items():
            if not torch.isfinite(v).all():
                raise FloatingPointError(f"refusing to checkpoint a non-finite {name} parameter: {k}")
    ckpt = {"format": FORMAT, "version": FORMAT_VERSION, "noise": noise.name, "config": noise.config,
            "state_dict": state, "encoder_state": enc, "speech_prior": prior_fingerprint(prior),
            "sample_rate": int(sample_rate), "n_fft": int(n_fft), "hop": int(hop), **extra}
    save_checkpoint(ckpt, path)


def load_noise_checkpoint(path, prior=None, sample_rate=None, n_fft=None, hop=None):
    """Read and validate a noise checkpoint; with ``prior`` (and the front-end values), check that it was
    trained for exactly that prior and front end. Returns the checkpoint dictionary."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no noise checkpoint at {path}")
    ckpt = read_torch_file(path, "pyro_dvae noise checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        hint = " (it is a speech prior checkpoint)" if isinstance(ckpt, dict) and "prior" in ckpt else ""
        raise ValueError(f"{path} is not a pyro_dvae noise checkpoint{hint}")
    for key in ("noise", "config", "state_dict", "encoder_state", "speech_prior", "sample_rate", "n_fft", "hop"):
        if key not in ckpt:
            raise ValueError(f"{path}: noise checkpoint lacks {key!r}")
    for key, want in (("sample_rate", sample_rate), ("n_fft", n_fft), ("hop", hop)):
        if want is not None and int(ckpt[key]) != int(want):
            raise ValueError(f"{path}: noise model trained with {key}={ckpt[key]}, but the input uses {key}={want}")
    if prior is not None:
        have, want = ckpt["speech_prior"], prior_fingerprint(prior)
        if have["name"] != want["name"] or have["config"] != want["config"]:
            raise PriorMismatchError(f"{path}: noise model trained for a {have['name']!r} speech prior with "
                                     f"config {have['config']}, not for this {want['name']!r} prior with config "
                                     f"{want['config']}")
        if have["sha256"] != want["sha256"]:
            raise PriorMismatchError(f"{path}: noise model trained for another speech prior (same architecture, "
                                     f"different weights: sha256 {have['sha256'][:12]} vs {want['sha256'][:12]}); "
                                     "train it again with this prior (pyro-dvae train-noise)")
    return ckpt
