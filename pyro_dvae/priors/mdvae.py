# SPDX-License-Identifier: Apache-2.0
"""MDVAE: the multimodal dynamical VAE of audiovisual speech (static ``w``, dynamics ``z_av``, ``z_a``, ``z_v``).

Two synchronised streams, audio ``x_a`` (a power spectrum, or features) and visual ``x_v`` (pixels or
features), share a static latent ``w`` (speaker identity, global emotion) and a dynamical latent ``z_av``
(lips <-> phonemes); ``z_a`` and ``z_v`` hold the dynamics of one modality each (head pose, blinks):

- generative model: ``p(w) = N(0, I)``; ``p(z_av_t | z_av_{<t})``, ``p(z_a_t | z_a_{<t})``, ``p(z_v_t |
  z_v_{<t})``, each a GRU over the previous latents and an MLP to a diagonal Gaussian (they do not read ``w``);
  ``p(x_a_t | w, z_av_t, z_a_t)`` and ``p(x_v_t | w, z_av_t, z_v_t)`` frame-wise MLPs: the audio emission never
  reads ``z_v``, the visual one never reads ``z_a`` (tested with gradients);
- inference: ``q(w | x_a, x_v)`` a bidirectional GRU over the two frame embeddings, its last states (or, with
  ``w_pool="mean"``, its outputs averaged over time) through an MLP; ``q(z_av_t | z_av_{<t}, x_a_t, x_v_t, w)``,
  ``q(z_a_t | z_a_{<t}, x_a_t, z_av_t, w)``, ``q(z_v_t | z_v_{<t}, x_v_t, z_av_t, w)``: MLPs on the prior GRU's
  state (driven by the posterior samples) and the current frames, a filtering posterior (no future frame);
- ``w_beta`` weighs the KL of ``w`` (1: the ELBO);
- the ELBO has analytic per-step KLs (:class:`~pyro_dvae.priors.distributions.SequentialNormal`).

**Data layout.** The zoo's training engine handles one observation tensor, so a sequence is the per-step
concatenation ``[x_a_t, x_v_t]`` (``x_dim = x_a_dim + x_v_dim``); the Pyro model splits it and observes the two
sites ``x_a`` and ``x_v``. Emissions: ``audio_emission="spectral"`` (``x_a`` power, ``|X|^2 ~ Exponential(mean
v)``, the zoo's) or ``"gaussian"`` (features); the visual emission is Gaussian with a learnt variance per pixel
or feature. The two-stage design of the reference (a frame-wise feature model per modality first, MDVAE on its
features) is MDVAE with Gaussian emissions on the features of a frame-wise model, e.g. the zoo's ``vae``.

Sizes default to the reference code's: ``w`` 84, ``z_av`` 16, ``z_a`` 8, ``z_v`` 4, GRUs of 128, the
``q(w)`` BiGRU 256 per direction, MLPs of ``dense_dim`` 256; ``priors.build("mdvae")`` gives a 513-bin audio,
32 x 32 visual model.

**References:**

[1] S. Sadok, S. Leglaive, L. Girin, X. Alameda-Pineda, R. Séguier (2024), "A multimodal dynamical variational
    autoencoder for audiovisual speech representation learning", Neural Networks 172 (code:
    ``samsad35/code-mdvae``, CC-BY-4.0).
"""

import dataclasses
from dataclasses import dataclass
from typing import Optional

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.nn import PyroModule
from torch import nn

from .base import SPECTRAL_FLOOR, batch_plates, checkpoint_dict, save_checkpoint
from .distributions import SequentialNormal


def _mlp(i, h, o):
    return nn.Sequential(nn.Linear(i, h), nn.Tanh(), nn.Linear(h, o))


class _Dynamics(nn.Module):
    """``p(z_t | z_{<t})``: a GRU over ``z_{t-1}`` (``z_0 = 0``), an MLP to ``(loc, scale)``."""

    def __init__(self, z_dim, rnn_dim, dense_dim):
        super().__init__()
        self.gru = nn.GRU(z_dim, rnn_dim, batch_first=True)
        self.head = _mlp(rnn_dim, dense_dim, 2 * z_dim)

    def states(self, z):
        """GRU states ``h_t`` summarising ``z_{<t}`` for every ``t`` (teacher forcing), ``(..., T, rnn_dim)``."""
        past = torch.cat([torch.zeros_like(z[..., :1, :]), z[..., :-1, :]], -2)
        flat = past.reshape(-1, *past.shape[-2:])
        h, _ = self.gru(flat)
        return h.reshape(*z.shape[:-1], -1)

    def params(self, h):
        loc, raw = self.head(h).chunk(2, -1)
        return loc, nn.functional.softplus(raw) + 1e-4


@dataclass(frozen=True)
class MDVAESizes:
    """The layer sizes of an :class:`MDVAE` (defaults: the reference code's). ``x_a_dim`` and ``z_av_dim`` may
    also come as the zoo's ``x_dim`` / ``z_dim`` (``None`` here: 513 and 16 unless those are given).

    :param int x_a_dim: audio features per frame (513 power bins).
    :param int x_v_dim: visual features per frame (32 x 32 pixels).
    :param int w_dim: static latent ``w``.
    :param int z_av_dim: shared dynamical latent ``z_av``.
    :param int z_a_dim: audio-only dynamical latent ``z_a``.
    :param int z_v_dim: visual-only dynamical latent ``z_v``.
    :param int rnn_dim: the dynamics GRUs.
    :param int w_rnn_dim: the ``q(w)`` BiGRU, per direction.
    :param int dense_dim: the MLPs.
    """

    x_a_dim: Optional[int] = None
    x_v_dim: int = 1024
    w_dim: int = 84
    z_av_dim: Optional[int] = None
    z_a_dim: int = 8
    z_v_dim: int = 4
    rnn_dim: int = 128
    w_rnn_dim: int = 256
    dense_dim: int = 256


class MDVAE(PyroModule):
    """The multimodal DVAE (see the module docstring).

    :param int x_dim: ``x_a_dim`` (kept for the zoo's ``build(name, x_dim, z_dim)``; ``None``: ``x_a_dim``).
    :param int z_dim: ``z_av_dim`` (likewise).
    :param MDVAESizes sizes: the layer sizes; the keyword arguments ``size_options`` (``x_a_dim``, ``x_v_dim``,
        ``w_dim``, ``z_av_dim``, ``z_a_dim``, ``z_v_dim``, ``rnn_dim``, ``w_rnn_dim``, ``dense_dim``: the fields of
        :class:`MDVAESizes`, which is how :attr:`config` and checkpoints give them) replace single fields.
    :param str audio_emission: ``"spectral"`` or ``"gaussian"``.
    :param float zv_center: training only: the probability, per sequence, that the visual decoder reads ``z_v``
        minus its temporal mean (``0``: never, the reference's model). A constant in ``z_v`` then cannot carry the
        face's static appearance, which is left to ``w``; at evaluation the decoder reads ``z_v`` as it is. The
        default was chosen on the dev speakers of ``tests/benchmarks/mdvae_av.py`` (BENCHMARKS.md).
    """

    name = "mdvae"
    autoregressive = False
    decoder_reads_x = False
    latent_sites = ("w", "z_av", "z_a", "z_v")
    emission = "multimodal"  # not a single spectral / gaussian stream (no gain augmentation)

    def __init__(self, x_dim=None, z_dim=None, *, sizes=None, audio_emission="spectral", w_pool="last", w_beta=1.0,
                 zv_center=0.5, **size_options):
        super().__init__()
        sizes = dataclasses.replace(sizes if sizes is not None else MDVAESizes(), **size_options)
        for alias, value, own in (("x_dim", x_dim, "x_a_dim"), ("z_dim", z_dim, "z_av_dim")):
            given = getattr(sizes, own)
            if value is not None and given is not None and int(value) != int(given):
                raise ValueError(f"{alias}={value} and {own}={given} name the same size differently")
        x_a_dim = int(x_dim if x_dim is not None else (sizes.x_a_dim if sizes.x_a_dim is not None else 513))
        z_av_dim = int(z_dim if z_dim is not None else (sizes.z_av_dim if sizes.z_av_dim is not None else 16))
        sizes = dataclasses.asdict(dataclasses.replace(sizes, x_a_dim=x_a_dim, z_av_dim=z_av_dim))
        for key, val in sizes.items():
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"{key} must be a positive int, got {val!r}")
        if audio_emission not in ("spectral", "gaussian"):
            raise ValueError(f"audio_emission must be 'spectral' or 'gaussian', got {audio_emission!r}")
        if w_pool not in ("last", "mean"):
            raise ValueError(f"w_pool must be 'last' or 'mean', got {w_pool!r}")
        if not float(w_beta) > 0:
            raise ValueError(f"w_beta must be positive, got {w_beta!r}")
        if isinstance(zv_center, bool) or not 0.0 <= float(zv_center) <= 1.0:
            raise ValueError(f"zv_center must be a probability in [0, 1], got {zv_center!r}")
        self.zv_center = float(zv_center)
        self.sizes, self.audio_emission, self.w_pool, self.w_beta = sizes, audio_emission, w_pool, float(w_beta)
        for k, v in sizes.items():
            setattr(self, k, v)
        x_v_dim, w_dim, z_a_dim, z_v_dim = self.x_v_dim, self.w_dim, self.z_a_dim, self.z_v_dim
        rnn_dim, w_rnn_dim, dense_dim = self.rnn_dim, self.w_rnn_dim, self.dense_dim
        self.x_dim, self.z_dim = x_a_dim + x_v_dim, z_av_dim
        d = dense_dim
        self.register_buffer("x_loc", torch.zeros(self.x_dim))
        self.register_buffer("x_scale", torch.ones(self.x_dim))
        # inference
        self.enc_a, self.enc_v = _mlp(x_a_dim, d, d), _mlp(x_v_dim, d, d)
        self.w_rnn = nn.GRU(2 * d, w_rnn_dim, batch_first=True, bidirectional=True)
        self.q_w = _mlp(2 * w_rnn_dim, d, 2 * w_dim)
        self.q_av = _mlp(rnn_dim + 2 * d + w_dim, d, 2 * z_av_dim)
        self.q_a = _mlp(rnn_dim + d + z_av_dim + w_dim, d, 2 * z_a_dim)
        self.q_v = _mlp(rnn_dim + d + z_av_dim + w_dim, d, 2 * z_v_dim)
        # generative
        self.p_av = _Dynamics(z_av_dim, rnn_dim, d)
        self.p_a = _Dynamics(z_a_dim, rnn_dim, d)
        self.p_v = _Dynamics(z_v_dim, rnn_dim, d)
        self.dec_a = _mlp(w_dim + z_av_dim + z_a_dim, d, x_a_dim)
        self.dec_v = _mlp(w_dim + z_av_dim + z_v_dim, d, x_v_dim)
        self.a_logvar = nn.Parameter(torch.zeros(x_a_dim))  # Gaussian audio features only
        self.v_logvar = nn.Parameter(torch.full((x_v_dim,), -2.0))

    # ------------------------------------------------------------------ contract of the zoo
    @property
    def config(self):
        return {"x_dim": self.x_a_dim, "z_dim": self.z_av_dim, **{k: v for k, v in self.sizes.items()
                                                                   if k not in ("x_a_dim", "z_av_dim")},
                "audio_emission": self.audio_emission, "w_pool": self.w_pool, "w_beta": self.w_beta,
                "zv_center": self.zv_center}

    @property
    def is_normalised(self):
        return not (bool((self.x_loc == 0).all()) and bool((self.x_scale == 1).all()))

    def _raw_features(self, x):
        xa, xv = x[..., :self.x_a_dim], x[..., self.x_a_dim:]
        if self.audio_emission == "spectral":
            xa = torch.log(xa + SPECTRAL_FLOOR)
        return torch.cat([xa, xv], -1)

    @torch.no_grad()
    def fit_normalisation(self, x, mask=None):
        """Per-feature standardisation of the encoder inputs (log power for spectral audio) from training data."""
        x = torch.as_tensor(x, dtype=self.x_loc.dtype, device=self.x_loc.device)
        f = self._raw_features(x)
        f = f[mask.bool()] if mask is not None else f.reshape(-1, f.shape[-1])
        self.x_loc.copy_(f.mean(0))
        scale = f.std(0)
        self.x_scale.copy_(scale.clamp_min(1e-3 * float(scale.max().clamp_min(1e-12))))
        # the visual decoder starts at the mean frame
        self.dec_v[-1].bias.copy_(self.x_loc[self.x_a_dim:])
        return self

    def checkpoint(self, **extra):
        return checkpoint_dict(self, **extra)

    def save(self, path, **extra):
        """Weights + config, atomically; :func:`pyro_dvae.priors.load` rebuilds the model."""
        save_checkpoint(self.checkpoint(**extra), path)

    # ------------------------------------------------------------------ pieces
    def _prepare(self, x, mask):
        if not torch.is_tensor(x) or x.dim() < 2 or x.shape[-1] != self.x_dim:
            raise ValueError(f"x must be shaped (*batch, T, {self.x_dim}) = [x_a ({self.x_a_dim}), x_v "
                             f"({self.x_v_dim})] per step; got {tuple(getattr(x, 'shape', ()))}")
        if mask is not None:
            mask = torch.as_tensor(mask, device=x.device).bool()
            if mask.shape != x.shape[:-1]:
                raise ValueError(f"mask must be shaped {tuple(x.shape[:-1])}, got {tuple(mask.shape)}")
            x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf at unmasked steps")
        if self.audio_emission == "spectral" and (x[..., :self.x_a_dim] < 0).any():
            raise ValueError("spectral audio: x_a must be a non-negative power spectrum")
        return x, mask

    def _embed(self, x):
        f = (self._raw_features(x) - self.x_loc) / self.x_scale
        return self.enc_a(f[..., :self.x_a_dim]), self.enc_v(f[..., self.x_a_dim:])

    def _q_w(self, ea, ev, mask):
        h_in = torch.cat([ea, ev], -1)
        flat = h_in.reshape(-1, *h_in.shape[-2:])
        out, _ = self.w_rnn(flat)
        out = out.reshape(*h_in.shape[:-1], -1)
        half = self.w_rnn_dim
        if self.w_pool == "mean":  # the BiGRU outputs averaged over the valid steps
            if mask is None:
                pooled = out.mean(-2)
            else:
                m = mask.unsqueeze(-1).to(out.dtype)
                pooled = (out * m).sum(-2) / m.sum(-2).clamp_min(1)
            loc, raw = self.q_w(pooled).chunk(2, -1)
            return loc, nn.functional.softplus(raw) + 1e-4
        if mask is None:
            fwd, bwd = out[..., -1, :half], out[..., 0, half:]
        else:  # the forward state at the last valid step
            last = (mask.sum(-1) - 1).clamp_min(0)
            fwd = out[..., :half].gather(-2, last[..., None, None].expand(*last.shape, 1, half)).squeeze(-2)
            bwd = out[..., 0, half:]
        loc, raw = self.q_w(torch.cat([fwd, bwd], -1)).chunk(2, -1)
        return loc, nn.functional.softplus(raw) + 1e-4

    @staticmethod
    def _filter(dyn, q_net, inputs, like, eps):
        """Draw ``z`` step by step from the filtering posterior: ``q(z_t | h_t, inputs_t)`` with ``h_t`` the
        prior GRU's state after ``z_{<t}``; returns ``(z, loc, scale)``."""
        flat_in = inputs.reshape(-1, *inputs.shape[-2:])
        flat_eps = eps.reshape(-1, *eps.shape[-2:])
        n, T = flat_in.shape[:2]
        h = flat_in.new_zeros(1, n, dyn.gru.hidden_size)
        z_prev = flat_in.new_zeros(n, 1, like.shape[-1])
        zs, locs, scales = [], [], []
        for t in range(T):
            out, h = dyn.gru(z_prev, h)
            loc, raw = q_net(torch.cat([out[:, 0], flat_in[:, t]], -1)).chunk(2, -1)
            scale = nn.functional.softplus(raw) + 1e-4
            z = loc + scale * flat_eps[:, t]
            zs.append(z)
            locs.append(loc)
            scales.append(scale)
            z_prev = z[:, None]
        shape = like.shape
        return tuple(torch.stack(v, 1).reshape(shape) for v in (zs, locs, scales))

    def _posterior(self, q_net, dyn, inputs, like):
        """The filtering posterior as one :class:`SequentialNormal` site."""

        def params_fn(z):  # teacher forcing on a given path: h_t from z_{<t}
            h = dyn.states(z)
            loc, raw = q_net(torch.cat([h, inputs], -1)).chunk(2, -1)
            return loc, nn.functional.softplus(raw) + 1e-4

        return SequentialNormal(params_fn, like, lambda eps: self._filter(dyn, q_net, inputs, like, eps))

    @staticmethod
    def _dynamics_prior(dyn, like):
        return SequentialNormal(lambda z: dyn.params(dyn.states(z)), like)

    @staticmethod
    def _steps(d, mask):
        return (d.mask(mask) if mask is not None else d).to_event(1)

    def emissions(self, w, z_av, z_a, z_v):
        """``(audio (mean, var), visual (mean, var))`` per step: ``x_a`` from ``[w, z_av, z_a]``, ``x_v`` from
        ``[w, z_av, z_v]``."""
        T = z_av.shape[-2]
        wt = w.unsqueeze(-2).expand(*w.shape[:-1], T, w.shape[-1])
        out_a = self.dec_a(torch.cat([wt, z_av, z_a], -1))
        if self.audio_emission == "spectral":
            v = torch.exp(out_a + self.x_loc[:self.x_a_dim])  # log-power around the training mean
            audio = (v, v)
        else:
            audio = (out_a, torch.exp(self.a_logvar).expand_as(out_a))
        if self.training and self.zv_center > 0:  # z_v's temporal mean hidden from a share of the training sequences
            pick = torch.rand(*z_v.shape[:-2], 1, 1, device=z_v.device) < self.zv_center
            z_v = torch.where(pick, z_v - z_v.mean(-2, keepdim=True), z_v)
        mean_v = self.dec_v(torch.cat([wt, z_av, z_v], -1))
        return audio, (mean_v, torch.exp(self.v_logvar).expand_as(mean_v))

    # ------------------------------------------------------------------ Pyro model / guide
    def model(self, x, mask=None, ss_prob=0.0, plates=None):
        """``p(w) p(z_av) p(z_a) p(z_v) p(x_a | w, z_av, z_a) p(x_v | w, z_av, z_v)`` (``ss_prob`` ignored)."""
        x, mask = self._prepare(x, mask)
        batch, T = x.shape[:-2], x.shape[-2]
        with batch_plates(batch, plates):
            with poutine.scale(scale=self.w_beta):
                w = pyro.sample("w", dist.Normal(x.new_zeros(*batch, self.w_dim), 1.0).to_event(1))
            zs = {}
            for name, dyn, dim in (("z_av", self.p_av, self.z_av_dim), ("z_a", self.p_a, self.z_a_dim),
                                   ("z_v", self.p_v, self.z_v_dim)):
                d = self._dynamics_prior(dyn, x.new_zeros(*batch, T, dim))
                zs[name] = pyro.sample(name, self._steps(d, mask))
                d.bind(zs[name])
            (ma, va), (mv, vv) = self.emissions(w, zs["z_av"], zs["z_a"], zs["z_v"])
            xa, xv = x[..., :self.x_a_dim], x[..., self.x_a_dim:]
            da = dist.Exponential(1.0 / va).to_event(1) if self.audio_emission == "spectral" else \
                dist.Normal(ma, va.sqrt()).to_event(1)
            pyro.sample("x_a", self._steps(da, mask), obs=xa)
            pyro.sample("x_v", self._steps(dist.Normal(mv, vv.sqrt()).to_event(1), mask), obs=xv)

    def guide(self, x, mask=None, ss_prob=0.0, plates=None):
        """``q(w | x_a, x_v) q(z_av | ...) q(z_a | ...) q(z_v | ...)`` (filtering, module docstring)."""
        x, mask = self._prepare(x, mask)
        batch, T = x.shape[:-2], x.shape[-2]
        ea, ev = self._embed(x)
        with batch_plates(batch, plates):
            loc, scale = self._q_w(ea, ev, mask)
            with poutine.scale(scale=self.w_beta):
                w = pyro.sample("w", dist.Normal(loc, scale).to_event(1))
            wt = w.unsqueeze(-2).expand(*batch, T, self.w_dim)
            q = self._posterior(self.q_av, self.p_av, torch.cat([ea, ev, wt], -1), x.new_zeros(*batch, T,
                                                                                             self.z_av_dim))
            z_av = pyro.sample("z_av", self._steps(q, mask))
            q.bind(z_av)
            for name, net, dyn, emb, dim in (("z_a", self.q_a, self.p_a, ea, self.z_a_dim),
                                             ("z_v", self.q_v, self.p_v, ev, self.z_v_dim)):
                q = self._posterior(net, dyn, torch.cat([emb, z_av, wt], -1), x.new_zeros(*batch, T, dim))
                q.bind(pyro.sample(name, self._steps(q, mask)))

    # ------------------------------------------------------------------ analysis / synthesis
    @torch.no_grad()
    def encode(self, x, mask=None):
        """Posterior means: ``{"w": (*batch, w_dim), "z_av", "z_a", "z_v": (*batch, T, dim)}`` (the filtering
        posteriors drawn with zero noise)."""
        x, mask = self._prepare(x, mask)
        batch, T = x.shape[:-2], x.shape[-2]
        ea, ev = self._embed(x)
        w = self._q_w(ea, ev, mask)[0]
        wt = w.unsqueeze(-2).expand(*batch, T, self.w_dim)
        zero = lambda dim: x.new_zeros(*batch, T, dim)  # noqa: E731
        z_av = self._filter(self.p_av, self.q_av, torch.cat([ea, ev, wt], -1), zero(self.z_av_dim),
                            zero(self.z_av_dim))[0]
        z_a = self._filter(self.p_a, self.q_a, torch.cat([ea, z_av, wt], -1), zero(self.z_a_dim),
                           zero(self.z_a_dim))[0]
        z_v = self._filter(self.p_v, self.q_v, torch.cat([ev, z_av, wt], -1), zero(self.z_v_dim),
                           zero(self.z_v_dim))[0]
        return {"w": w, "z_av": z_av, "z_a": z_a, "z_v": z_v}

    @torch.no_grad()
    def decode(self, latents):
        """``(audio mean, visual mean)`` per step from a dict of latents (:meth:`encode`'s)."""
        (ma, _), (mv, _) = self.emissions(latents["w"], latents["z_av"], latents["z_a"], latents["z_v"])
        return ma, mv
