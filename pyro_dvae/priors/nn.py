# SPDX-License-Identifier: Apache-2.0
"""Small neural building blocks shared by the DVAE priors.

All modules accept any number of leading batch dimensions: inputs are ``(*batch, T, D)`` and
recurrent layers flatten the batch dimensions internally.
"""

import torch
from torch import nn


class Tanh(nn.Tanh):
    """``tanh``; without autograd on CPU computed as ``2 sigmoid(2 x) - 1`` (equal within 2e-7 in float32,
    4e-16 in float64).

    The CPU build of torch 2.13 evaluates ``torch.tanh`` about 4x slower than ``torch.sigmoid`` on large
    tensors (184k floats, one thread: 469 us against 128 us for this form), and the VEM steps apply the priors'
    MLPs to every step of every sequence at every iteration. With autograd recording, ``torch.tanh`` (one op
    and a cheap backward) was as fast or faster in training steps, so it is kept there; on other devices too.
    """

    def forward(self, x):
        if x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad):
            return torch.tanh(x)
        return torch.sigmoid(2 * x).mul_(2).sub_(1)


def mlp(in_dim, hidden, out_dim=None, activation=Tanh):
    """A tanh MLP ``in_dim -> hidden[0] -> ... -> hidden[-1] (-> out_dim)``.

    :param int in_dim: input size.
    :param list hidden: hidden layer sizes (may be empty, then the MLP is the identity or one Linear).
    :param int out_dim: optional final linear layer without activation.
    """
    layers, d = [], in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), activation()]
        d = h
    if out_dim is not None:
        layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers) if layers else nn.Identity()


def mlp_out_dim(in_dim, hidden):
    return hidden[-1] if hidden else in_dim


class GaussianHead(nn.Module):
    """Maps features to ``(loc, scale)`` of a diagonal Gaussian; scale from a log-variance."""

    def __init__(self, in_dim, out_dim, min_logvar=-14.0, max_logvar=10.0):
        super().__init__()
        self.loc = nn.Linear(in_dim, out_dim)
        self.logvar = nn.Linear(in_dim, out_dim)
        self.min_logvar, self.max_logvar = min_logvar, max_logvar

    def forward(self, h):
        logvar = self.logvar(h).clamp(self.min_logvar, self.max_logvar)
        return self.loc(h), torch.exp(0.5 * logvar)


def shift_right(x, first=None):
    """``x_{t-1}`` along dim -2, with ``first`` (default zeros) at t = 0."""
    pad = torch.zeros_like(x[..., :1, :]) if first is None else first.unsqueeze(-2).expand_as(x[..., :1, :])
    return torch.cat([pad, x[..., :-1, :]], dim=-2)


def reverse_padded(x, lengths):
    """Reverse each sequence within its valid length; padded steps stay in place.

    :param torch.Tensor x: ``(N, T, D)``.
    :param torch.Tensor lengths: ``(N,)`` valid lengths, or ``None`` for full length.
    """
    if lengths is None:
        return x.flip(-2)
    T = x.shape[-2]
    t = torch.arange(T, device=x.device)
    idx = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return x.gather(-2, idx.unsqueeze(-1).expand_as(x))


class SeqLSTM(nn.Module):
    """A one-layer LSTM over ``(*batch, T, D)`` inputs, forward or backward in time.

    The backward direction reverses every sequence within its own valid length, so padding at the
    end of a ragged sequence never leaks into its valid steps.
    """

    def __init__(self, in_dim, hidden_dim, reverse=False):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden_dim, batch_first=True)
        self.reverse = reverse
        self.hidden_dim = hidden_dim

    def forward(self, x, lengths=None):
        batch, (T, D) = x.shape[:-2], x.shape[-2:]
        flat = x.reshape(-1, T, D)
        flat_len = None if lengths is None else lengths.reshape(-1)
        if self.reverse:
            flat = reverse_padded(flat, flat_len)
        m = self.lstm
        if flat.device.type == "cpu":  # the op nn.LSTM calls, without its Python-side checks (~40 us a call)
            h0 = flat.new_zeros(1, flat.shape[0], self.hidden_dim)
            params = [m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0]
            out = torch.lstm(flat, (h0, h0), params, True, 1, 0.0, self.training, False, True)[0]
        else:  # nn.LSTM keeps cuDNN's flattened weights
            out, _ = m(flat)
        if self.reverse:
            out = reverse_padded(out, flat_len)
        return out.reshape(*batch, T, self.hidden_dim)

    def init_state(self, batch_shape, like):
        zeros = like.new_zeros(int(torch.Size(batch_shape).numel()), self.hidden_dim)
        return zeros, zeros

    def step(self, x_t, state):
        """One forward step with the same weights (``torch.lstm_cell``, cheaper than a length-1
        ``nn.LSTM`` call): ``x_t`` is ``(*batch, D)``; returns ``(h_t, new_state)``."""
        batch = x_t.shape[:-1]
        m = self.lstm
        h, c = torch.lstm_cell(x_t.reshape(-1, x_t.shape[-1]), state, m.weight_ih_l0, m.weight_hh_l0,
                               m.bias_ih_l0, m.bias_hh_l0)
        return h.reshape(*batch, self.hidden_dim), (h, c)


class BiSeqLSTM(nn.Module):
    """Bidirectional LSTM made of a forward and a length-aware backward :class:`SeqLSTM`."""

    def __init__(self, in_dim, hidden_dim):
        super().__init__()
        self.fwd = SeqLSTM(in_dim, hidden_dim)
        self.bwd = SeqLSTM(in_dim, hidden_dim, reverse=True)
        self.hidden_dim = 2 * hidden_dim

    def forward(self, x, lengths=None):
        return torch.cat([self.fwd(x, lengths), self.bwd(x, lengths)], dim=-1)

    def summary(self, x, lengths=None):
        """Sequence summary: forward state at the last valid step and backward state at t = 0."""
        f, b = self.fwd(x, lengths), self.bwd(x, lengths)
        if lengths is None:
            last = f[..., -1, :]
        else:
            idx = (lengths - 1).clamp(min=0)[..., None, None].expand(*f.shape[:-2], 1, f.shape[-1])
            last = f.gather(-2, idx).squeeze(-2)
        return torch.cat([last, b[..., 0, :]], dim=-1)
