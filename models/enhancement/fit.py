# SPDX-License-Identifier: Apache-2.0
"""Fitting an :class:`~pyro_dvae.models.enhancement.model.EnhancementModel` to one utterance: RVAE-VEM
(:func:`fit_vem`) and SVI (:func:`fit_svi`), both through :func:`pyro_dvae.inference.run`."""

import contextlib
import dataclasses
import functools

import pyro
import torch
from torch import nn

from pyro_dvae.masks import wiener_gain as wiener
from pyro_dvae.priors import SequentialNormal

from .config import FLOOR_SHARE, PLATES, VEMFitOptions
from .guide import EnhancementGuide
from .model import kept_energy, speech_share


def _keep_if_more(model, best, mask, power, step, out=None):
    """The max-kept selection of :func:`fit_vem` / :func:`fit_svi`: store ``out`` (the output gain of the same
    fit, or a callable returning it, called only if that fit is the one finally kept: :func:`_resolve_selected`;
    ``None``: ``mask``) on ``model`` when the Wiener ``mask`` keeps more energy than ``best[0]``, the best so far;
    returns the share ``mask`` keeps."""
    kept = kept_energy(mask, power)
    if kept > best[0]:
        out = mask if out is None else out
        best[0], model.selected_mask, model.selected_iter = kept, out if callable(out) else out.detach().clone(), step
    return kept


def _resolve_selected(model):
    """Evaluate a deferred ``model.selected_mask`` (a callable left by :func:`_keep_if_more`): the output gain of a
    checked fit is computed only for the one kept (the heavy-tailed gain costs a few hundred ms per utterance)."""
    if callable(model.selected_mask):
        model.selected_mask = model.selected_mask().detach()


# ------------------------------------------------------------------------------------------------ fitting
def fit_vem(model, power, options=None, *, progress=False, **overrides):
    """RVAE-VEM for the NMF model through ``inference.run("vem", ...)``; returns the InferenceResult.

    :param EnhancementModel model: with an NMF noise model (:func:`build_model`).
    :param power: noisy power ``(B, T, F)``.
    :param VEMFitOptions options: the fit's settings (default ``VEMFitOptions()``); ``overrides``: fields of it
        to replace (``fit_vem(model, power, num_iters=10, nmf_init="floor")``).
    :param bool progress: show a progress bar.

    ``select=None`` (default): the last iteration's fit. ``select="max-kept"`` keeps, in ``model.selected_mask``,
    the Wiener mask (from the E-V block's posterior draws) of the iteration whose speech estimate keeps the
    largest share of the input energy, and ``model.selected_iter`` (0-based): a guard without clean reference
    against a noise model that *learns its dictionary* taking the speech over as the iterations go on (off by
    default in :class:`NMFOptions`, whose dictionary is fixed; see BENCHMARKS.md)."""
    from pyro_dvae import inference

    opts = dataclasses.replace(options or VEMFitOptions(), **overrides)
    model.noise.initialise(power, opts.nmf_init, opts.quantile, opts.mean_level)
    model.speech_hint = None
    model.log_gain = None
    model.selected_mask, model.selected_iter = None, None
    model.gain_floor = opts.gain_floor
    model.gain = torch.ones(power.shape[:-1], dtype=power.dtype, device=power.device)
    if opts.gain_init:
        model.init_gain(power, opts.num_samples)
    guide = EnhancementGuide(model, opts.e_steps, opts.lr, opts.num_samples)
    best = [-1.0]

    def track(i, _):
        v_s = guide["v"].v_s * model.speech_gain(power.shape[0], power)
        v_n = model.noise.variance().unsqueeze(0)
        _keep_if_more(model, best, wiener(v_s, v_n), power, i, functools.partial(model.output_gain, v_s, v_n, power))

    result = inference.run("vem", model, guide, power, num_iters=opts.num_iters, elbo=EnhancementGuide.elbo_estimate,
                           progress=progress, callback=track if opts.select else None)
    _resolve_selected(model)
    return result


def adam(params, lr):
    """:class:`torch.optim.Adam` with the fused kernel (one pass over all tensors: about 3x faster than
    ``foreach`` on CPU) where this torch build has one, else ``foreach``."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


class JointAdam(pyro.optim.PyroOptim):
    """A :class:`~pyro.optim.PyroOptim` stepping *one* fused :class:`torch.optim.Adam` over all the
    parameters of a step, after clipping their global gradient norm to ``clip_norm``; the tensors in ``fast``
    get ``fast_factor`` times the learning rate. Pyro's own optimisers keep one torch optimiser per parameter
    (and clip per parameter); with the ~30 tensors of an encoder and a noise network that per-tensor loop is a
    tenth of a small step's time."""

    def __init__(self, lr, clip_norm=10.0, fast=(), fast_factor=10.0):
        super().__init__(torch.optim.Adam, {"lr": lr})
        self.lr, self.clip_norm, self._opt, self._ids = float(lr), clip_norm, None, None
        self.fast, self.fast_factor = {id(t) for t in fast}, float(fast_factor)

    def __call__(self, params, *args, **kwargs):
        # Pyro hands the step's parameters over as a set, ordered by memory address: order them by their names in
        # the parameter store, so that the clipped norm (a sum over tensors) and hence a fit are the same run to run
        names = {id(p): n for n, p in pyro.get_param_store().named_parameters()}
        params = sorted(params, key=lambda p: (names.get(id(p), ""), tuple(p.shape)))
        ids = [id(p) for p in params]
        if self._opt is None or ids != self._ids:
            groups = [{"params": [p for p in params if id(p) not in self.fast]},
                      {"params": [p for p in params if id(p) in self.fast], "lr": self.lr * self.fast_factor}]
            self._opt, self._ids = adam([g for g in groups if g["params"]], self.lr), ids
        if self.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.clip_norm)
        self._opt.step()


def _guide_for(model, power, guide):
    """``guide`` (a name of :data:`~pyro_dvae.inference.svi.AUTOGUIDES`, a factory or a callable) built on
    ``model.model``, a named or factory-made one started at the encoder's posterior mean (its noiseless path) and
    static latents on ``power``, with the encoder's median posterior scale as its initial scale: where the default
    guide (the encoder) starts."""
    from pyro_dvae import inference

    with torch.no_grad():
        q, statics = model.prior.encode(power, with_statics=True)
        if isinstance(q, SequentialNormal):
            z0 = q.noiseless()
            scale = q.params_fn(z0)[1]
        else:
            z0, scale = q.mean, q.stddev
    return inference.svi.build_guide(guide, model.model, init_values={"z": z0, **statics},
                                     init_scale=float(scale.median()), model_args=(power,))


def fit_svi(model, power, num_steps=100, lr=5e-4, hint_every=20, progress=False, fit_gain=False, select="max-kept",
            check_every=20, guide=None):
    """U-NA (and U-NDA) fitting of the encoder and the deep noise model through ``inference.run("svi", ...)``
    with :class:`~pyro.infer.TraceMeanField_ELBO` and :class:`JointAdam` (gradient norm clipped at 10; the decoder
    stays frozen); returns the InferenceResult. ``fit_gain``: also fit one speech gain per utterance (started at
    its closed-form value, ten times the step size); off by default, as in the reference. The parameters are
    registered in Pyro's global store under ``model.param_prefix`` for the run only.

    ``select``, a guard without clean reference checked every ``check_every`` steps (and at the last) on the
    Wiener mask of 2 posterior draws: ``None``, the last step's fit; ``"max-kept"``, the checked fit that keeps
    the largest share of the input energy (as :func:`fit_vem`); ``"floor"``, the last step's fit unless its
    speech estimate keeps under :data:`FLOOR_SHARE` of :func:`speech_share` (the speech share that the input's
    noise floor leaves): the noise network has then taken speech over, and the last checked fit that
    kept that much is used instead (the max-kept one if none did). The kept mask is ``model.selected_mask``
    (``None``: the last step's fit) and its 0-based step ``model.selected_iter``.

    ``guide``: ``None`` (the encoder, :meth:`EnhancementModel.guide`, fine-tuned) or a guide fitted in its place
    (:attr:`~pyro_dvae.models.enhancement.EnhanceConfig.guide`: an autoguide name, a factory or a callable
    ``guide(power)`` sampling ``z`` ``(B, T, z_dim)`` in the plate ``batch`` (dim -1)); the encoder then stays as
    it is, the posterior draws (:meth:`EnhancementModel.posterior`: the guards, the output) come from the fitted
    guide (``model.posterior_guide``), and the fit runs in a scope of Pyro's parameter store of its own."""
    from pyro_dvae import inference

    if not model.noise.deep:
        raise ValueError("fit_svi fits deep noise models; the nmf model runs by VEM (fit_vem)")
    if select not in (None, "max-kept", "floor"):
        raise ValueError(f"select must be None, 'max-kept' or 'floor', got {select!r}")
    model.speech_hint = None
    model.selected_mask, model.selected_iter = None, None
    best = [-1.0]
    floor = FLOOR_SHARE * speech_share(power, model.bins) if select == "floor" else None
    above = []  # "floor": (mask, step) of the last checked fit that kept at least the floor

    def refresh(step, result):
        if model.prior.autoregressive and (step + 1) % hint_every == 0:
            model.refresh_hint(power)
        if select and ((step + 1) % check_every == 0 or step + 1 == num_steps):
            with torch.no_grad():
                v_s, v_n, _ = model.posterior(power, 2)
            mask = wiener(v_s, v_n)  # the guards read the Wiener gain's kept energy, whatever the output gain
            out = functools.partial(model.output_gain, v_s, v_n, power)  # computed only for the fit finally kept
            kept = _keep_if_more(model, best, mask, power, step, out)  # "max-kept"'s choice, "floor"'s last resort
            if select != "floor":
                return
            if kept >= floor:
                above[:] = [out, step]
            if step + 1 < num_steps:
                return
            if kept >= floor:  # the last step's fit (its mask is drawn again with all the posterior samples)
                model.selected_mask = model.selected_iter = None
            elif above:  # taken over: the last checked fit that kept enough (else the max-kept one, held already)
                model.selected_mask, model.selected_iter = above

    model.log_gain = None
    model.gain = torch.ones((), dtype=power.dtype, device=power.device)
    model.posterior_guide = None
    with contextlib.nullcontext() if guide is None else pyro.get_param_store().scope():
        if guide is not None:
            model.posterior_guide = guide = _guide_for(model, power, guide)
        if fit_gain:  # closed-form start, then fitted with the rest
            model.log_gain = nn.Parameter(model.init_gain(power).log())
        model.clear_params()
        model.register_params = True
        try:
            result = inference.run("svi", model.model, model.guide if guide is None else guide, power,
                                   num_steps=num_steps,
                                   optim=JointAdam(lr, fast=[model.log_gain] if fit_gain else []), loss="meanfield",
                                   max_plate_nesting=PLATES, callback=refresh, progress=progress)
            _resolve_selected(model)
            return result
        finally:
            model.register_params = False
            model.clear_params()


def eval_mode_backward(device):
    """A context where an RNN in eval mode can be differentiated on ``device``: cuDNN's RNN has no backward
    in eval mode, and the frozen speech prior's encoder is differentiated in eval mode (its weights are tuned,
    nothing in the zoo has dropout); off CUDA, nothing changes."""
    device = torch.device(device)
    return torch.backends.cudnn.flags(enabled=False) if device.type == "cuda" else contextlib.nullcontext()
