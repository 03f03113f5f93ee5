# SPDX-License-Identifier: Apache-2.0
"""The benchmarks' figures in BENCHMARKS.md's units.

pytest-benchmark's table gives seconds per *round* (one ``vem`` run of several iterations, one ``fit_svi`` of
30 steps, ...), while BENCHMARKS.md quotes milliseconds per iteration, per step or per sequence. Each benchmark
calls the ``readme_units`` fixture with its figures: they go into ``benchmark.extra_info`` (and so into
``--benchmark-json``), and one line per benchmark is printed at the end of the run, in a section of its own
after the table (``-s`` also shows it as the test ends).
"""

import pytest

_LINES = []


class ReadmeUnits:
    """What the ``readme_units`` fixture gives a benchmark: call it as ``readme_units(summary, **figures)``
    once the benchmark has run, to store ``figures`` and ``summary`` (a one-line text with the units) in
    ``benchmark.extra_info`` and print the line; :attr:`round_median_s` is the table's median per round."""

    def __init__(self, benchmark, name):
        self.benchmark, self.name = benchmark, name

    @property
    def round_median_s(self):
        """The median seconds per round of the finished benchmark (``nan`` with ``--benchmark-disable``)."""
        stats = getattr(self.benchmark.stats, "stats", None)
        return float("nan") if stats is None else float(stats.median)

    def __call__(self, summary, **figures):
        self.benchmark.extra_info.update(figures)
        self.benchmark.extra_info["summary"] = summary
        line = f"{self.name}: {summary}"
        _LINES.append(line)
        print("\n" + line)


@pytest.fixture
def readme_units(benchmark, request):
    """A :class:`ReadmeUnits` for this benchmark."""
    return ReadmeUnits(benchmark, request.node.name)


@pytest.fixture
def time_training_step(benchmark):
    """``time_training_step(prior, x, warmup, rounds)``: benchmark one forward + backward training step of
    ``prior`` on ``x`` (negative ELBO with analytic KL, Pyro validation off), one step per round after
    ``warmup`` untimed steps; returns the last loss."""
    import pyro

    from pyro_dvae.training import elbo_loss

    def run(prior, x, warmup, rounds):
        def step():
            prior.zero_grad(set_to_none=True)
            loss = elbo_loss(prior, x)
            loss.backward()
            return loss

        with pyro.validation_enabled(False):
            for _ in range(warmup):
                step()
            return benchmark.pedantic(step, rounds=rounds, iterations=1)

    return run


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's table
def pytest_terminal_summary(terminalreporter):
    if _LINES:
        terminalreporter.write_sep("-", "benchmark figures in BENCHMARKS.md's units")
        for line in _LINES:
            terminalreporter.write_line(line)
