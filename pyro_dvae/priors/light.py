# SPDX-License-Identifier: Apache-2.0
"""LigHT-DVAE and HiT-DVAE: Transformer DVAEs with a sequence-level latent.

Latents: one sequence-level vector ``w`` (Pyro site ``v``, the zoo's name for a static latent, size
``v_dim``; :meth:`~pyro_dvae.priors.base.DVAE.latent_sequence`, the training loop and the contract tests
know static latents by that name) and one ``z_t`` per frame.

- Generative: ``p(w) = N(0, I)``; ``p(z_t | s_{<t}, z_{<t}, w)`` and ``p(s_t | s_{<t}, z_{<=t}, w)``, both
  from causal Transformer decoders (post-LayerNorm ``nn.TransformerDecoderLayer``: causal self-attention
  over the ``[z, w]`` query stream, causal cross-attention to a memory made of the embedding of ``s``
  shifted right (``s_0 = 0``), feed-forward). The emission decoder reads ``z_{1:T}``, the z-prior decoder
  ``z_{0:T-1}`` (``z_0 = 0``). **LigHT-DVAE** uses *one* decoder for both (with its own output head each);
  **HiT-DVAE** has two separate decoders.
- Inference: ``q(w | s)`` from a bidirectional LSTM summary (as DSAE's ``q(v | x)``), ``q(z_t | s_{1:T}, w)``
  from a non-causal post-LN Transformer encoder over ``[phi(s_t), w]`` plus sinusoidal positions (padded
  steps are masked out of the attention); ``q(z)`` does not read ``z_{<t}``.
- The decoder is autoregressive in ``s``. The paper trains it with teacher forcing (``ss_prob = 0``,
  ``TrainConfig(ss_max=0)`` / ``train-prior --ss-max 0``); the zoo's parallel scheduled sampling is honoured
  when ``ss_prob > 0``, and ``train-prior`` uses it by default (chosen on the dev speakers by the resynthesis
  SI-SDR with the model's own past: BENCHMARKS.md). :meth:`decode_stepwise` runs the causal decoder one step
  at a time with a key / value cache (``CausalDecoder.step``), which gives the teacher-forced values on the
  same path.

Default sizes (not published; small): ``dense_dim=128`` (the Transformer width ``d_model`` and the size of
the input embedding ``phi``), ``n_heads=4``, ``n_layers=2`` (encoder layers, and layers per decoder),
``ff_dim=256``, ``rnn_dim=64`` (the ``q(w)`` LSTM), ``v_dim=16``, no dropout. ``z_dense`` is unused.

**References:**

[1] X. Lin, X. Bie, S. Leglaive, L. Girin, X. Alameda-Pineda (2023), "Speech Modeling with a Hierarchical
    Transformer Dynamical VAE", ICASSP (HiT-DVAE); LigHT-DVAE: the light-weight variant sharing one decoder.
"""

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_dvae.smoothing import scale_dynamics_var, warn_uncalibrated

from .base import DVAE, Emission
from .distributions import SequentialNormal
from .nn import BiSeqLSTM, GaussianHead, shift_right


def sinusoidal_positions(T, d, like):
    """``(T, d)`` sinusoidal position encodings (Vaswani et al. 2017)."""
    pos = torch.arange(T, dtype=like.dtype, device=like.device)[:, None]
    i = torch.arange(0, d, 2, dtype=like.dtype, device=like.device)
    angle = pos * torch.exp(-math.log(10000.0) * i / d)
    pe = like.new_zeros(T, d)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)[:, : d // 2]
    return pe


def causal_mask(T, device):
    """Boolean ``(T, T)`` mask, True where attention is forbidden (future positions)."""
    return torch.triu(torch.ones(T, T, dtype=torch.bool, device=device), diagonal=1)


def _flat(x):
    return x.reshape(-1, *x.shape[-2:])


class CausalDecoder(nn.Module):
    """Queries from a ``[z, w]`` stream, memory from ``phi(s)`` shifted right; causal self- and
    cross-attention (``tgt_mask`` and ``memory_mask``), post-LayerNorm layers."""

    def __init__(self, in_dim, d_model, n_heads, n_layers, ff_dim):
        super().__init__()
        self.q_in = nn.Linear(in_dim, d_model)
        self.mem_in = nn.Linear(d_model, d_model)
        layer = nn.TransformerDecoderLayer(d_model, n_heads, ff_dim, dropout=0.0, batch_first=True,
                                           norm_first=False)
        self.layers = nn.TransformerDecoder(layer, n_layers)
        self.d_model = d_model

    def forward(self, zw, fx_shifted):
        """``zw (*batch, T, in_dim)``, ``fx_shifted (*batch, T, d_model)`` -> ``(*batch, T, d_model)``."""
        batch, T = zw.shape[:-2], zw.shape[-2]
        pe = sinusoidal_positions(T, self.d_model, zw)
        tgt = self.q_in(_flat(zw)) + pe
        mem = self.mem_in(_flat(fx_shifted)) + pe
        mask = causal_mask(T, zw.device)
        out = self.layers(tgt, mem, tgt_mask=mask, memory_mask=mask)
        return out.reshape(*batch, T, self.d_model)

    def step(self, zw_t, fx_prev, cache, t, pe):
        """Output at position ``t`` alone, given the earlier positions' keys and values in ``cache`` (a dict,
        empty at ``t = 0``, updated in place): ``zw_t (B, in_dim)``, ``fx_prev (B, d_model)`` (the memory at
        ``t``: ``phi(s_{t-1})``, zeros at ``t = 0``), ``pe`` the position table. The same numbers as
        :meth:`forward` on the prefix (causal masks), at O(t) cost instead of a pass over the prefix."""
        x = (self.q_in(zw_t) + pe[t]).unsqueeze(1)
        m = (self.mem_in(fx_prev) + pe[t]).unsqueeze(1)
        cache["mem"] = mem = m if t == 0 else torch.cat([cache["mem"], m], 1)
        for i, layer in enumerate(self.layers.layers):  # post-LN TransformerDecoderLayer, dropout 0
            cache[i] = keys = x if t == 0 else torch.cat([cache[i], x], 1)
            x = layer.norm1(x + layer.self_attn(x, keys, keys, need_weights=False)[0])
            x = layer.norm2(x + layer.multihead_attn(x, mem, mem, need_weights=False)[0])
            x = layer.norm3(x + layer.linear2(layer.activation(layer.linear1(x))))
        return x.squeeze(1)


class TransformerDVAE(DVAE):
    """Shared implementation of LigHT-DVAE (``shared = True``) and HiT-DVAE (``shared = False``)."""

    autoregressive = True
    decoder_reads_x = True
    latent_sites = ("v", "z")
    shared = True

    def __init__(self, x_dim, z_dim=16, v_dim=16, n_heads=4, n_layers=2, ff_dim=256, dense_dim=128, rnn_dim=64,
                 **kw):
        super().__init__(x_dim, z_dim, dense_dim=dense_dim, rnn_dim=rnn_dim, **kw)
        for key, val in (("v_dim", v_dim), ("n_heads", n_heads), ("n_layers", n_layers), ("ff_dim", ff_dim)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"{key} must be a positive int, got {val!r}")
        d = self.dense_dim
        if d % n_heads:
            raise ValueError(f"dense_dim={d} (the Transformer width) must be a multiple of n_heads={n_heads}")
        self.v_dim, self.n_heads, self.n_layers, self.ff_dim = v_dim, n_heads, n_layers, ff_dim
        self.phi_x = nn.Linear(x_dim, d)
        # q(w | s)
        self.rnn_v = BiSeqLSTM(d, self.rnn_dim)
        self.v_head = GaussianHead(self.rnn_v.hidden_dim, v_dim)
        # q(z_t | s_{1:T}, w): non-causal post-LN Transformer encoder
        self.enc_in = nn.Linear(d + v_dim, d)
        layer = nn.TransformerEncoderLayer(d, n_heads, ff_dim, dropout=0.0, batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.q_head = GaussianHead(d, z_dim)
        # decoders
        self.dec = CausalDecoder(z_dim + v_dim, d, n_heads, n_layers, ff_dim)  # p(s_t | ...) (and p(z_t) if shared)
        if not self.shared:
            self.dec_z = CausalDecoder(z_dim + v_dim, d, n_heads, n_layers, ff_dim)
        self.p_head = GaussianHead(d, z_dim)
        self.emit = Emission(d, x_dim, self.emission)

    def extra_config(self):
        return {"v_dim": self.v_dim, "n_heads": self.n_heads, "n_layers": self.n_layers, "ff_dim": self.ff_dim}

    @property
    def z_decoder(self):
        """The decoder of ``p(z_t | ...)``: the emission decoder itself for LigHT-DVAE."""
        return self.dec if self.shared else self.dec_z

    # ------------------------------------------------------------ pieces
    def _q_v(self, fx, lengths):
        loc, scale = self.v_head(self.rnn_v.summary(fx, lengths))
        return dist.Normal(loc, scale).to_event(1)

    def _zw(self, z, v):
        return torch.cat([z, v.unsqueeze(-2).expand(*z.shape[:-1], self.v_dim)], -1)

    def _mem(self, x):
        return shift_right(self.phi_x(self.features(x)))

    def _emit_from(self, z, v, mem, x):
        return self._out(self.dec(self._zw(z, v), mem), x)

    def _zprior_from(self, z, v, mem):
        return self.p_head(self.z_decoder(self._zw(shift_right(z), v), mem))

    def _emit(self, z, x, v):
        return self._emit_from(z, v, self._mem(x), x)

    # ------------------------------------------------------------ hooks
    def guide_sites(self, x, lengths):
        fx = self.phi_x(self.features(x))
        v = yield "v", self._q_v(fx, lengths)
        h = self.enc_in(self._zw(fx, v))
        batch, T = h.shape[:-2], h.shape[-2]
        h = _flat(h) + sinusoidal_positions(T, self.dense_dim, h)
        pad = None
        if lengths is not None:
            pad = torch.arange(T, device=h.device) >= lengths.reshape(-1, 1)
        h = self.encoder(h, src_key_padding_mask=pad).reshape(*batch, T, self.dense_dim)
        loc, scale = self.q_head(h)
        yield "z", dist.Normal(loc, scale).to_event(1)

    def model_sites(self, x, lengths, ss_prob):
        zeros = x.new_zeros(*x.shape[:-2], self.v_dim)
        v = yield "v", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)
        cache = {}

        def params_fn(z):
            x_in = self._scheduled_inputs(x, lambda x_: self.expected(*self._emit(z, x_, v))[0], ss_prob,
                                          lambda feed: self._stepwise(z, feed, v))
            cache["x_in"], cache["mem"] = x_in, self._mem(x_in)
            return self._zprior_from(z, v, cache["mem"])

        like = x.new_zeros(*x.shape[:-1], self.z_dim)
        z = yield "z", SequentialNormal(params_fn, like)
        return self._emit_from(z, v, cache["mem"], cache["x_in"])

    def decode_params(self, z, x, lengths):
        v = self._q_v(self.phi_x(self.features(x)), lengths).mean
        return self._emit(z, x, v)

    def emission_params(self, z, x, latents):
        return self._emit(z, x, latents["v"])

    def z_prior(self, z, x, v):
        """Teacher-forced ``(loc, scale)`` of ``p(z_t | z_{<t}, s_{<t}, w)`` for every step."""
        return self._zprior_from(z, v, self._mem(x))

    def z_prior_params(self, z, x, latents=None):
        """:meth:`z_prior` with ``w = latents["v"]`` if given, else the posterior mean ``q(w | x)`` (the encoder's
        ``w``, as in :meth:`decode_stepwise`)."""
        return self.z_prior(z, x, self._static(z, x, latents))

    def _static(self, z, x, latents):
        """``w``: ``latents["v"]`` if given, else the posterior mean ``q(w | x)`` when ``x`` is given, else the
        prior mean 0."""
        v = (latents or {}).get("v")
        if v is not None:
            return v
        if x is None:
            return z.new_zeros(*z.shape[:-2], self.v_dim)
        x, _, _ = self.prepare_input(x, None)
        return self._q_v(self.phi_x(self.features(x)), None).mean

    # ------------------------------------------------------------ step by step
    def decode_stepwise(self, z, feed, x=None, latents=None):
        """As :meth:`DVAE.decode_stepwise`; ``w`` is ``latents["v"]`` if given, else the posterior mean
        ``q(w | x)`` when ``x`` is given, else its prior mean 0. Recomputes the causal decoder on the prefix at
        every step."""
        return self._stepwise(z, feed, self._static(z, x, latents))

    def stepwise_decode(self, z, feed):
        return self._stepwise(z, feed, z.new_zeros(*z.shape[:-2], self.v_dim))

    def joint_stepwise(self, eps, feed, latents=None):
        """:meth:`DVAE.joint_stepwise` with ``w`` (``latents["v"]``; its prior mean 0 if not given) conditioning
        the z prior and the emission."""
        v = (latents or {}).get("v")
        if v is None:
            v = eps.new_zeros(*eps.shape[:-2], self.v_dim)
        return self.joint_teacher_forced(eps, feed, lambda z, x: self.z_prior(z, x, v),
                                          lambda z, x: self.expected(*self._emit(z, x, v)))

    def _stepwise(self, z, feed, v):
        """Step-by-step decoding with a key / value cache (:meth:`CausalDecoder.step`)."""
        batch, T = z.shape[:-2], z.shape[-2]
        zw = _flat(self._zw(z, v))
        pe = sinusoidal_positions(T, self.dense_dim, zw)
        cache, means, vars_, x_prev = {}, [], [], None
        fx_prev = zw.new_zeros(zw.shape[0], self.dense_dim)
        for t in range(T):
            h = self.dec.step(zw[:, t], fx_prev, cache, t, pe).reshape(*batch, self.dense_dim)
            mean, var = self.expected(*self._out(h, x_prev, step=True))
            x_prev = feed(t, mean, var)
            fx_prev = self.phi_x(self.features(x_prev)).reshape(-1, self.dense_dim)
            means.append(mean), vars_.append(var)
        return torch.stack(means, -2), torch.stack(vars_, -2)

    # ------------------------------------------------------------ inside a larger model
    def latent_sequence(self, name, like, var_scale=None):
        """As :meth:`DVAE.latent_sequence`, with ``w`` (site ``v``) conditioning both the z prior and the
        emission."""
        if self.emission != "gaussian":
            raise ValueError("latent_sequence needs a gaussian-emission prior")
        if like.shape[-1] != self.x_dim:
            raise ValueError(f"{self.name} prior has x_dim={self.x_dim}, the sequence has {like.shape[-1]}")
        warn_uncalibrated(self, var_scale)
        cell, out = {}, {}
        zeros = like.new_zeros(*like.shape[:-2], self.v_dim)
        out["v"] = v = pyro.sample("v", dist.Normal(zeros, torch.ones_like(zeros)).to_event(1))

        if var_scale is not None:
            var_scale = torch.as_tensor(var_scale, dtype=like.dtype, device=like.device)
        sd_scale = None if var_scale is None else var_scale.sqrt()

        def z_params(z):
            if name not in cell:
                raise ValueError(f"the {self.name} prior of z reads {name!r}: provide both through a guide")
            return self.z_prior(z, cell[name], v)

        pending = {}  # without a guide, z and the sequence are drawn together (joint_stepwise)
        joint = self._joint_sampler(like, sd_scale, lambda eps, feed: self.joint_stepwise(eps, feed, out), pending)
        z_dist = SequentialNormal(z_params, like.new_zeros(*like.shape[:-1], self.z_dim), joint)
        out["z"] = pyro.sample("z", z_dist.to_event(1))

        def x_params(x):
            loc, logvar = self._emit(out["z"], x, v)
            return loc, scale_dynamics_var(torch.exp(0.5 * logvar), sd_scale, True)

        def x_sample(eps):
            if pending.get("z") is out["z"]:  # drawn with z by joint_stepwise
                return pending["x"]
            step_sd = lambda t, s: s.sqrt() if sd_scale is None or t == 0 else s.sqrt() * sd_scale  # noqa: E731
            mean, var = self._stepwise(out["z"], lambda t, m, s: m + step_sd(t, s) * eps[..., t, :], v)
            var = scale_dynamics_var(var, var_scale, True)
            return mean + var.sqrt() * eps, mean, var.sqrt()

        out[name] = cell[name] = pyro.sample(name, SequentialNormal(x_params, like, x_sample).to_event(1))
        self._settle_joint(pending, z_dist, out["z"], out[name])
        return out


class LigHTDVAE(TransformerDVAE):
    """LigHT-DVAE: one causal Transformer decoder used twice (emission and z prior)."""

    name = "light-dvae"
    shared = True


class HiTDVAE(TransformerDVAE):
    """HiT-DVAE: separate causal Transformer decoders for the emission and the z prior."""

    name = "hit-dvae"
    shared = False
