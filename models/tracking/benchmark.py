# SPDX-License-Identifier: Apache-2.0
"""The MOT-3T protocol of ``pyro-dvae track``: MixDVAE's windows of MOTChallenge sequences (``N`` identities picked
from the ground truth per window, :func:`~pyro_dvae.data.mot.build_windows`), every method tracked on the same
windows (:func:`run_tracking`) and scored with the CLEAR-MOT / identity metrics
(:func:`~pyro_dvae.metrics.tracking_metrics`).

- :func:`load_mot_sequences`: the ground truth and detections of MOTChallenge sequence folders;
- :func:`mot_windows`: the windows of several loaded sequences;
- :func:`benchmark_windows`: every method on them, returning the summary dict (one metrics dict per method);
- :func:`format_header` / :func:`format_row`: the 13-column results table;
- :func:`plot_benchmark_windows`: figures of a few windows, every method in each;
- :func:`track_windows_benchmark`: all of it from a MOTChallenge folder (what ``pyro-dvae track`` runs).
"""

import math
import os
import time
import warnings
from dataclasses import replace

from .config import METHODS, TrackingConfig
from .run import load_tracking_prior, run_tracking, windows_to_tensors

#: printed under the table
MOTP_NOTE = ("MOTP is reported as 100 * mean IoU of matched boxes (motmetrics' motp is 1 - IoU; the JSON keeps it); "
             "n/a: undefined (no matched box)")


def load_mot_sequences(folders, det_file="det/det.txt", min_score=None):
    """The ground truth and detections of MOTChallenge sequence folders.

    A missing or empty detection file is an error naming ``--det-file``
    (:func:`~pyro_dvae.data.mot.read_detection_file`); detections all removed by ``min_score`` a warning.

    :param dict folders: ``{name: folder}`` (:func:`~pyro_dvae.data.mot.sequence_folders`).
    :param str det_file: the detection file, relative to each folder.
    :param float min_score: detections scoring below this are dropped from the windows (``None``: keep all); here
        only counted.
    :returns: ``(sequences, counts)``: ``{name: (info, gt, det)}`` (the input of :func:`mot_windows`) and
        ``{name: {"detections", "kept"}}``.
    """
    from pyro_dvae.data.mot import load_sequence, read_detection_file

    sequences, counts = {}, {}
    for name, seq_dir in folders.items():
        seq = os.path.basename(os.path.normpath(seq_dir))
        det = read_detection_file(seq_dir, det_file)
        info, gt, _ = load_sequence(seq_dir, det_file="")
        kept = len(det.frame) if min_score is None else int((det.score >= min_score).sum())
        if kept == 0:
            warnings.warn(f"--min-score {min_score:g} removes every detection of {seq} (scores {det.score.min():g} "
                          f"to {det.score.max():g}): every box is missed", stacklevel=2)
        sequences[name], counts[name] = (info, gt, det), {"detections": len(det.frame), "kept": kept}
    return sequences, counts


def mot_windows(sequences, config=None, **overrides):
    """The MOT-3T windows of loaded sequences.

    :param dict sequences: ``{name: (info, gt, det)}`` (:class:`~pyro_dvae.data.mot.SeqInfo`, ground truth and
        detection :class:`~pyro_dvae.data.mot.MOTTable` s).
    :param WindowConfig config: the window settings (:class:`~pyro_dvae.data.mot.WindowConfig`).
    :param overrides: fields of ``WindowConfig`` replacing those of ``config``.
    :returns: ``(windows, stats)``: the list of :class:`~pyro_dvae.data.mot.MOTWindow` in sequence order and the
        :class:`~pyro_dvae.data.mot.WindowStats` (windows built and skipped).
    """
    from pyro_dvae.data.mot import WindowConfig, WindowStats, build_windows

    cfg = replace(config, **overrides) if config is not None else WindowConfig(**overrides)
    stats, windows = WindowStats(), []
    for info, gt, det in sequences.values():
        windows += build_windows(gt, det, info, config=cfg, stats=stats)
    return windows, stats


def benchmark_windows(windows, methods=METHODS, *, prior=None, deepar=None, init_gt=False, config=None, report=None,
                      **overrides):
    """Track ``windows`` with every method and score each (the table of ``pyro-dvae track``).

    Every method runs with ``config``; the baselines (``vkf``, ``deepar``) always run with ``algo="vem"``.

    :param list windows: :class:`~pyro_dvae.data.mot.MOTWindow` s of one length and number of sources.
    :param methods: methods of :data:`METHODS`, in order (repeats are dropped).
    :param prior: the DVAE prior of ``mixdvae`` (default: the shipped SRNN trajectory prior).
    :param deepar: the Deep AR model of ``deepar`` (default: the shipped one).
    :param bool init_gt: seed the sources with their first-frame ground-truth boxes (identity given at ``t = 0``).
    :param TrackingConfig config: the settings (``algo``, ``num_iters``, ``clutter_prob``, ``seed``, ...; its
        ``method`` is replaced by each method).
    :param callable report: ``report(method, metrics)`` called after each method (e.g. to print its row).
    :param overrides: fields of :class:`TrackingConfig` replacing those of ``config``.
    :returns: ``(summary, estimates)``: ``{method: metrics}`` (:func:`~pyro_dvae.metrics.tracking_metrics` plus
        ``num_windows``, ``seconds_per_iter_per_seq`` and ``seconds_total``) and ``{method: (B, T, N, 4) array}``.
    """
    from pyro_dvae import pretrained
    from pyro_dvae.metrics import tracking_metrics

    base = replace(config, **overrides) if config is not None else TrackingConfig(**overrides)
    obs, mask, gt = windows_to_tensors(windows)
    summary, estimates = {}, {}
    for method in dict.fromkeys(methods):
        t0 = time.perf_counter()
        if method == "mixdvae" and prior is None:
            prior = pretrained.load()
        if method == "deepar" and deepar is None:
            deepar = pretrained.load("deepar_mot")
        cfg = replace(base, method=method, algo=base.algo if method == "mixdvae" else "vem")
        est, res = run_tracking(obs, mask, gt.shape[2], prior=deepar if method == "deepar" else prior,
                                seeds=gt[:, 0] if init_gt else None, config=cfg)
        m = tracking_metrics(list(gt.numpy()), list(est.numpy()))
        m.update(num_windows=len(windows), seconds_per_iter_per_seq=res.seconds_per_iter / len(windows),
                 seconds_total=time.perf_counter() - t0)
        summary[method], estimates[method] = m, est.numpy()
        if report is not None:
            report(method, m)
    return summary, estimates


def _fmt(value, scale=1.0, width=6, digits=1):
    return f"{'n/a':>{width}s}" if value is None or not math.isfinite(value) else f"{scale * value:{width}.{digits}f}"


def format_header():
    """The header of the results table (13 columns)."""
    return (f"{'method':10s} {'MOTA':>6s} {'MOTP':>6s} {'IDF1':>6s} {'#IDS':>5s} {'%IDS':>6s} {'MT':>4s} {'ML':>4s} "
            f"{'#FP':>6s} {'%FP':>6s} {'#FN':>6s} {'%FN':>6s} {'ms/it/seq':>9s}")


def format_row(method, m):
    """One method's row of the results table (percentages; MOTP as 100 * mean IoU, see :data:`MOTP_NOTE`)."""
    motp = 1 - m["motp"] if m["motp"] is not None and math.isfinite(m["motp"]) else None
    return (f"{method:10s} {_fmt(m['mota'], 100)} {_fmt(motp, 100)} {_fmt(m['idf1'], 100)} "
            f"{m['num_switches']:5d} {_fmt(m['pct_switches'], 100, digits=2)} {m['mostly_tracked']:4d} "
            f"{m['mostly_lost']:4d} {m['num_false_positives']:6d} {_fmt(m['pct_false_positives'], 100, digits=2)} "
            f"{m['num_misses']:6d} {_fmt(m['pct_misses'], 100, digits=2)} "
            f"{_fmt(m['seconds_per_iter_per_seq'], 1000, 9, 3)}")


def plot_benchmark_windows(windows, estimates, out_dir, k=3):
    """One figure per window for ``k`` windows spread over the run, every method in it (needs matplotlib);
    returns the PNG paths."""
    from pyro_dvae.plot import pick_windows, plot_windows

    seq_len = windows[0].gt.shape[0]
    return plot_windows([w.gt for w in windows], estimates, out_dir, indices=pick_windows(len(windows), k),
                        detections=([w.obs for w in windows], [w.obs_mask for w in windows]),
                        titles=[f"{w.seq} frames {w.start}-{w.start + seq_len - 1}" for w in windows],
                        names=[f"{w.seq}_{w.start}_{i}" for i, w in enumerate(windows)],
                        frame0=[w.start for w in windows], gt_ids=[w.ids for w in windows])


def track_windows_benchmark(mot_dir, seqs=None, *, det_file="det/det.txt", windows=None, methods=METHODS, prior=None,
                            deepar=None, init_gt=False, config=None, plot=None, log=None):
    """The MOT-3T benchmark of ``pyro-dvae track``: the windows of MOTChallenge sequences, every method tracked on
    them and scored.

    The steps: the priors (:func:`~pyro_dvae.models.tracking.run.load_tracking_prior`: a checkpoint or shipped name
    that is no box-trajectory prior is an error before any work or output), the sequence folders
    (:func:`~pyro_dvae.data.mot.sequence_folders`), their ground truth and detections (:func:`load_mot_sequences`),
    the windows (:func:`mot_windows`; none is an error), the methods (:func:`benchmark_windows`) and, with ``plot``,
    figures of three windows (:func:`plot_benchmark_windows`). The messages name the command's options
    (``--seq-len``, ``--min-score``, ...).

    :param str mot_dir: a folder of MOTChallenge sequences (``<SEQ>/seqinfo.ini``, ``gt/gt.txt``, detections).
    :param list seqs: sequence names (default: every sub-folder of ``mot_dir``).
    :param str det_file: the detection file, relative to each sequence folder.
    :param WindowConfig windows: the window settings (:class:`~pyro_dvae.data.mot.WindowConfig`; default
        ``WindowConfig()``); its ``min_score`` also counts the detections kept.
    :param methods: methods of :data:`METHODS`, in order (repeats are dropped).
    :param prior: the DVAE prior of ``mixdvae``: a checkpoint path, a shipped name (``"srnn_mot"``) or a loaded prior
        (default: the shipped SRNN trajectory prior).
    :param deepar: the Deep AR model of ``deepar``: a checkpoint path, a shipped name (``"deepar_mot"``) or a loaded
        model (default: the shipped one).
    :param bool init_gt: seed the sources with their first-frame ground-truth boxes.
    :param TrackingConfig config: the tracking settings (:func:`benchmark_windows`).
    :param str plot: a folder for PNG figures of a few windows (``None``: none).
    :param log: called with each line of text: the windows built, the table's header, one row per method, the
        note under the table and the figures written (``None``: silent).
    :returns: the summary dict: ``detections`` (``{name: {"detections", "kept"}}``), one metrics dict per method
        (:func:`benchmark_windows`) and, with ``plot``, ``figures`` (the PNG paths).
    """
    from pyro_dvae import pretrained
    from pyro_dvae.data.mot import WindowConfig, sequence_folders

    say = log if log is not None else (lambda *a, **k: None)
    prior = load_tracking_prior(prior, "--prior") if prior is not None else pretrained.load()
    deepar = load_tracking_prior(deepar, "--deepar-prior", expect="deepar") if deepar is not None else None
    win = windows if windows is not None else WindowConfig()
    folders = sequence_folders(mot_dir, seqs)
    sequences, counts = load_mot_sequences(folders, det_file, win.min_score)
    built, stats = mot_windows(sequences, win)
    kept = sum(c["kept"] for c in counts.values())
    say(f"{len(built)} windows of {win.seq_len} frames x {win.num_sources} sources from {', '.join(folders)} "
        f"({stats.skipped_few_ids} windows skipped: fewer than {win.num_sources} identities present throughout); "
        f"{kept} of {sum(c['detections'] for c in counts.values())} detections kept"
        + ("" if win.min_score is None else f" (--min-score {win.min_score:g})"))
    if not built:
        raise ValueError(f"no window could be built: no stretch of --seq-len {win.seq_len} frames has "
                         f"--num-sources {win.num_sources} identities present throughout")
    say(format_header())
    results, estimates = benchmark_windows(built, methods, prior=prior, deepar=deepar, init_gt=init_gt,
                                           config=config, report=lambda method, m: say(format_row(method, m)))
    results = {"detections": counts, **results}
    say(MOTP_NOTE)
    if plot:
        results["figures"] = plot_benchmark_windows(built, estimates, plot)
        for path in results["figures"]:
            say(f"figure: {path}")
    return results
