# SPDX-License-Identifier: Apache-2.0
"""Settings of :func:`~pyro_dvae.models.separation.run_separation`: :class:`SeparationConfig`, with the MixDVAE
knobs in :class:`VEMOptions` and the NMF ones in :class:`NMFOptions`.

The defaults (``init="equal"``, ``noise_ratio=0.03``, ``sample_z=False``, ``parallel_z=True``, sequential E-S)
are the best of a sweep on a development split of real speech + flute mixtures (``examples/scass_dev_sweep.py``;
BENCHMARKS.md).

:func:`apply_overrides` applies :func:`run_separation`'s keyword overrides: a field of
:class:`SeparationConfig` by its name (``num_iters=10``, ``vem=VEMOptions(...)``), a field of a group by its
flat keyword from before the config existed (:data:`FLAT_KEYWORDS`: ``init="prior"``, ``nmf_iters=30``).
"""

import dataclasses
from dataclasses import dataclass, field

import torch

from pyro_dvae import checks
from pyro_dvae.data.audio import HOP, N_FFT
from pyro_dvae.inference.svi import check_task_guide

from .guide import FAMILIES, MODES, OUTPUTS

#: ``method`` values of :func:`~pyro_dvae.models.separation.run_separation`.
METHODS = ("mixdvae", "mixture", "oracle_ibm", "oracle_wiener", "is_nmf", "temporal_nmf")
#: ``algo`` values (MixDVAE inference, through :func:`pyro_dvae.inference.run`).
ALGOS = ("vem", "svi", "enum-svi")
#: ``init`` values other than a tensor of masks.
INITS = ("equal", "prior", "nmf")
#: ``noise`` values (:class:`~pyro_dvae.likelihoods.ComplexGaussianBins` ``kind``).
NOISES = ("proportional", "global")


@dataclass
class VEMOptions:
    """MixDVAE's model and structured guide (``method="mixdvae"``): the starting point, the E-steps, the residual
    variance and the M-steps of its variational EM (:mod:`pyro_dvae.models.separation`). With ``algo="svi"`` /
    ``"enum-svi"`` the guide only gives the ``AutoNormal`` guide its starting point, and the M-steps and
    ``average`` do nothing.

    :ivar init: the starting point (:meth:`~pyro_dvae.models.separation.SeparationGuide.initialise`): ``"equal"``
        (the reference's ``q(w = n) = 1 / N``; default, best on the development split), ``"prior"`` (the
        posterior of ``w`` with ``s`` integrated out), ``"nmf"`` (IS-NMF Wiener masks from the ``nmf=``
        separator, :attr:`NMFOptions.iters` updates) or a tensor of masks ``(B, N, T, F)``.
    :ivar mode: E-S of autoregressive priors (SRNN, VRNN, STORN): ``"sequential"`` (the decoder reads the
        current posterior power step by step, the reference's; default) or ``"parallel"`` (teacher forced on the
        previous iteration's, one decoder pass: faster).
    :ivar family: ``"meanfield"`` (``q(z) q(s) q(w)``, the reference's; default) or ``"structured"`` (``q(z)
        q(w) q(s | w)``, exact given ``z``).
    :ivar noise: residual variance ``v_x``: ``"proportional"`` (``noise_ratio |o|^2`` per bin, the reference's)
        or ``"global"`` (``noise_ratio`` times the mean mixture power).
    :ivar noise_ratio: initial residual scale (> 0; default 0.03, the reference's ``v_x = 0.03 |o|^2``).
    :ivar learn_noise: M-step of the residual scale (off: on real audio it grows until the residual explains
        what the priors miss, and the estimates fade).
    :ivar learn_gain: M-step of the source gains ``g_n`` (on).
    :ivar learn_weights: M-step of the assignment weights ``pi`` (off).
    :ivar sample_z: E-Z draws ``z`` from the encoder (off: the noiseless path, each ``z_t`` at its conditional
        mean).
    :ivar parallel_z: Jacobi E-Z: one teacher-forced encoder pass per iteration instead of a loop over time
        (on; :class:`~pyro_dvae.models.separation.LatentBlock`).
    :ivar average: ``algo="vem"`` only: read the estimates from the posterior source moments averaged over the
        last ``average`` iterations (a Monte Carlo average over that many draws of ``z``, with ``sample_z``; 0 or
        1: the last iteration's).
    """

    init: object = "equal"
    mode: str = "sequential"
    family: str = "meanfield"
    noise: str = "proportional"
    noise_ratio: float = 0.03
    learn_noise: bool = False
    learn_gain: bool = True
    learn_weights: bool = False
    sample_z: bool = False
    parallel_z: bool = True
    average: int = 0

    def __post_init__(self):
        if not torch.is_tensor(self.init) and not (isinstance(self.init, str) and self.init in INITS):
            raise ValueError(f"init must be one of {INITS} or a tensor of masks (B, N, T, F), got {self.init!r}")
        checks.choice("mode", self.mode, MODES)
        checks.choice("family", self.family, FAMILIES)
        checks.choice("noise", self.noise, NOISES)
        self.noise_ratio = checks.positive("noise_ratio", self.noise_ratio)
        self.average = checks.integer("average", self.average, 0)


@dataclass
class NMFOptions:
    """The NMF baselines (``method="is_nmf"`` / ``"temporal_nmf"``) and MixDVAE's ``init="nmf"``: supervised
    NMF of the mixture with the ``nmf=`` separator's dictionaries (:func:`~pyro_dvae.masks.nmf_masks`).

    :ivar iters: NMF updates of the activations (>= 1; default 100).
    :ivar alpha: temporal-continuity weight of temporal NMF (>= 0; ``None``: the separator's).
    :ivar beta: sparseness weight of temporal NMF (>= 0; ``None``: the separator's).
    """

    iters: int = 100
    alpha: float = None
    beta: float = None

    def __post_init__(self):
        self.iters = checks.integer("iters", self.iters, 1)
        self.alpha = checks.positive("alpha", self.alpha, none=True, zero=True)
        self.beta = checks.positive("beta", self.beta, none=True, zero=True)


@dataclass
class SeparationConfig:
    """Settings of :func:`~pyro_dvae.models.separation.run_separation`.

    :ivar method: one of :data:`METHODS`: ``"mixdvae"`` (default); ``"mixture"`` (every estimate is the
        mixture); ``"oracle_ibm"`` / ``"oracle_wiener"`` (oracle masks, need ``refs=``); ``"is_nmf"`` /
        ``"temporal_nmf"`` (need ``nmf=``, an :class:`~pyro_dvae.nmf.NMFSeparator` with one dictionary per source
        name).
    :ivar algo: MixDVAE inference: ``"vem"`` (the structured guide; default), ``"svi"`` or ``"enum-svi"`` (an
        ``AutoNormal`` guide over ``s`` and the latents, ``w`` summed out exactly, started from the closed-form
        initialisation), all through :func:`pyro_dvae.inference.run`.
    :ivar num_iters: MixDVAE VEM iterations or SVI steps (>= 1; default 30).
    :ivar lr: SVI learning rate (``algo="svi"`` / ``"enum-svi"``; > 0, default 0.02).
    :ivar output: how MixDVAE reads the source STFTs from the posterior
        (:meth:`~pyro_dvae.models.separation.SeparationGuide.estimate`): ``"wiener"`` (a Wiener post-filter with
        the posterior source powers; default), ``"mean"`` (the posterior means, the reference's) or ``"mask"``
        (the mixture split by ``q(w)``, ``algo="vem"`` only).
    :ivar chunk: MixDVAE only: separate mixtures longer than ``chunk`` frames (>= 1) as independent chunks of
        ``chunk`` frames run as one batch (the priors are trained on short chunks; the time loop of a sequential
        E-S then runs ``chunk`` steps whatever the length), the last completed by mirroring. ``None`` (default):
        the whole mixture at once.
    :ivar seed: random seed (``pyro.set_rng_seed``) before the separation.
    :ivar n_fft: STFT frame length of a waveform input (samples; the priors' front end, default 1024).
    :ivar hop: STFT hop of a waveform input (samples; default 256).
    :ivar progress: show a progress bar of the MixDVAE iterations.
    :ivar vem: MixDVAE's model and guide (:class:`VEMOptions`).
    :ivar nmf: the NMF masks (:class:`NMFOptions`); the dictionaries themselves are ``run_separation``'s
        ``nmf=`` argument.
    :ivar guide: the guide of ``algo="svi"`` / ``"enum-svi"``: ``None`` (default: ``AutoNormal``), the name of an
        autoguide (:data:`~pyro_dvae.inference.svi.AUTOGUIDES`), a guide factory (an autoguide class or a
        :func:`functools.partial` of one, called with the model) or a callable guide ``guide(mix)`` (``mix`` the
        complex STFT ``(B, T, F)``) sampling ``s`` (real view ``(B, N, T, F, 2)``, plates ``batch`` dim -2 and
        ``sources`` dim -1) and each source's latents ``z_<name>`` (``(B, 1, T, z_dim)``, plate ``batch``). A
        named or factory-made guide is built on the model with ``w`` hidden (summed out exactly), started at the
        closed-form initialisation with scale 0.01, as the default; the estimates are its median of ``s``
        (:func:`~pyro_dvae.inference.svi.guide_estimate`). A dense ``auto-multivariate-normal`` covers
        ``D = 4 T F`` source values plus the latents (two sources): over about 5,000 of them (a mixture of a
        few frames) it is refused in one line (:func:`~pyro_dvae.inference.svi.check_guide_size`).
        ``algo="vem"`` runs the structured :class:`~pyro_dvae.models.separation.SeparationGuide` and takes no other
        guide (a :class:`ValueError`).
    :ivar fine_tune_prior: whether the run may change the weights of the ``priors`` passed in. ``False`` (default):
        they are frozen for the run (:func:`pyro_dvae.handlers.frozen`: no ``requires_grad``, so a guide calling
        ``pyro.module("prior", prior)`` registers none of their weights) and bitwise unchanged after it, whatever
        the guide does. ``True``: weights that a guide registers are trained in place by ``svi`` / ``enum-svi``
        (the model's own parameter sites stay hidden from the optimiser).
    """

    method: str = "mixdvae"
    algo: str = "vem"
    num_iters: int = 30
    lr: float = 0.02
    output: str = "wiener"
    chunk: int = None
    seed: int = 0
    n_fft: int = N_FFT
    hop: int = HOP
    progress: bool = False
    vem: VEMOptions = field(default_factory=VEMOptions)
    nmf: NMFOptions = field(default_factory=NMFOptions)
    guide: object = None
    fine_tune_prior: bool = False

    def __post_init__(self):
        checks.choice("method", self.method, METHODS)
        checks.choice("algo", self.algo, ALGOS)
        check_task_guide(self.guide, self.algo, "SeparationGuide")
        self.num_iters = checks.integer("num_iters", self.num_iters, 1)
        self.lr = checks.positive("lr", self.lr)
        checks.choice("output", self.output, OUTPUTS)
        if self.chunk is not None:
            self.chunk = checks.integer("chunk", self.chunk, 1)
        self.seed = checks.integer("seed", self.seed, -(2**63))
        self.n_fft = checks.integer("n_fft", self.n_fft, 1)
        self.hop = checks.integer("hop", self.hop, 1)
        self.vem, self.nmf = checks.group(VEMOptions, self.vem), checks.group(NMFOptions, self.nmf)


#: :func:`run_separation`'s flat keywords for the fields of the option groups: keyword -> (group, field).
FLAT_KEYWORDS = {
    **{k: ("vem", k) for k in ("init", "mode", "family", "noise", "noise_ratio", "learn_noise", "learn_gain",
                               "learn_weights", "sample_z", "parallel_z", "average")},
    "nmf_iters": ("nmf", "iters"), "nmf_alpha": ("nmf", "alpha"), "nmf_beta": ("nmf", "beta"),
}


def apply_overrides(config=None, caller="run_separation", **overrides):
    """``config`` (default: :class:`SeparationConfig` ``()``) with ``overrides`` applied by
    :func:`dataclasses.replace` (and so validated again): a field of :class:`SeparationConfig` by its name, a field
    of an option group by its flat keyword (:data:`FLAT_KEYWORDS`; applied after a whole group given by name).
    An unknown keyword is a :class:`TypeError` naming it and ``caller``."""
    if config is None:
        config = SeparationConfig()
    elif not isinstance(config, SeparationConfig):
        raise TypeError(f"{caller}() config must be a SeparationConfig, got {type(config).__name__}")
    top = {f.name for f in dataclasses.fields(SeparationConfig)}
    changes, groups = {}, {}
    for key, value in overrides.items():
        if key in top:
            changes[key] = value
        elif key in FLAT_KEYWORDS:
            group, name = FLAT_KEYWORDS[key]
            groups.setdefault(group, {})[name] = value
        else:
            raise TypeError(f"{caller}() got an unexpected keyword argument {key!r} (neither a SeparationConfig "
                            "field nor a flat keyword of its option groups)")
    if changes:
        config = dataclasses.replace(config, **changes)
    if groups:
        config = dataclasses.replace(config, **{group: dataclasses.replace(getattr(config, group), **values)
                                                for group, values in groups.items()})
    return config
