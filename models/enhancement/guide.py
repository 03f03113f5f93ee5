# SPDX-License-Identifier: Apache-2.0
"""The VEM blocks of RVAE-VEM (E-Z, E-V and the NMF M-step) and the structured guide that holds them."""

import math

import torch
from pyro.infer import TraceMeanField_ELBO

from pyro_dvae.inference import ClosedFormBlock, GradientBlock, StructuredGuide

from .config import PLATES


# ------------------------------------------------------------------------------------------------ VEM blocks
class EncoderBlock(GradientBlock):
    """E-Z: Adam steps on the speech encoder (decoder frozen) on the negative ELBO
    (:class:`~pyro.infer.TraceMeanField_ELBO`: analytic per-step KL); its guide samples ``z`` by the encoder."""

    def __init__(self, model, num_steps=1, lr=1e-2):
        super().__init__("z", params=model.encoder_parameters, num_steps=num_steps, lr=lr,
                         loss=TraceMeanField_ELBO(max_plate_nesting=PLATES), kind="e", clip_norm=100.0)
        self._model = [model]  # not a submodule

    def guide(self, power, values, **kw):
        self._model[0].guide(power)
        return {}


class SpeechSamplesBlock(ClosedFormBlock):
    """E-V: ``R`` posterior draws of ``z`` and the speech variances they give (what the M-step averages
    over), plus an ``R``-particle Monte-Carlo estimate of the ELBO at these draws (:attr:`elbo`)."""

    def __init__(self, num_samples=4):
        super().__init__("v")
        self.num_samples = int(num_samples)
        self.v_s = None
        self.elbo = math.nan

    @torch.no_grad()
    def update(self, model, guide, power, **kw):
        v_s, v_n, self.elbo = model.posterior(power, self.num_samples)
        self.v_s = v_s / model.speech_gain(power.shape[0], power)  # unscaled: the M-step multiplies by the new gain
        model.refresh_hint(power, variances=(v_s, v_n))


class NMFMStep(ClosedFormBlock):
    """M-step: multiplicative IS-NMF updates of ``W``, ``H`` and the speech gain ``g`` given the E-V samples."""

    def __init__(self):
        super().__init__("nmf", kind="m")

    @torch.no_grad()
    def update(self, model, guide, power, **kw):
        v_s = guide["v"].v_s
        gain = model.gain if model.gain.dim() else model.gain.expand(power.shape[:-1])
        model.gain = model.noise.m_step(power, v_s, gain, bins=model.bins, gain_floor=model.gain_floor)


class EnhancementGuide(StructuredGuide):
    """The VEM schedule of the NMF model: E-Z (:class:`EncoderBlock`), E-V (:class:`SpeechSamplesBlock`);
    the model contributes the M-step (:class:`NMFMStep`). :meth:`elbo_estimate` (for ``vem``'s ``elbo=``
    option) returns the E-V block's ``R``-particle estimate, so ``vem`` runs no extra model pass per iteration.

    Example::

        model = build_model(prior, "nmf", "una")
        model.noise.initialise(power)
        guide = EnhancementGuide(model, e_steps=1, lr=1e-3, num_samples=4)
        inference.run("vem", model, guide, power, num_iters=30, elbo=EnhancementGuide.elbo_estimate)
    """

    def __init__(self, model, e_steps=1, lr=1e-2, num_samples=4):
        super().__init__([EncoderBlock(model, e_steps, lr), SpeechSamplesBlock(num_samples)])

    @staticmethod
    def elbo_estimate(model, guide, *args, **kwargs):
        return guide["v"].elbo
