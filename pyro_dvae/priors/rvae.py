# SPDX-License-Identifier: Apache-2.0
"""RVAE: recurrent VAE, causal and non-causal.

Generative: ``z_t ~ N(0, I)``; the decoder is a forward LSTM over ``z_{1:t}`` (causal) or a
bidirectional LSTM over ``z_{1:T}`` (non-causal). Inference: ``q(z_t | z_{1:t-1}, x)`` combines an
LSTM over past latents with a backward LSTM over ``x_{t:T}`` (causal) or a bidirectional one
(non-causal).

**References:**

[1] S. Leglaive, X. Alameda-Pineda, L. Girin, R. Horaud (2020), "A Recurrent Variational Autoencoder
    for Speech Enhancement", ICASSP.
"""

import warnings
from typing import List

import torch
from torch import nn

from .base import DVAE, Emission, standard_normal_steps
from .distributions import SequentialNormal
from .nn import BiSeqLSTM, GaussianHead, SeqLSTM, mlp, mlp_out_dim, shift_right


class RVAE(DVAE):
    """Causal RVAE prior (``rvae``); ``causal=False`` gives ``rvae-noncausal``."""

    name = "rvae"

    def __init__(self, x_dim, z_dim=16, causal=True, **kw):
        super().__init__(x_dim, z_dim, **kw)
        self.causal = bool(causal)
        self.phi_x = mlp(x_dim, [self.dense_dim])
        if self.causal:
            self.rnn_gx = SeqLSTM(self.dense_dim, self.rnn_dim, reverse=True)
            self.rnn_dec = SeqLSTM(z_dim, self.rnn_dim)
        else:
            self.rnn_gx = BiSeqLSTM(self.dense_dim, self.rnn_dim)
            self.rnn_dec = BiSeqLSTM(z_dim, self.rnn_dim)
        self.rnn_gz = SeqLSTM(z_dim, self.rnn_dim)
        q_in = self.rnn_gx.hidden_dim + self.rnn_dim
        self.enc = mlp(q_in, list(self.z_dense))
        self.q_head = GaussianHead(mlp_out_dim(q_in, self.z_dense), z_dim)
        self.dec = mlp(self.rnn_dec.hidden_dim, [self.dense_dim])
        self.emit = Emission(self.dense_dim, x_dim, self.emission)

    def extra_config(self):
        return {"causal": self.causal}

    def _q(self, gx, gz):
        return self.q_head(self.enc(torch.cat([gx, gz], -1)))

    def guide_sites(self, x, lengths):
        gx = self.rnn_gx(self.phi_x(self.features(x)), lengths)

        def sample_fn(eps):
            state = self.rnn_gz.init_state(eps.shape[:-2], eps)
            z_prev, zs, locs, scales = torch.zeros_like(eps[..., 0, :]), [], [], []
            for t in range(eps.shape[-2]):
                gz, state = self.rnn_gz.step(z_prev, state)
                loc, scale = self._q(gx[..., t, :], gz)
                z_prev = loc + scale * eps[..., t, :]
                zs.append(z_prev), locs.append(loc), scales.append(scale)
            return torch.stack(zs, -2), torch.stack(locs, -2), torch.stack(scales, -2)

        like = x.new_zeros(*x.shape[:-1], self.z_dim)
        yield "z", SequentialNormal(lambda z: self._q(gx, self.rnn_gz(shift_right(z))), like, sample_fn)

    def model_sites(self, x, lengths, ss_prob):
        z = yield "z", standard_normal_steps(x.new_zeros(*x.shape[:-1], self.z_dim))
        return self.decode_params(z, x, lengths)

    def decode_params(self, z, x, lengths):
        return self._out(self.dec(self.rnn_dec(z, lengths)))


def _rvae_path(pre: torch.Tensor, eps: torch.Tensor, W: torch.Tensor, b: torch.Tensor, w_z: torch.Tensor,
               ws: List[torch.Tensor], bs: List[torch.Tensor], w_head: torch.Tensor, b_head: torch.Tensor,
               min_lv: float, max_lv: float) -> torch.Tensor:
    """The draw loop of :class:`RVAEPathSampler`: ``W = [w_ih, w_hh]^T`` ``(D + H, 4 H)`` and ``b = b_ih + b_hh``
    are the ``rnn_gz`` LSTM cell's weights as one matmul on ``[z, h]`` (torch.lstm_cell runs two and more small
    ops: 12 % slower here)."""
    N, T, D = eps.shape
    H = W.shape[1] // 4
    h = eps.new_zeros(N, H)
    c = eps.new_zeros(N, H)
    z = eps.new_zeros(N, D)
    pres, epss = pre.unbind(1), eps.unbind(1)
    out: List[torch.Tensor] = []
    for t in range(T):
        gates = torch.addmm(b, torch.cat([z, h], 1), W)  # PyTorch's gate order: input, forget, cell, output
        s = torch.sigmoid(gates)
        c = torch.addcmul(s[:, H:2 * H] * c, s[:, :H], torch.tanh(gates[:, 2 * H:3 * H]))
        h = s[:, 3 * H:] * torch.tanh(c)
        a = torch.tanh(torch.addmm(pres[t], h, w_z))
        for i in range(len(ws)):
            a = torch.tanh(torch.addmm(bs[i], a, ws[i]))
        o = torch.addmm(b_head, a, w_head)
        z = torch.addcmul(o[:, :D], torch.exp(0.5 * o[:, D:].clamp(min_lv, max_lv)), epss[t])
        out.append(z)
    return torch.stack(out, 1)


_SCRIPTED = {}


class RVAEPathSampler:
    """The RVAE encoder's step-by-step draw ``z_t = mu_t + sigma_t eps_t`` (no autograd) as one TorchScript loop,
    with the ``x`` half of the first encoder layer computed for all steps at once: the same path as the prior's
    own sampler for the same noise, and the same conditionals (both checked at construction on a small input, and
    by a test), about twice as fast. :meth:`build` returns ``None`` for other priors (or an RVAE whose layers
    differ from what this expects), which then draw with their own sampler.

    It reads the RVAE's layers (``phi_x``, ``rnn_gx``, ``enc``, ``rnn_gz``, ``q_head``). Used by the enhancement
    model's E-Z step, which draws a fresh path at every optimiser step.
    """

    def __init__(self, prior):
        if "rvae" not in _SCRIPTED:
            # TorchScript halves the per-step overhead of this loop; torch 2.13 marks it deprecated, and where
            # scripting is gone or fails the same function runs eagerly (about 30 % slower, same result)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    _SCRIPTED["rvae"] = torch.jit.script(_rvae_path)
            except Exception:
                _SCRIPTED["rvae"] = _rvae_path
        self.prior, self.fn = prior, _SCRIPTED["rvae"]

    @classmethod
    def build(cls, prior):
        if type(prior) is not RVAE:
            return None
        try:
            layers = list(prior.enc)
            ok = (len(layers) % 2 == 0 and all(isinstance(m, nn.Linear) for m in layers[::2])
                  and all(isinstance(m, nn.Tanh) for m in layers[1::2]))
            if not ok:
                return None
            sampler = cls(prior)
            with torch.no_grad():
                x = torch.rand(2, 3, prior.x_dim, dtype=prior.x_loc.dtype, device=prior.x_loc.device) + 0.1
                eps = torch.randn(2, 3, prior.z_dim, dtype=x.dtype, device=x.device)
                q = prior.encode(x)
                same = torch.allclose(sampler(x, eps), q.sample_fn(eps)[0], atol=1e-5, rtol=1e-4)
                path, loc, scale = sampler.draw(x)
                ref = q.params_fn(path)
                same = same and torch.allclose(loc, ref[0], atol=1e-6) and torch.allclose(scale, ref[1], atol=1e-6)
            return sampler if same else None
        except Exception:  # any structural surprise: use the prior's own sampler
            return None

    @torch.no_grad()
    def __call__(self, x, eps):
        """The path drawn with noise ``eps`` ``(*batch, T, z_dim)`` for power spectra ``x (*batch, T, F)``."""
        p = self.prior
        return self._path(p.rnn_gx(p.phi_x(p.features(x)), None), eps)

    def draw(self, x):
        """``(path, loc, scale)``: a draw of ``z ~ q(z | x)`` (no autograd) and the conditionals ``mu_t``,
        ``sigma_t`` at that path (differentiable), from one pass over ``x`` (the prior's ``encode`` would run
        its ``x`` side a second time)."""
        p = self.prior
        gx = p.rnn_gx(p.phi_x(p.features(x)), None)
        with torch.no_grad():
            path = self._path(gx.detach(), torch.randn(*gx.shape[:-1], p.z_dim, dtype=gx.dtype, device=gx.device))
        loc, scale = p._q(gx, p.rnn_gz(shift_right(path)))
        return path, loc, scale

    @torch.no_grad()
    def _path(self, gx, eps):
        p = self.prior
        batch, T = gx.shape[:-2], gx.shape[-2]
        first, hx = p.enc[0], gx.shape[-1]
        pre = torch.addmm(first.bias, gx.reshape(-1, hx), first.weight[:, :hx].t()).reshape(-1, T, first.out_features)
        lins = [m for m in p.enc[2:] if isinstance(m, nn.Linear)]
        m, head = p.rnn_gz.lstm, p.q_head
        W = torch.cat([m.weight_ih_l0, m.weight_hh_l0], 1).t().contiguous()
        z = self.fn(pre, eps.reshape(-1, T, p.z_dim), W, m.bias_ih_l0 + m.bias_hh_l0,
                    first.weight[:, hx:].t().contiguous(), [lin.weight.t().contiguous() for lin in lins],
                    [lin.bias for lin in lins], torch.cat([head.loc.weight, head.logvar.weight]).t().contiguous(),
                    torch.cat([head.loc.bias, head.logvar.bias]), float(head.min_logvar), float(head.max_logvar))
        return z.reshape(*batch, T, p.z_dim)
