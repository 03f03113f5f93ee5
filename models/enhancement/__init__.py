# SPDX-License-Identifier: Apache-2.0
"""Unsupervised speech enhancement with a DVAE speech prior and a noise model.

Model, for ``B`` noisy utterances of ``T`` STFT frames and ``F`` frequency bins, ``x_ft = s_ft + n_ft``:

- ``z ~ p(z)``: the speech prior's latent sequence (site ``z``, plus ``v`` for DSAE), any spectral prior of the
  zoo (the shipped causal RVAE ``speech_rvae`` by default in the tools);
- speech ``s_ft | z ~ CN(0, g_t v_s,ft(z))``, ``v_s`` from the prior's decoder (frozen), ``g_t`` a per-frame
  gain fitted by the NMF M-step (the reference's); with the deep noise models ``g = 1`` as in [3] (``gain=True``
  fits one gain per utterance instead: closed form for U-ND, with the other parameters by SVI otherwise);
- noise ``n_ft ~ CN(0, v_n,ft)`` from a :mod:`pyro_dvae.noise` model: ``nmf`` (``W H``), ``lv`` (from ``z``),
  ``no`` (from ``x_{1:t-1}``) or ``nolv``;
- hence ``x_ft | z ~ CN(0, g_t v_s,ft + v_n,ft)``, observed as the power ``|x_ft|^2 ~ Exponential(mean
  g_t v_s,ft + v_n,ft)`` (the same density up to a constant: the Itakura-Saito fit).

Plates: ``batch`` over the latents (dim -1); ``batch_tf`` x ``time`` x ``freq`` (dims -3, -2, -1) over the
observed bins (``max_plate_nesting=3``). The speech estimate is the posterior mean ``E[s | x]`` averaged over
posterior samples of ``z``: the Wiener filter ``E_q(z)[g v_s / (g v_s + v_n)] x`` under the Gaussian speech of the
fit, or (the default, :class:`EnhanceConfig`) under heavy-tailed speech whose variance in each bin carries a
``Gamma(a, a)`` scale ``u_ft`` of its own, ``E_q(z)[E[u g v_s / (u g v_s + v_n) | x]] x``
(:func:`~pyro_dvae.masks.scale_mixture_gain`; the fit itself keeps ``u = 1``).

Inference, all through :func:`pyro_dvae.inference.run`:

- **NMF noise** (RVAE-VEM [1, 2]): ``vem`` over the blocks of :class:`EnhancementGuide`: E-Z (a few Adam
  steps on the speech *encoder*, decoder frozen, on the negative ELBO with the per-step analytic KL), E-V
  (``R`` posterior samples of ``z`` give samples of ``v_s``, and an ``R``-particle ELBO estimate), and the
  model's M-step (multiplicative IS-NMF updates of ``H`` and ``g``, and of ``W`` when the noise model learns its
  dictionary, which never increase the sample-averaged IS divergence; by default ``W`` stays the noisy
  input's median spectrum, :class:`NMFOptions`).
- **Deep noise** [3]: **U-NA** fits the encoder and a freshly initialised noise network to the utterance by
  ``svi`` (no noise data); **U-ND** trains them once on a folder of noisy speech
  (:func:`~pyro_dvae.models.enhancement.training.train_noise`, never any clean reference) and enhances by one
  forward pass; **U-NDA** starts U-NA from the U-ND weights, with a smaller step size.
  For ``nmf`` only U-NA exists (its ``W``, ``H`` are per utterance); ``und`` / ``unda`` are an error.

Autoregressive speech priors (SRNN, VRNN, STORN) read the past *speech* power, which is not observed: their
decoder is teacher forced on the current posterior speech power ``E[|s|^2 | x]`` (initially the noisy
power), refreshed after each VEM iteration and every ``hint_every`` SVI steps: an approximation the
non-autoregressive priors (VAE, DKF, RVAE, DSAE) do not need.

**References:**

[1] S. Leglaive, X. Alameda-Pineda, L. Girin, R. Horaud (2020), "A Recurrent Variational Autoencoder for
    Speech Enhancement", ICASSP.
[2] X. Bie, S. Leglaive, X. Alameda-Pineda, L. Girin (2022), "Unsupervised Speech Enhancement Using Dynamical
    Variational Autoencoders", IEEE/ACM TASLP 30.
[3] X. Lin, S. Leglaive, L. Girin, X. Alameda-Pineda (2023), "Unsupervised Speech Enhancement with Deep
    Dynamical Generative Speech and Noise Models", Interspeech.
[4] R. Martin (2005), "Speech Enhancement Based on Minimum Mean-Square Error Estimation and Supergaussian
    Priors", IEEE TSAP 13(5).

**Layout:** :mod:`.config` (modes, noise models, the typed settings :class:`EnhanceConfig`,
:class:`NoiseTrainConfig`, ... and the guards' thresholds), :mod:`.model` (the Pyro model and guide),
:mod:`.guide` (the VEM blocks), :mod:`.fit` (fitting one utterance), :mod:`.run` (the :func:`enhance` entry
point), :mod:`.training` (U-ND: :func:`train_noise`), :mod:`.losses` (its loss and stopping measure),
:mod:`.task` (its engine task) and :mod:`.files` (the command-line runners :func:`enhance_file` and
:func:`train_noise_folder`). Imports go one way: ``config <- guide <- model <- fit <- run, training <- files``,
``losses <- task, training`` (``training`` loads ``task``, hence Lightning, when a training starts).
"""

from .config import (
    COLLAPSE,
    DEFAULT_PRIOR,
    DEFAULTS,
    FLOOR_SHARE,
    KEPT_RATIO,
    MODES,
    NOISES,
    PLATES,
    TRANSIENT_SPREAD,
    DeepOptions,
    EnhanceConfig,
    NMFOptions,
    NoiseTrainConfig,
    VEMFitOptions,
    check_noise_source,
)
from .files import enhance_file, train_noise_folder
from .fit import JointAdam, adam, eval_mode_backward, fit_svi, fit_vem
from .guide import EncoderBlock, EnhancementGuide, NMFMStep, SpeechSamplesBlock
from .model import (
    EnhancementModel,
    PathNormal,
    check_power,
    encoder_parameter_names,
    kept_energy,
    log_power_spread,
    speech_share,
)
from .run import EnhancementResult, build_model, enhance, load_speech_prior, prepare_noisy
from .training import NoiseTrainResult, evaluate_noise, train_noise

__all__ = [
    "MODES",
    "NOISES",
    "PLATES",
    "EnhanceConfig",
    "NMFOptions",
    "DeepOptions",
    "VEMFitOptions",
    "NoiseTrainConfig",
    "check_noise_source",
    "DEFAULT_PRIOR",
    "DEFAULTS",
    "FLOOR_SHARE",
    "TRANSIENT_SPREAD",
    "COLLAPSE",
    "KEPT_RATIO",
    "check_power",
    "kept_energy",
    "log_power_spread",
    "speech_share",
    "encoder_parameter_names",
    "PathNormal",
    "EnhancementModel",
    "EncoderBlock",
    "SpeechSamplesBlock",
    "NMFMStep",
    "EnhancementGuide",
    "fit_vem",
    "adam",
    "JointAdam",
    "fit_svi",
    "eval_mode_backward",
    "build_model",
    "load_speech_prior",
    "EnhancementResult",
    "prepare_noisy",
    "enhance",
    "NoiseTrainResult",
    "evaluate_noise",
    "train_noise",
    "enhance_file",
    "train_noise_folder",
]
