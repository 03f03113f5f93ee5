# SPDX-License-Identifier: Apache-2.0
"""Settings of window tracking (:func:`~pyro_dvae.models.tracking.run_tracking`)."""

from dataclasses import dataclass

from pyro_dvae import checks
from pyro_dvae.inference.svi import check_task_guide

METHODS = ("mixdvae", "vkf", "deepar")
ALGOS = ("vem", "svi", "enum-svi")
MODES = ("parallel", "sequential", "velocity")
LATENTS = ("posterior", "prior")


@dataclass
class TrackingConfig:
    """Settings of :func:`~pyro_dvae.models.tracking.run_tracking` (defaults: the MOT-3T runs of ``pyro-dvae track``).

    :ivar method: ``"mixdvae"`` (DVAE dynamics), ``"vkf"`` (constant-velocity Kalman dynamics, the same assignment
        model) or ``"deepar"`` (a deterministic LSTM autoregressive motion model, :class:`~pyro_dvae.priors.DeepAR`,
        in place of the DVAE; the same blocks with an empty ``z``).
    :ivar algo: ``"vem"`` (the structured guide) or ``"svi"`` / ``"enum-svi"`` (an ``AutoNormal`` guide over ``s``
        and ``z``, or the one of :attr:`guide`, ``w`` enumerated exactly, the dynamics variance calibrated once on
        the greedy initial tracks by :meth:`~pyro_dvae.models.tracking.TrackingModel.calibrate_dynamics`), all through
        :mod:`pyro_dvae.inference`. The VKF baseline runs with ``"vem"`` only.
    :ivar num_iters: VEM iterations, or SVI steps.
    :ivar lr: Adam learning rate of ``svi`` / ``enum-svi`` (unused by ``vem``).
    :ivar clutter_prob: prior weight of the clutter class in the assignment ``w``, in ``[0, 1)`` (0: no clutter
        class).
    :ivar ratio: initial noise-to-size ratio of the default likelihood (:class:`~pyro_dvae.likelihoods.GaussianBoxes`:
        the standard deviation of each coordinate as a fraction of the box width or height, MixDVAE's 0.04; the
        observation-noise M-step updates it); unused when ``likelihood`` is given.
    :ivar likelihood: a :class:`~pyro_dvae.likelihoods.BoxLikelihood` (default: ``GaussianBoxes(ratio)``).
        Likelihoods without closed-form Gaussian moments run with ``svi`` / ``enum-svi``.
    :ivar mode: the E-S step of ``vem`` with a DVAE prior: ``"parallel"`` (MixDVAE's iterated drift-linearised
        smoother, one decoder pass), ``"sequential"`` (the MixDVAE forward pass fed with filtered means, then a
        backward pass) or ``"velocity"`` (a constant-velocity smoother that also observes the velocity through the
        prior's one-step displacement, its acceleration noise fitted by EM: the default of ``pyro-dvae
        track-mot``) (:class:`~pyro_dvae.models.tracking.guide.SourceBlock`).
    :ivar velocity_scale: ``mode="velocity"``: the factor on the prior's variance that gives the variance of its
        velocity observation.
    :ivar sample_z: E-Z draws ``z`` (``False``: the noiseless path, each ``z_t`` at its conditional mean).
    :ivar latents: where E-Z takes ``z`` from (``vem`` with a DVAE prior): ``"posterior"`` (MixDVAE: the encoder
        run on the current source means) or ``"prior"`` (the prior's own ``p(z_t | z_{<t}, s_{<t})`` along
        them, so the dynamics read only the past: :class:`~pyro_dvae.models.tracking.guide.LatentBlock`).
    :ivar seed: random seed (set at the start of the run).
    :ivar guide: the guide of ``svi`` / ``enum-svi``: ``None`` (default: ``AutoNormal`` over ``s`` and ``z``), the
        name of an autoguide (:data:`~pyro_dvae.inference.svi.AUTOGUIDES`: ``"auto-normal"``, ``"auto-delta"``,
        ``"auto-diagonal-normal"``, ``"auto-multivariate-normal"``, ``"auto-lowrank-multivariate-normal"``), a
        guide factory (an autoguide class or a :func:`functools.partial` of one, called with the model) or a
        callable guide ``guide(obs, obs_mask)`` sampling ``s`` ``(B, N, T, 4)`` and the prior's latents (``z``)
        in the plates ``batch`` (dim -2) and ``sources`` (dim -1). A named or factory-made guide is built on the
        model with ``w`` hidden (summed out exactly), its location started at the greedy tracks and their
        encoding (``init_to_value``) and its scale at 1e-3, as the default; the estimates are its median of
        ``s`` (:func:`~pyro_dvae.inference.svi.guide_estimate`). ``algo="vem"`` runs the structured
        :class:`~pyro_dvae.models.tracking.TrackingGuide` and takes no other guide (a :class:`ValueError`).
    :ivar fine_tune_prior: whether the run may change the weights of the ``prior`` passed in. ``False`` (default):
        the prior is frozen for the run (:func:`pyro_dvae.handlers.frozen`: no ``requires_grad``, so a guide calling
        ``pyro.module("prior", prior)`` registers none of its weights) and its ``state_dict`` is bitwise unchanged
        after it, whatever the guide does. ``True``: it is left as it is, and weights that a guide registers are
        trained in place by ``svi`` / ``enum-svi`` (the model itself registers the likelihood's and clutter's
        parameters, never the prior's).
    """

    method: str = "mixdvae"
    algo: str = "vem"
    num_iters: int = 20
    lr: float = 0.01
    clutter_prob: float = 0.0
    ratio: float = 0.04
    likelihood: object = None
    mode: str = "parallel"
    velocity_scale: float = 5.0
    sample_z: bool = True
    latents: str = "posterior"
    seed: int = 0
    guide: object = None
    fine_tune_prior: bool = False

    def __post_init__(self):
        checks.choice("method", self.method, METHODS)
        checks.choice("algo", self.algo, ALGOS)
        if self.method == "vkf" and self.algo != "vem":
            raise ValueError("the VKF baseline runs with algo='vem' (its dynamics are a closed-form smoother)")
        check_task_guide(self.guide, self.algo, "TrackingGuide")
        checks.choice("mode", self.mode, MODES)
        self.velocity_scale = checks.positive("velocity_scale", self.velocity_scale)
        checks.choice("latents", self.latents, LATENTS)
        if self.latents != "posterior" and self.algo != "vem":
            raise ValueError(f"latents={self.latents!r} is an E-Z step of algo='vem'; {self.algo!r} infers z with "
                             "its guide")
        self.num_iters = checks.integer("num_iters", self.num_iters, 1)
        self.lr = checks.positive("lr", self.lr)
        checks.number("clutter_prob", self.clutter_prob, "in [0, 1)", lambda v: 0.0 <= v < 1.0)
        self.ratio = checks.positive("ratio", self.ratio)
