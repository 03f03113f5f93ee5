# SPDX-License-Identifier: Apache-2.0
"""
Blocks of a structured variational family, for variational EM (:func:`~pyro_dvae.inference.vem.vem`).

A *block* is one coordinate of the coordinate ascent: either a variational
factor ``q(.)`` of the guide (an E-step, ``kind="e"``) or a group of model
parameters (an M-step, ``kind="m"``). Every block has an
:meth:`~Block.update` that improves the ELBO in its own coordinate with all
other blocks held fixed. An E-block may also sample its sites in the guide
through :meth:`~Block.guide`, and a :class:`StructuredGuide` runs these in
order, so that later factors can condition on earlier samples (e.g. an
amortised ``q(z | s)`` reading ``s``).

Blocks are :class:`torch.nn.Module` s: register a block's state with
``register_buffer`` (closed-form statistics) or as parameters / submodules so
that ``guide.to(device)`` and ``state_dict()`` cover it.
"""

import torch
from pyro.infer import ELBO, Trace_ELBO

__all__ = ["Block", "ClosedFormBlock", "GradientBlock", "StructuredGuide"]

KINDS = ("e", "m")


class Block(torch.nn.Module):
    """
    Base class of all blocks.

    Subclasses implement :meth:`update`, and E-blocks that own sample sites
    either override :meth:`guide` or pass ``guide_fn``.

    :param str name: a name unique within a schedule.
    :param str kind: ``"e"`` for a variational factor (E-step) or ``"m"``
        for model parameters (M-step).
    :param callable guide_fn: optional ``guide_fn(*args, values, **kwargs)``
        used as :meth:`guide`.
    """

    def __init__(self, name: str, kind: str = "e", guide_fn=None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"block {name!r}: kind must be one of {KINDS}, got {kind!r}")
        self.name = name
        self.kind = kind
        self.guide_fn = guide_fn

    def extra_repr(self):
        return f"name={self.name!r}, kind={self.kind!r}"

    def update(self, model, guide, *args, **kwargs) -> None:
        """
        Improves the ELBO with respect to this block, in place, with all other
        blocks held fixed.

        :param model: the model.
        :param guide: the whole guide (e.g. a :class:`StructuredGuide`, from
            which other blocks can be read by name).
        :param args: the model's positional arguments.
        :param kwargs: the model's keyword arguments.
        """
        raise NotImplementedError(f"{type(self).__name__}.update() is not implemented")

    @property
    def has_guide(self) -> bool:
        """Whether this block samples sites in the guide."""
        return self.guide_fn is not None or type(self).guide is not Block.guide

    def guide(self, *args, values: dict, **kwargs) -> dict:
        """
        Samples this block's sites with ``pyro.sample``.

        :param args: the model's positional arguments.
        :param dict values: the values sampled by earlier blocks, by site name.
        :param kwargs: the model's keyword arguments.
        :returns: the values sampled here, by site name.
        :rtype: dict
        """
        if self.guide_fn is None:
            return {}
        return self.guide_fn(*args, values=values, **kwargs)


class ClosedFormBlock(Block):
    """
    A block whose optimum given all other blocks is analytic, as in
    coordinate ascent variational inference (CAVI) [1] or an exact M-step.
    Either subclass it and implement :meth:`update`, or pass ``update_fn``;
    ``update_fn`` is called under :func:`torch.no_grad`, so it may modify
    tensors in place.

    Example::

        def update_sigma2(model, guide, x):
            q = guide["q_z"]
            model.sigma2 = ((x - q.loc) ** 2 + q.var).mean()

        m_step = ClosedFormBlock("sigma2", update_sigma2, kind="m")

    :param str name: block name.
    :param callable update_fn: ``update_fn(model, guide, *args, **kwargs)``.
    :param str kind: ``"e"`` or ``"m"``.
    :param callable guide_fn: see :class:`Block`.

    **References:**

    1. *Variational Inference: A Review for Statisticians*,
       David M. Blei, Alp Kucukelbir, Jon D. McAuliffe (2017), JASA 112(518).
    """

    def __init__(self, name: str, update_fn=None, kind: str = "e", guide_fn=None):
        super().__init__(name, kind=kind, guide_fn=guide_fn)
        self.update_fn = update_fn

    def update(self, model, guide, *args, **kwargs) -> None:
        if self.update_fn is None:
            raise NotImplementedError(
                f"{type(self).__name__} {self.name!r}: pass update_fn or override update()"
            )
        with torch.no_grad():
            self.update_fn(model, guide, *args, **kwargs)


class GradientBlock(Block):
    """
    A parametric or amortised block (e.g. a neural encoder ``q(z | s)``, or
    neural model parameters in an M-step) improved by a few gradient steps on
    ``loss`` per update, all other blocks held fixed: gradients are taken with
    :func:`torch.autograd.grad` with respect to this block's tensors only, so
    no other tensor's ``.grad`` is touched. The torch optimiser is created at
    the first update and kept across updates.

    Safe handling of numerical failure: a step whose loss or gradients are not
    finite is skipped (no parameter changes), the block's learning rate is
    halved, and :attr:`num_skipped` is incremented.

    Example::

        q_z2 = GradientBlock(
            "q_z2",
            params=lambda: [pyro.param("z2_loc"), pyro.param("z2_scale")],
            num_steps=5,
            lr=0.05,
            guide_fn=lambda x, values: {"z2": pyro.sample("z2", dist.Normal(
                pyro.param("z2_loc", torch.tensor(0.0)),
                pyro.param("z2_scale", torch.tensor(1.0), constraint=constraints.positive)))},
        )

    :param str name: block name.
    :param params: the tensors this block owns: an :class:`~torch.nn.Module`
        (its ``.parameters()``), a callable returning an iterable of tensors,
        or an iterable of tensors. It is resolved after the first loss
        evaluation, so Pyro parameters created lazily by the guide can be
        named; constrained Pyro parameters are optimised in their
        unconstrained space.
    :param int num_steps: gradient steps per update.
    :param float lr: learning rate.
    :param optim_cls: a :class:`torch.optim.Optimizer` class.
    :param loss: ``loss(model, guide, *args, **kwargs) -> scalar tensor`` to
        minimise, or an :class:`~pyro.infer.elbo.ELBO` (its
        ``differentiable_loss``); defaults to
        ``Trace_ELBO().differentiable_loss``.
    :param str kind: ``"e"`` or ``"m"``.
    :param float clip_norm: if set, clip the gradient norm to this value.
    :param callable guide_fn: see :class:`Block`.
    """

    def __init__(
        self,
        name: str,
        params,
        num_steps: int = 1,
        lr: float = 1e-3,
        optim_cls=torch.optim.Adam,
        loss=None,
        kind: str = "e",
        clip_norm=None,
        guide_fn=None,
    ):
        super().__init__(name, kind=kind, guide_fn=guide_fn)
        if num_steps < 1:
            raise ValueError(f"block {name!r}: num_steps must be positive, got {num_steps}")
        if not lr > 0:
            raise ValueError(f"block {name!r}: lr must be positive, got {lr}")
        # kept in a list so that a module passed here is not registered as a submodule
        self._source = [params]
        self._params = None
        self.num_steps = num_steps
        self.lr = lr
        self.optim_cls = optim_cls
        self.optimizer = None
        if loss is None:
            loss = Trace_ELBO()
        self.loss = loss.differentiable_loss if isinstance(loss, ELBO) else loss
        self.clip_norm = clip_norm
        self.num_skipped = 0

    def _resolve(self):
        source = self._source[0]
        if isinstance(source, torch.nn.Module):
            tensors = source.parameters()
        elif callable(source):
            tensors = source()
        else:
            tensors = source
        params = []
        for t in tensors:
            unconstrained = getattr(t, "unconstrained", None)  # a constrained pyro.param
            if callable(unconstrained):
                t = unconstrained()
            if not (isinstance(t, torch.Tensor) and t.is_leaf and t.requires_grad):
                raise ValueError(f"block {self.name!r}: params must be leaf tensors that require grad")
            params.append(t)
        if not params:
            raise ValueError(f"block {self.name!r}: params is empty")
        self._params = params
        self.optimizer = self.optim_cls(params, lr=self.lr)

    def parameters(self, recurse: bool = True):
        """The tensors this block optimises (empty before the first update)."""
        return iter(self._params or ())

    def update(self, model, guide, *args, **kwargs) -> None:
        for _ in range(self.num_steps):
            loss = self.loss(model, guide, *args, **kwargs)
            if self._params is None:
                self._resolve()
            if not loss.requires_grad:
                raise RuntimeError(f"block {self.name!r}: the loss does not depend on any tensor")
            grads = torch.autograd.grad(loss, self._params, allow_unused=True)
            finite = torch.isfinite(loss.detach())
            for g in grads:
                if g is not None:
                    finite = finite & torch.isfinite(g).all()
            if not finite:
                self.num_skipped += 1
                self.lr *= 0.5
                for group in self.optimizer.param_groups:
                    group["lr"] = self.lr
                continue
            for p, g in zip(self._params, grads):
                p.grad = g
            if self.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(self._params, self.clip_norm)
            self.optimizer.step()
            for p in self._params:
                p.grad = None


class StructuredGuide(torch.nn.Module):
    """
    A Pyro guide made of ordered blocks. Calling it runs the :meth:`Block.guide`
    of every E-block that has one, in order, threading a dict of the values
    sampled so far, and returns that dict. M-blocks and blocks without sites
    only take part in :func:`~pyro_dvae.inference.vem.vem` updates.

    Example::

        guide = StructuredGuide([q_s, q_z_given_s, noise_m_step], exact_elbo=None)
        guide(x)               # samples s, then z given s
        guide["q_s"]           # a block by name
        vem(model, guide, x, num_iters=20)

    :param list blocks: the blocks, E and M, in update order; names must be unique.
    :param callable exact_elbo: optional ``exact_elbo(model, guide, *args,
        **kwargs)`` returning the ELBO in closed form; subclasses may override
        :meth:`exact_elbo` instead.
    """

    def __init__(self, blocks, exact_elbo=None):
        super().__init__()
        blocks = list(blocks)
        for block in blocks:
            if not isinstance(block, Block):
                raise TypeError(f"StructuredGuide expects Block instances, got {type(block).__name__}")
        names = [block.name for block in blocks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"duplicate block names: {duplicates}")
        self._blocks = torch.nn.ModuleList(blocks)
        self._exact_elbo = exact_elbo

    @property
    def blocks(self) -> list:
        """The ordered list of all blocks (E and M)."""
        return list(self._blocks)

    def __getitem__(self, name: str) -> Block:
        for block in self._blocks:
            if block.name == name:
                return block
        raise KeyError(f"no block named {name!r}; blocks: {[b.name for b in self._blocks]}")

    def forward(self, *args, **kwargs) -> dict:
        values = {}
        for block in self._blocks:
            if block.kind == "m" or not block.has_guide:
                continue
            values.update(block.guide(*args, values=values, **kwargs) or {})
        return values

    def exact_elbo(self, model, *args, **kwargs):
        """
        The ELBO in closed form, or ``None`` if not available. Defaults to the
        ``exact_elbo`` callable given to the constructor.
        """
        if self._exact_elbo is None:
            return None
        return self._exact_elbo(model, self, *args, **kwargs)

    def elbo(self, model, *args, **kwargs):
        """
        :returns: the exact ELBO as a detached floating-point scalar tensor, or
            ``None`` if :meth:`exact_elbo` is not available.
        """
        value = self.exact_elbo(model, *args, **kwargs)
        if value is None:
            return None
        if not isinstance(value, torch.Tensor):
            value = torch.tensor(float(value))
        elif not value.is_floating_point():
            value = value.to(torch.get_default_dtype())
        return value.detach()
