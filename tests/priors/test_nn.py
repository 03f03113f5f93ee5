# SPDX-License-Identifier: Apache-2.0
"""The shared network blocks: the direct LSTM call and the tanh form used without autograd."""

import torch

from pyro_dvae.priors.nn import SeqLSTM, Tanh


def test_seq_lstm_equals_its_nn_lstm_forward_and_backward_with_gradients():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 5, requires_grad=True)
    for reverse in (False, True):
        layer = SeqLSTM(5, 4, reverse=reverse)
        out = layer(x)
        flat = x.reshape(-1, 7, 5)
        ref, _ = layer.lstm(flat.flip(1) if reverse else flat)
        ref = (ref.flip(1) if reverse else ref).reshape(2, 3, 7, 4)
        torch.testing.assert_close(out, ref)
        g_out = torch.autograd.grad(out.sum(), [x, layer.lstm.weight_hh_l0])
        g_ref = torch.autograd.grad(ref.sum(), [x, layer.lstm.weight_hh_l0])
        for a, b in zip(g_out, g_ref):
            torch.testing.assert_close(a, b)
    lengths = torch.tensor([7, 4, 1, 7, 2, 5]).reshape(2, 3)  # ragged: padding never reaches valid steps
    layer = SeqLSTM(5, 4, reverse=True)
    out = layer(x.detach(), lengths)
    torch.testing.assert_close(out[0, 1, :4], layer(x.detach()[0, 1, :4]))


def test_tanh_form_matches_torch_tanh_with_and_without_autograd():
    x = torch.linspace(-30, 30, 20001, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(Tanh()(x), torch.tanh(x), rtol=0, atol=1e-15)
        torch.testing.assert_close(Tanh()(x.float()), torch.tanh(x.float()), rtol=0, atol=3e-7)
    xg = x.clone().requires_grad_(True)
    y = Tanh()(xg)
    assert torch.equal(y, torch.tanh(x))  # autograd: torch.tanh itself
    (g,) = torch.autograd.grad(y.sum(), xg)
    torch.testing.assert_close(g, 1 - torch.tanh(x) ** 2)
