# SPDX-License-Identifier: Apache-2.0
"""Settings of speech enhancement: the noise models and modes, the typed settings of its runners and the
thresholds of its no-reference guards.

- :class:`EnhanceConfig` (with its option groups :class:`NMFOptions` and :class:`DeepOptions`): one noisy
  utterance, :func:`~pyro_dvae.models.enhancement.enhance` and
  :func:`~pyro_dvae.models.enhancement.files.enhance_file`;
- :class:`VEMFitOptions`: one RVAE-VEM fit of the NMF noise model, :func:`~pyro_dvae.models.enhancement.fit_vem`;
- :class:`NoiseTrainConfig`: U-ND training of a deep noise model,
  :func:`~pyro_dvae.models.enhancement.train_noise` and
  :func:`~pyro_dvae.models.enhancement.files.train_noise_folder`.

Each validates its fields when made (a :class:`ValueError` naming the field and its range); a runner takes one
and keyword overrides of its fields (``enhance(noisy, prior, config, num_iters=10)``), applied with
:meth:`EnhanceConfig.replace` / :func:`dataclasses.replace`. The defaults were chosen on the dev split of the
held-out protocol (:mod:`pyro_dvae.data.heldout`); see BENCHMARKS.md.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from types import MappingProxyType

from pyro_dvae import checks
from pyro_dvae import noise as noise_models
from pyro_dvae.data.audio import HOP, N_FFT, SAMPLE_RATE
from pyro_dvae.inference.svi import check_task_guide
from pyro_dvae.noise.deep import STARTS

MODES = ("una", "und", "unda")


NOISES = ("nmf", "lv", "no", "nolv")


PLATES = 3


#: The shipped speech prior the file runners (and ``pyro-dvae enhance``) use when none is given: the causal RVAE
#: trained with the power floor, for every noise model (chosen on the dev split; see BENCHMARKS.md).
DEFAULT_PRIOR = "speech_rvae"


# ------------------------------------------------------------------------------------------------ validation
def _speech_shape(name, value):
    """``None`` (the default of the noise kind) or a shape > 0 (``math.inf``: Gaussian speech)."""
    if value is None:
        return None
    try:
        shape = float(value)
    except (TypeError, ValueError):
        shape = math.nan
    if isinstance(value, bool) or not shape > 0.0:  # NaN too
        raise ValueError(f"{name} must be > 0 (inf: Gaussian speech, the Wiener gain), got {value}")
    return shape


def check_noise_source(noise, mode, noise_checkpoint):
    """Check that ``noise``, ``mode`` and ``noise_checkpoint`` name a noise model that can be built
    (:func:`~pyro_dvae.models.enhancement.build_model`): ``nmf`` is fitted per utterance (mode ``"una"`` only),
    ``"una"`` starts from a fresh model (no checkpoint, the noise model named), ``"und"`` / ``"unda"`` from a
    checkpoint of :func:`~pyro_dvae.models.enhancement.train_noise`. The messages also name the options of
    ``pyro-dvae enhance``."""
    checks.choice("mode", mode, MODES)
    if noise is not None:
        checks.choice("noise", noise, tuple(noise_models.available()))
    if noise == "nmf" and mode != "una":
        raise ValueError(f"mode {mode!r} needs a noise model trained on noisy speech, but 'nmf' is fitted per "
                         "utterance (its W, H belong to one utterance): use mode 'una' with nmf, or a deep noise "
                         f"model (lv, no, nolv) trained by train-noise for und / unda (on the command line: --noise "
                         f"nmf needs --mode una, --mode {mode} a deep noise model)")
    if mode == "una":
        if noise_checkpoint is not None:
            raise ValueError("mode 'una' starts from a fresh noise model: a noise checkpoint is for 'und' / 'unda' "
                             "(on the command line: --mode una fits a fresh noise model, --noise-model is for "
                             "--mode und / unda)")
        if noise is None:
            raise ValueError("mode 'una' needs the noise model's name (noise / --noise)")
    elif noise_checkpoint is None:
        raise ValueError(f"mode {mode!r} needs a noise model trained by train-noise (noise_checkpoint; on the "
                         f"command line, --mode {mode} needs --noise-model, a checkpoint written by pyro-dvae "
                         "train-noise)")


# ------------------------------------------------------------------------------------------------ enhance
@dataclass
class NMFOptions:
    """The settings of the NMF noise model (``noise="nmf"``, fitted per utterance by RVAE-VEM, :func:`fit_vem`).
    Chosen on the dev split; see BENCHMARKS.md.

    :ivar int num_iters: VEM iterations (when :attr:`EnhanceConfig.num_iters` is ``None``). More iterations keep
        raising the ELBO but let the noise model take speech over.
    :ivar float lr: the speech encoder's Adam step size in the E-Z step (when :attr:`EnhanceConfig.lr` is ``None``).
    :ivar int rank: rank of the noise variance ``W H`` of a fresh model.
    :ivar str init: the start of ``W``, ``H``: ``"floor"`` (``W`` the noisy input's per-bin :attr:`quantile`
        spectrum) or ``"uniform"`` (random, the reference's); :meth:`~pyro_dvae.noise.NMFNoise.initialise`.
    :ivar int smooth: frames the activations ``H`` are averaged over after each update (odd; 1: off).
    :ivar bool learn_dictionary: update ``W`` in the M-step; ``False`` keeps the start's spectrum and fits only
        ``H`` and the speech gain, so the noise model cannot become a speech spectrum.
    :ivar float quantile: the per-bin quantile over time of the noisy power that the ``"floor"`` start reads
        (0.5: the median).
    :ivar select: ``None`` (the last iteration's fit) or ``"max-kept"`` (the iteration whose estimate keeps the
        most energy: :func:`fit_vem`).
    :ivar high_share: when the no-reference :func:`speech_share` of the input reaches this, speech dominates it
        and ``W`` reads :attr:`high_share_quantile` instead of :attr:`quantile` (``None``: never).
    :ivar float high_share_quantile: the ``"floor"`` start's quantile in that regime.
    :ivar bool high_share_mean_level: in that regime ``W H`` starts at the mean noise level the floor implies
        instead of the floor itself.
    :ivar gain_floor: in the M-step no frame's speech gain falls below this share of the utterance's mean gain (a
        zero gain is a fixed point of the multiplicative update); ``None``: no floor.
    :ivar speech_shape: the output's speech model when :attr:`EnhanceConfig.speech_shape` is ``None`` (see there).
    """

    num_iters: int = 15
    lr: float = 1e-3
    rank: int = 4
    init: str = "floor"
    smooth: int = 31
    learn_dictionary: bool = False
    quantile: float = 0.5
    select: str = None
    high_share: float = 0.6
    high_share_quantile: float = 0.2
    high_share_mean_level: bool = True
    gain_floor: float = 0.1
    speech_shape: float = 0.25

    def __post_init__(self):
        self.num_iters, self.rank = checks.integer("num_iters", self.num_iters, 1), checks.integer("rank", self.rank, 1)
        self.lr = checks.positive("lr", self.lr)
        checks.choice("init", self.init, ("uniform", "floor"))
        self.smooth = checks.integer("smooth", self.smooth, 1)
        if self.smooth % 2 == 0:
            raise ValueError(f"smooth must be an odd integer >= 1 (frames), got {self.smooth}")
        self.quantile = checks.fraction("quantile", self.quantile)
        checks.choice("select", self.select, (None, "max-kept"))
        self.high_share = checks.unit("high_share", self.high_share, none=True)
        self.high_share_quantile = checks.fraction("high_share_quantile", self.high_share_quantile)
        self.gain_floor = checks.unit("gain_floor", self.gain_floor, none=True)
        self.speech_shape = _speech_shape("speech_shape", self.speech_shape)


@dataclass
class DeepOptions:
    """The settings of the deep noise models (``noise`` ``"lv"``, ``"no"`` or ``"nolv"``, fitted by SVI,
    :func:`fit_svi`). Chosen on the dev split; see BENCHMARKS.md.

    :ivar int num_iters: U-NA SVI steps (when :attr:`EnhanceConfig.num_iters` is ``None``).
    :ivar int unda_num_iters: U-NDA SVI steps (it starts from a trained model).
    :ivar float lr: U-NA's Adam step size (encoder and noise network).
    :ivar float unda_lr: U-NDA's, smaller: it fine-tunes a trained noise network, which takes speech over at
        U-NA's step size.
    :ivar str start: where a fresh (U-NA) network's noise variance starts: ``"mean"`` (the mean level the input's
        noise floor implies) or ``"anchor"`` (the floor itself); :class:`~pyro_dvae.noise.deep.DeepNoise`.
    :ivar select: U-NA's guard (:func:`fit_svi`): ``"floor"`` (the last step's fit unless its speech estimate
        keeps under :data:`FLOOR_SHARE` of the input's no-reference speech share), ``"max-kept"`` or ``None``
        (the last step's fit).
    :ivar unda_select: U-NDA's guard (the same choices).
    :ivar int check_every: SVI steps between two checks of the guard.
    :ivar speech_shape: the output's speech model when :attr:`EnhanceConfig.speech_shape` is ``None`` (see there).
    """

    num_iters: int = 35
    unda_num_iters: int = 100
    lr: float = 5e-4
    unda_lr: float = 1e-4
    start: str = "mean"
    select: str = "floor"
    unda_select: str = None
    check_every: int = 10
    speech_shape: float = 0.25

    def __post_init__(self):
        self.num_iters = checks.integer("num_iters", self.num_iters, 0)
        self.unda_num_iters = checks.integer("unda_num_iters", self.unda_num_iters, 0)
        self.lr, self.unda_lr = checks.positive("lr", self.lr), checks.positive("unda_lr", self.unda_lr)
        checks.choice("start", self.start, STARTS)
        checks.choice("select", self.select, (None, "max-kept", "floor"))
        checks.choice("unda_select", self.unda_select, (None, "max-kept", "floor"))
        self.check_every = checks.integer("check_every", self.check_every, 1)
        self.speech_shape = _speech_shape("speech_shape", self.speech_shape)


@dataclass
class EnhanceConfig:
    """Settings of :func:`~pyro_dvae.models.enhancement.enhance` (one noisy utterance). ``num_iters``, ``lr``
    and ``speech_shape`` left ``None`` take the value of the noise kind's group, :attr:`nmf` or :attr:`deep`
    (:meth:`resolved`).

    :ivar noise: the noise model, one of :data:`NOISES`: ``"nmf"`` (``W H``, fitted per utterance), ``"lv"``
        (from the speech latents), ``"no"`` (from the past noisy frames) or ``"nolv"`` (both), or a name added by
        :func:`pyro_dvae.noise.register` (a ``deep`` one is fitted by SVI, as the built-in deep models); ``None``:
        the checkpoint's (``und`` / ``unda``).
    :ivar str mode: one of :data:`MODES`: ``"una"`` (a fresh noise model fitted to the utterance), ``"und"`` (a
        noise model trained by :func:`~pyro_dvae.models.enhancement.train_noise`, one forward pass) or ``"unda"``
        (that model, then fitted to the utterance); ``nmf``: ``"una"`` only.
    :ivar noise_checkpoint: path (or loaded dict) of a ``train_noise`` checkpoint, for ``und`` / ``unda``.
    :ivar num_iters: VEM iterations (nmf, >= 1) or SVI steps (U-NA / U-NDA, >= 0); ``und`` runs none.
    :ivar lr: the Adam step size of the encoder (and of the noise network).
    :ivar int num_samples: posterior draws of ``z`` averaged in the output gain.
    :ivar int e_steps: Adam steps of the encoder per VEM E-step (nmf).
    :ivar int vem_samples: posterior draws per VEM M-step (nmf).
    :ivar bool gain: nmf: start the per-frame speech gain at its closed-form value instead of 1; deep models: fit
        one speech gain per utterance (closed form for U-ND). A fit that collapses is run again from the other
        start.
    :ivar speech_shape: the output's speech model: each bin's speech variance carries a ``Gamma(shape, shape)``
        scale of its own, integrated out given the bin's power (heavier-tailed speech for smaller values;
        :func:`~pyro_dvae.masks.scale_mixture_gain`); ``math.inf``: Gaussian speech, the Wiener gain of the fit.
    :ivar dict noise_options: options of a fresh noise model (:func:`pyro_dvae.noise.build`: ``rank``,
        ``smooth``, network sizes, ...), over those of :attr:`nmf` / :attr:`deep`.
    :ivar int seed: seeds Pyro / torch (posterior draws, a fresh noise network, the NMF start).
    :ivar int n_fft: STFT size of the front end (the speech prior's).
    :ivar int hop: STFT hop of the front end.
    :ivar bool progress: show a progress bar of the fit.
    :ivar NMFOptions nmf: the NMF noise model's settings (a dict of fields is taken over the defaults).
    :ivar DeepOptions deep: the deep noise models' settings (likewise).
    :ivar guide: the guide of the deep noise models' SVI fit (modes ``"una"`` / ``"unda"``): ``None`` (default: the
        speech encoder ``q(z | x)``, fine-tuned), the name of an autoguide
        (:data:`~pyro_dvae.inference.svi.AUTOGUIDES`), a guide factory (an autoguide class or a
        :func:`functools.partial` of one, called with the model) or a callable guide ``guide(power)`` sampling
        ``z`` ``(B, T, z_dim)`` (and the prior's static latents) in the plate ``batch`` (dim -1). A named or
        factory-made guide is started at the encoder's posterior mean on the input (``init_to_value``) and fitted
        in the encoder's place, per utterance (the encoder stays as it is); the output reads its posterior draws
        (:func:`~pyro_dvae.models.enhancement.fit_svi`). ``noise="nmf"`` runs by variational EM over its
        structured guide (:class:`~pyro_dvae.models.enhancement.EnhancementGuide`) and mode ``"und"`` fits nothing:
        both refuse a guide (a :class:`ValueError`).
    :ivar bool fine_tune_prior: whether the run may change the weights of the ``prior`` passed in. ``False``
        (default): it is frozen for the run (:func:`pyro_dvae.handlers.frozen`: a guide calling
        ``pyro.module("prior", prior)`` registers none of its weights) and bitwise unchanged after it, whatever the
        guide does. The per-utterance fine-tuning of the speech encoder happens on the model's own copy of the
        prior (:class:`~pyro_dvae.models.enhancement.EnhancementModel`) either way. ``True``: weights of the prior
        passed in that a guide registers are trained in place.
    """

    noise: str = "no"
    mode: str = "una"
    noise_checkpoint: object = None
    num_iters: int = None
    lr: float = None
    num_samples: int = 8
    e_steps: int = 1
    vem_samples: int = 4
    gain: bool = False
    speech_shape: float = None
    noise_options: dict = None
    seed: int = 0
    n_fft: int = N_FFT
    hop: int = HOP
    progress: bool = False
    nmf: NMFOptions = field(default_factory=NMFOptions)
    deep: DeepOptions = field(default_factory=DeepOptions)
    guide: object = None
    fine_tune_prior: bool = False

    def __post_init__(self):
        checks.choice("mode", self.mode, MODES)
        if self.noise is not None:
            checks.choice("noise", self.noise, tuple(noise_models.available()))
        check_task_guide(self.guide, "vem" if self.noise == "nmf" else "svi", "EnhancementGuide",
                         fix="a deep noise model (noise='lv', 'no' or 'nolv', fitted by svi)",
                         context="noise='nmf' (fitted by variational EM)")
        if self.guide is not None and self.mode == "und":
            raise ValueError("mode 'und' fits nothing (the trained encoder and noise model, one pass): a guide needs "
                             "mode 'una' or 'unda'")
        self.nmf, self.deep = checks.group(NMFOptions, self.nmf), checks.group(DeepOptions, self.deep)
        self.num_iters = checks.integer("num_iters", self.num_iters, 0, none=True)
        if self.noise == "nmf" and self.num_iters is not None and self.num_iters < 1:
            raise ValueError(f"num_iters must be >= 1 for nmf, got {self.num_iters}")
        self.lr = checks.positive("lr", self.lr, none=True)
        self.num_samples = checks.integer("num_samples", self.num_samples, 1)
        self.e_steps = checks.integer("e_steps", self.e_steps, 0)
        self.vem_samples = checks.integer("vem_samples", self.vem_samples, 1)
        self.gain = bool(self.gain)
        self.speech_shape = _speech_shape("speech_shape", self.speech_shape)
        if self.noise_options is not None and not isinstance(self.noise_options, dict):
            raise ValueError(f"noise_options must be a dict or None, got {type(self.noise_options).__name__}")
        self.seed = checks.integer("seed", self.seed, -(2**63))
        self.n_fft, self.hop = checks.integer("n_fft", self.n_fft, 2), checks.integer("hop", self.hop, 1)

    def replace(self, **overrides):
        """A copy with ``overrides`` (field names) applied by :func:`dataclasses.replace`: :attr:`nmf` and
        :attr:`deep` take a dict of the fields to change in the group (``nmf={"quantile": 0.2}``); ``nmf_init``
        is a short name of ``nmf={"init": ...}`` (``None``: unchanged)."""
        init = overrides.pop("nmf_init", None)
        for name in ("nmf", "deep"):
            if isinstance(overrides.get(name), dict):
                overrides[name] = dataclasses.replace(getattr(self, name), **overrides[name])
        if init is not None:
            overrides["nmf"] = dataclasses.replace(overrides.get("nmf", self.nmf), init=init)
        return dataclasses.replace(self, **overrides) if overrides else self

    def check_noise_source(self):
        """:func:`check_noise_source` of this configuration: whether its noise model can be built."""
        check_noise_source(self.noise, self.mode, self.noise_checkpoint)

    def resolved(self, noise=None):
        """A copy with ``num_iters``, ``lr`` and ``speech_shape`` set for a fit of the noise model ``noise``
        (default: :attr:`noise`): the given values, else the noise kind's (:attr:`nmf`, or :attr:`deep` with
        its U-NDA values in mode ``"unda"``). ``speech_shape`` is then a number (``math.inf``: Gaussian)."""
        noise = self.noise if noise is None else noise
        group = self.nmf if noise == "nmf" else self.deep
        unda = noise != "nmf" and self.mode == "unda"
        num_iters = self.num_iters
        if num_iters is None:
            num_iters = group.unda_num_iters if unda else group.num_iters
        if noise == "nmf" and num_iters < 1:
            raise ValueError(f"num_iters must be >= 1 for {noise}, got {num_iters}")
        lr = self.lr if self.lr is not None else group.unda_lr if unda else group.lr
        shape = self.speech_shape if self.speech_shape is not None else group.speech_shape
        return dataclasses.replace(self, noise=noise, num_iters=num_iters, lr=lr,
                                   speech_shape=math.inf if shape is None else shape)


#: The defaults of :class:`NMFOptions` and :class:`DeepOptions` as a read-only mapping ``{"nmf": {...}, "deep":
#: {...}}``. Deprecated (kept for one release): read the dataclasses, and change settings through an
#: :class:`EnhanceConfig` (``EnhanceConfig(nmf={"quantile": 0.2})``).
DEFAULTS = MappingProxyType({"nmf": MappingProxyType(dataclasses.asdict(NMFOptions())),
                             "deep": MappingProxyType(dataclasses.asdict(DeepOptions()))})


# ------------------------------------------------------------------------------------------------ fits, training
@dataclass
class VEMFitOptions:
    """Settings of one RVAE-VEM fit of the NMF noise model (:func:`~pyro_dvae.models.enhancement.fit_vem`).

    :ivar int num_iters: VEM iterations.
    :ivar float lr: the speech encoder's Adam step size in the E-Z step.
    :ivar int e_steps: Adam steps per E-Z step.
    :ivar int num_samples: posterior draws of ``z`` per E-V step (the M-step averages over them).
    :ivar str nmf_init: the start of ``W``, ``H``: ``"uniform"`` (the reference's) or ``"floor"``
        (:meth:`~pyro_dvae.noise.NMFNoise.initialise`).
    :ivar bool gain_init: start the speech gain at its closed-form value
        (:meth:`~pyro_dvae.models.enhancement.EnhancementModel.init_gain`) instead of 1.
    :ivar select: ``None`` (the last iteration's fit) or ``"max-kept"`` (:func:`fit_vem`).
    :ivar quantile: the ``"floor"`` start's quantile (``None``: the noise model's).
    :ivar bool mean_level: start ``W H`` at the mean noise level the floor implies.
    :ivar gain_floor: no frame's speech gain falls below this share of the utterance's mean gain in the M-step
        (:meth:`~pyro_dvae.noise.NMFNoise.m_step`; ``None``: no floor).
    """

    num_iters: int = 30
    lr: float = 1e-3
    e_steps: int = 1
    num_samples: int = 4
    nmf_init: str = "uniform"
    gain_init: bool = False
    select: str = None
    quantile: float = None
    mean_level: bool = False
    gain_floor: float = None

    def __post_init__(self):
        if self.select not in (None, "max-kept"):
            raise ValueError(f"select must be None or 'max-kept', got {self.select!r}")
        self.num_iters = checks.integer("num_iters", self.num_iters, 0)
        self.lr = checks.positive("lr", self.lr)
        self.e_steps = checks.integer("e_steps", self.e_steps, 0)
        self.num_samples = checks.integer("num_samples", self.num_samples, 1)
        checks.choice("nmf_init", self.nmf_init, ("uniform", "floor"))
        self.quantile = checks.fraction("quantile", self.quantile, none=True)
        self.gain_floor = checks.unit("gain_floor", self.gain_floor, none=True)


@dataclass
class NoiseTrainConfig:
    """Settings of U-ND training (:func:`~pyro_dvae.models.enhancement.train_noise`, and
    :func:`~pyro_dvae.models.enhancement.files.train_noise_folder` for a folder of noisy speech).

    :ivar int epochs: training epochs (at most: see :attr:`patience` and :data:`KEPT_RATIO`).
    :ivar int batch_size: chunks per step (per process under DDP).
    :ivar float lr: Adam step size of the encoder and the noise network.
    :ivar int patience: stop after this many epochs without a better validation loss.
    :ivar clip_norm: the gradient's global norm is clipped to this (``None``: no clipping).
    :ivar int seed: seeds the initial weights, the batches and (folder) the train / validation split.
    :ivar dict noise_options: options of the fresh noise model (:func:`pyro_dvae.noise.build`: network sizes).
    :ivar int sample_rate: the front end the checkpoint is written for (the speech prior's).
    :ivar int n_fft: likewise.
    :ivar int hop: likewise.
    :ivar int seq_len: a folder's training chunks, in STFT frames (:func:`train_noise_folder` only).
    :ivar float val_fraction: the share of a folder's chunks held out for validation (likewise).
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 10
    clip_norm: float = 10.0
    seed: int = 0
    noise_options: dict = None
    sample_rate: int = SAMPLE_RATE
    n_fft: int = N_FFT
    hop: int = HOP
    seq_len: int = 100
    val_fraction: float = 0.1

    def __post_init__(self):
        for key in ("epochs", "batch_size", "patience", "sample_rate", "hop"):
            setattr(self, key, checks.integer(key, getattr(self, key), 1))
        self.n_fft, self.seq_len = checks.integer("n_fft", self.n_fft, 2), checks.integer("seq_len", self.seq_len, 2)
        self.lr = checks.positive("lr", self.lr)
        self.clip_norm = checks.positive("clip_norm", self.clip_norm, none=True)
        self.seed = checks.integer("seed", self.seed, -(2**63))
        self.val_fraction = checks.fraction("val_fraction", self.val_fraction)
        if self.noise_options is not None and not isinstance(self.noise_options, dict):
            raise ValueError(f"noise_options must be a dict or None, got {type(self.noise_options).__name__}")


# ------------------------------------------------------------------------------------------------ guards
#: ``select="floor"`` of :func:`fit_svi` (the deep models' default): the last step's fit is kept while its speech
#: estimate keeps at least this share of :func:`speech_share`. Chosen on the dev split; see BENCHMARKS.md.
FLOOR_SHARE = 0.95


#: :func:`speech_share` reads the median instead of the 0.2-quantile floor above this :func:`log_power_spread`
#: (noise made of events with quiet gaps). Chosen on the dev split; see BENCHMARKS.md.
TRANSIENT_SPREAD = 1.6


#: A fit whose speech estimate keeps less than this fraction of the input energy has collapsed (the noise model
#: took the speech over, or the speech gain went to zero): :func:`enhance` detects it and recovers.
COLLAPSE = 0.05


#: :func:`train_noise` stops when the speech estimate on the validation chunks keeps less than this fraction of the
#: share of the energy it kept after the first epoch: the noise model has started to explain the speech (a
#: stopping rule that needs no clean reference; the validation ELBO alone keeps improving). Chosen on the dev
#: split; see BENCHMARKS.md.
KEPT_RATIO = 0.95
