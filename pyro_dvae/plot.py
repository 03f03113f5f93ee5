# SPDX-License-Identifier: Apache-2.0
"""Figures (needs the ``plot`` extra: matplotlib)."""

import numpy as np


def plot_tracks(gt, estimates, path, title="", obs=None, obs_mask=None):
    """Save a PNG of box-centre trajectories: ground truth (dashed) and each method's estimates.

    :param gt: ``(T, N, 4)`` boxes; :param dict estimates: method name -> ``(T, N, 4)`` boxes.
    :param obs: optional ``(T, K, 4)`` detections drawn as dots (``obs_mask (T, K)``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        raise ImportError("plotting needs matplotlib: pip install 'pyro-dvae[plot]'") from None
    centre = lambda b: (np.asarray(b)[..., :2] + np.asarray(b)[..., 2:]) / 2  # noqa: E731
    fig, axes = plt.subplots(1, len(estimates), figsize=(5 * len(estimates), 4), squeeze=False)
    colours = plt.cm.tab10.colors
    for ax, (name, est) in zip(axes[0], estimates.items()):
        if obs is not None:
            c = centre(obs)[np.asarray(obs_mask, bool)]
            ax.scatter(c[:, 0], c[:, 1], s=4, c="0.6", label="detections")
        g, e = centre(gt), centre(est)
        for n in range(g.shape[1]):
            ax.plot(g[:, n, 0], g[:, n, 1], "--", color=colours[n % 10], lw=1)
            ax.plot(e[:, n, 0], e[:, n, 1], "-", color=colours[n % 10], lw=1.5)
        ax.set_title(f"{title} {name}".strip())
        ax.invert_yaxis()
        ax.set_xlabel("x (normalised)")
        ax.set_ylabel("y (normalised)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
