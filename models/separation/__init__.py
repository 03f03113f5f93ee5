# SPDX-License-Identifier: Apache-2.0
"""MixDVAE for single-channel audio source separation (SC-ASS).

Model, for ``B`` mixtures of ``T`` STFT frames and ``F`` frequency bins with ``N`` sources, each source
``n`` with its own spectral DVAE prior (e.g. one trained on speech, one on flute):

- ``z_n ~ p_n(z)`` (prior ``n``'s latent sequence; DSAE adds a static ``v_n``);
- source STFT ``s_n,tf ~ CN(0, g_n v_n,tf)``, ``v_n,t`` from prior ``n``'s decoder given ``z_n`` and, for
  autoregressive priors (SRNN, VRNN, STORN), the past source power ``|s_n,<t|^2``; ``g_n`` is a gain (1
  unless the gain M-step is on);
- ``w_tf ~ Categorical(pi)`` assigns every TF bin to one source;
- ``o_tf | w_tf = n, s ~ CN(s_n,tf, v_x,tf)`` (:class:`~pyro_dvae.likelihoods.ComplexGaussianBins`;
  complex Gaussians are written as two real Gaussians of variance ``v / 2``, see there).

Plates: ``batch`` x ``sources`` for the source STFTs (site ``s``, real view ``(B, N, T, F, 2)``; the
latents are sites ``z_<name>`` / ``v_<name>`` in the ``batch`` plate), ``batch_tf`` x ``time`` x ``freq``
for the assignments (``w`` is marked for parallel enumeration, so ``svi`` picks ``TraceEnum_ELBO``).

The structured guide :class:`SeparationGuide` holds the MixDVAE blocks, iterated by the registry's
``vem`` (order E-Z, E-S, E-W, then the model's M-steps), for one of two variational families:
``"meanfield"`` ``q(z) q(s) q(w)`` (the reference's, default) or ``"structured"`` ``q(z) q(w) q(s | w)``.

- **E-Z** ``q(z_n) =`` prior ``n``'s encoder on the current expected source power ``E_q|s_n|^2``, one
  reparameterised Gaussian draw (the reference draws *uniform* noise) or the noiseless path (each ``z_t`` at
  its conditional mean; :func:`run_separation`'s default). An encoder with a recurrence on ``z`` is
  evaluated in one teacher-forced pass on the previous iteration's path (a Jacobi sweep, default) instead of
  a loop over time; the first draw is sequential;
- **E-S** mean field: ``q(s_n,tf) = CN(m, gamma)`` with ``1 / gamma = 1 / (g v) + eta / v_x`` and ``m =
  gamma eta o / v_x``, the exact optimum (a ``CN(0, g v)`` prior times the likelihood raised to the
  responsibility ``eta``); structured: ``q(s_n | w = n)`` is the exact conditional posterior and ``q(s_n | w
  != n)`` the prior. Autoregressive decoders either read the current posterior power step by step
  (``mode="sequential"``, MixDVAE's ``decoder_vem`` with the expected power fed back instead of a sample)
  or, teacher forced, the previous iteration's (``mode="parallel"``, one decoder pass, no time loop);
- **E-W** mean field: ``q(w_tf = n) ∝ pi_n exp(E_q[log CN(o_tf; s_n,tf, v_x,tf)])``; structured: ``q(w_tf =
  n) ∝ pi_n CN(o_tf; 0, g_n v_n,tf + v_x,tf)``, the posterior of ``w`` with ``s`` integrated out;
- **M-steps**: the residual variance scale (exact, per mixture; off by default, as in the reference: on real
  audio it grows until the residual explains what the priors miss, and the estimates fade) and the source
  gains ``g_n`` (exact; on by default in :func:`run_separation`).

:meth:`SeparationGuide.exact_elbo` is the ELBO in closed form given the latents (exact for
non-autoregressive priors; for autoregressive ones it uses the decoder variances of the last E-S), minus the
analytic per-step KL of ``q(z)`` to ``p(z)`` at the drawn path. With ``z`` held fixed every E-S / E-W /
M step is an exact coordinate ascent step (tested). The structured family is tighter (it is exact given
``z``), but with priors that do not fit the test sources well its exact assignment posterior is worse than
the mean-field fixed point (measured on real speech + flute), hence the default.

Initialisation (:meth:`SeparationGuide.initialise`): every prior encodes and decodes the mixture power;
``"equal"`` (:func:`run_separation`'s default, best on the development split) is the reference's ``eta = 1 /
N``; ``"prior"`` sets the responsibilities to the posterior of ``w`` with ``s`` integrated out, ``q(w = n) ∝
pi_n CN(o; 0, g_n v_n + v_x)``; a tensor of masks (e.g. NMF Wiener masks) sets both the responsibilities and
the initial source powers.

Estimates (:meth:`SeparationGuide.estimate`): the posterior means (the reference's output), the mixture
split by ``q(w)``, or (default) a Wiener post-filter with the posterior source powers ``E_q|s_n|^2``.

:func:`run_separation` runs it (or the baselines: mixture, oracle IBM / Wiener masks, IS-NMF, temporal
NMF) on waveforms or STFTs, through :func:`pyro_dvae.inference.run`.

**References:**

[1] X. Lin, L. Girin, X. Alameda-Pineda (2023), "Mixture of Dynamical Variational Autoencoders for
    Multi-Source Trajectory Modeling and Separation", TMLR.
[2] L. Girin, S. Leglaive, X. Bie, J. Diard, T. Hueber, X. Alameda-Pineda (2021), "Dynamical Variational
    Autoencoders: A Comprehensive Review", Foundations and Trends in Machine Learning.
[3] C. Fevotte, N. Bertin, J.-L. Durrieu (2009), "Nonnegative Matrix Factorization with the Itakura-Saito
    Divergence: With Application to Music Analysis", Neural Computation 21(3).

**Layout:** :mod:`.model` (the Pyro model), :mod:`.guide` (the VEM blocks and the structured guide),
:mod:`.config` (:class:`SeparationConfig` and its option groups :class:`VEMOptions`, :class:`NMFOptions`),
:mod:`.run` (:func:`run_separation`, the baselines and the audio front end), :mod:`.files` (:func:`separate_file`,
what ``pyro-dvae separate`` runs).
"""

from .config import METHODS, NMFOptions, SeparationConfig, VEMOptions
from .files import SeparateFileConfig, score_table, separate_file
from .guide import (
    FAMILIES,
    MODES,
    OUTPUTS,
    AssignmentBlock,
    GainMStep,
    LatentBlock,
    NoiseMStep,
    SeparationGuide,
    SourceBlock,
    WeightMStep,
    check_mixture,
)
from .model import SeparationModel, SourceSpectra, check_priors
from .run import (
    SeparationResult,
    load_separation_prior,
    prepare_mixture,
    run_separation,
)

__all__ = ["AssignmentBlock", "FAMILIES", "GainMStep", "LatentBlock", "METHODS", "MODES", "NMFOptions", "NoiseMStep",
           "OUTPUTS", "SeparateFileConfig", "SeparationConfig", "SeparationGuide", "SeparationModel",
           "SeparationResult", "SourceBlock", "SourceSpectra", "VEMOptions", "WeightMStep", "check_mixture",
           "check_priors", "load_separation_prior", "prepare_mixture", "run_separation", "score_table",
           "separate_file"]
