# SPDX-License-Identifier: Apache-2.0
"""Separating an audio file (what ``pyro-dvae separate`` runs): :func:`separate_file` reads the mixture and the
references, gets the NMF dictionaries (read from a dictionaries file or learnt from training folders, then
written there, :mod:`pyro_dvae.nmf_dicts`), runs each method through :func:`run_separation`, writes one audio
file per source and method, and scores the estimates; :func:`score_table` formats the scores.

Messages name the inputs by the keys of :data:`LABELS` (the parameter and :class:`SeparateFileConfig` field
names); ``labels=`` replaces them (the command passes its option names, e.g. ``"--nmf-train"``).
"""

import dataclasses
import os
import time
from dataclasses import dataclass, field

from pyro_dvae import checks, nmf_dicts

from .config import SeparationConfig, apply_overrides
from .run import load_separation_prior, run_separation

#: :func:`separate_file`'s NMF methods (the command's spelling and :func:`run_separation`'s alike) ->
#: :func:`run_separation` methods.
NMF_METHODS = {"is-nmf": "is_nmf", "temporal-nmf": "temporal_nmf", "is_nmf": "is_nmf", "temporal_nmf": "temporal_nmf"}
#: :class:`SeparateFileConfig` ``methods``.
FILE_METHODS = ("mixdvae", *NMF_METHODS)
#: How messages name the inputs (``labels=`` replaces them).
LABELS = {**nmf_dicts.LABELS, "priors": "priors", "names": "names", "refs": "refs", "method": "methods"}


@dataclass
class SeparateFileConfig:
    """Settings of :func:`separate_file`.

    :ivar methods: the methods, run in this order (repeats dropped): ``"mixdvae"`` and the NMF baselines
        ``"is-nmf"`` / ``"temporal-nmf"`` (or ``"is_nmf"`` / ``"temporal_nmf"``). With several, each writes to
        ``<out_dir>/<method>/``; the summary keys and folders use the names as given.
    :ivar nmf_train: NMF methods: one folder of training audio per source, in the order of the sources; each
        source's IS-NMF dictionary is learnt from its files, each peak-normalised (:func:`~pyro_dvae.nmf_dicts.
        learn_nmf_dicts`).
    :ivar nmf_dicts: NMF dictionaries file (a path or a shipped name, e.g. ``"nmf_speech_flute"``): read instead
        of learning from ``nmf_train`` when it exists, else learnt from ``nmf_train`` and written there (so a
        series of mixtures learns them once).
    :ivar nmf_rank: NMF components per source (>= 1; default 64).
    :ivar nmf_max_frames: frames per source the dictionaries learn from, drawn at random (with
        ``separation.seed``) beyond this (>= 1; default 20000).
    :ivar separation: the :func:`run_separation` settings of every method (its ``method`` is set per method);
        ``separation.nmf.iters`` NMF updates are also those of learning each dictionary.
    """

    methods: tuple = ("mixdvae",)
    nmf_train: tuple = None
    nmf_dicts: str = None
    nmf_rank: int = 64
    nmf_max_frames: int = 20000
    separation: SeparationConfig = field(default_factory=SeparationConfig)

    def __post_init__(self):
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        unknown = [m for m in methods if m not in FILE_METHODS]
        if not methods or unknown:
            raise ValueError(f"methods must be one or more of {FILE_METHODS}, got {list(methods)}")
        self.methods = tuple(dict.fromkeys(methods))
        if isinstance(self.nmf_train, (str, os.PathLike)):
            raise ValueError(f"nmf_train must be a list of folders (one per source), got {self.nmf_train!r}")
        self.nmf_rank = checks.integer("nmf_rank", self.nmf_rank, 1)
        self.nmf_max_frames = checks.integer("nmf_max_frames", self.nmf_max_frames, 1)
        if isinstance(self.separation, dict):
            self.separation = SeparationConfig(**self.separation)
        elif not isinstance(self.separation, SeparationConfig):
            raise ValueError(f"separation must be a SeparationConfig, got {self.separation!r}")


def _file_config(config, overrides):
    """``config`` with ``overrides``: its own fields by name, anything else applied to ``separation``
    (:func:`~pyro_dvae.models.separation.config.apply_overrides`, e.g. ``num_iters=2``)."""
    if config is None:
        config = SeparateFileConfig()
    elif not isinstance(config, SeparateFileConfig):
        raise TypeError(f"separate_file() config must be a SeparateFileConfig, got {type(config).__name__}")
    own = {f.name for f in dataclasses.fields(SeparateFileConfig)}
    changes = {k: v for k, v in overrides.items() if k in own}
    rest = {k: v for k, v in overrides.items() if k not in own}
    if rest:
        changes["separation"] = apply_overrides(changes.get("separation", config.separation), "separate_file", **rest)
    return dataclasses.replace(config, **changes) if changes else config


def read_mixture(path):
    """``(signal, rate, length)`` of a mixture file: the signal mono at 16 kHz (format, NaN and clipping checks
    of :func:`~pyro_dvae.data.audio.load_audio`), the file's own rate and length (the outputs are written at
    those). A mixture under one STFT frame or silent is a :class:`ValueError`."""
    import numpy as np
    import soundfile as sf

    from pyro_dvae.data.audio import N_FFT, SAMPLE_RATE, load_audio

    mix = load_audio(path)
    info = sf.info(path)
    if len(mix) < N_FFT:
        raise ValueError(f"{path}: {len(mix)} samples at {SAMPLE_RATE} Hz, shorter than one STFT frame ({N_FFT})")
    if not np.abs(mix).max() > 0:
        raise ValueError(f"{path}: the mixture is silent")
    return mix, info.samplerate, info.frames


def source_names(priors, names, methods, labels=None):
    """The source names: ``names``, else the file stems of the prior checkpoints ``priors``; at least two,
    all different. ``"mixdvae"`` in ``methods`` needs ``priors``, and NMF methods alone need one or the other."""
    label = {**LABELS, **(labels or {})}
    if priors:
        stems = [os.path.splitext(os.path.basename(p))[0] for p in priors]
        if names is not None and len(names) != len(stems):
            raise ValueError(f"give one {label['names']} entry per {label['priors']} file ({len(stems)}), got "
                             f"{len(names)}")
    elif "mixdvae" in methods:
        raise ValueError(f"{label['method']} mixdvae needs {label['priors']} (one spectral prior checkpoint per "
                         "source)")
    elif names is None:
        raise ValueError(f"give {label['priors']} (their file stems name the sources) or, for NMF methods only, "
                         f"{label['names']}")
    out = list(names or stems)
    option = label["names"] if names else label["priors"]
    if len(out) < 2:
        raise ValueError(f"{option}: separation needs at least two sources, got {len(out)} ({out[0]})")
    if len(set(out)) != len(out):
        raise ValueError(f"the source names ({option if names else label['priors'] + ' file stems'}) must differ: "
                         f"{out}")
    return out


def read_references(refs, names, mix, labels=None):
    """The reference files ``refs`` (one per source, in the order of ``names``) as ``(N, L)`` at 16 kHz, each as
    long as the mixture signal ``mix``."""
    import numpy as np

    from pyro_dvae.data.audio import SAMPLE_RATE, load_audio

    label = {**LABELS, **(labels or {})}["refs"]
    if len(refs) != len(names):
        raise ValueError(f"give one {label} file per source ({len(names)}: {', '.join(names)}), got {len(refs)}")
    waves = [load_audio(r) for r in refs]
    for r, path in zip(waves, refs):
        if len(r) != len(mix):
            raise ValueError(f"{label} {path}: {len(r)} samples at {SAMPLE_RATE} Hz, the mixture has {len(mix)}")
    return np.stack(waves)


def separate_file(mix, out_dir, priors=None, *, names=None, refs=None, config=None, labels=None, log=None,
                  **overrides):
    """Separate the mixture file ``mix`` into one audio file per source (and method) under ``out_dir``.

    :param str mix: the mixture (wav / flac / ogg; read mono at 16 kHz, :func:`read_mixture`). The outputs are
        written at the file's rate and length.
    :param str out_dir: folder for one ``<source>.wav`` per source (``<out_dir>/<method>/<source>.wav`` with
        several methods).
    :param list priors: one spectral prior checkpoint per source (paths or shipped names, e.g. ``"speech"``);
        their file stems name the sources (needed by ``"mixdvae"``).
    :param list names: source names, in the order of the sources (replace the stems; needed without priors).
    :param list refs: reference files, in the order of the sources: the estimates and the mixture are scored
        (:func:`~pyro_dvae.metrics.score_sources`).
    :param SeparateFileConfig config: the settings (default: :class:`SeparateFileConfig` ``()``).
    :param dict labels: how messages name the inputs (:data:`LABELS`).
    :param log: called with a line per learnt dictionary and per written file (e.g. ``print``); default: silent.
    :param overrides: :class:`SeparateFileConfig` fields by name, and :func:`run_separation` settings
        (``num_iters=10``...) applied to ``config.separation``.
    :returns: the summary: ``sample_rate`` (the mixture file's), ``methods`` (per method: ``outputs`` ``{source:
        path}``, ``seconds``, the settings, ``estimate`` scores with ``refs``), ``mixture`` (the mixture's scores,
        with ``refs``); a single method's entries are also at the top level.
    """
    from pyro_dvae import pretrained
    from pyro_dvae.data.noisy import write_like

    cfg = _file_config(config, overrides)
    sep_cfg, label = cfg.separation, {**LABELS, **(labels or {})}
    priors = [pretrained.resolve(p) for p in priors] if priors else priors
    dicts_path = pretrained.resolve(cfg.nmf_dicts)
    wave, rate, length = read_mixture(mix)
    methods = list(cfg.methods)
    nmf_methods = [m for m in methods if m in NMF_METHODS]
    names = source_names(priors, names, methods, label)
    cached = dicts_path is not None and os.path.exists(dicts_path)
    if dicts_path is not None and not nmf_methods:
        raise ValueError(f"{label['nmf_dicts']} is for {label['method']} is-nmf / temporal-nmf")
    if nmf_methods and cfg.nmf_train is None and not cached:
        raise ValueError(f"{label['method']} {' / '.join(nmf_methods)} needs {label['nmf_train']} (one training audio "
                         f"folder per source: {', '.join(names)}) or an existing {label['nmf_dicts']} file")
    train_files = None
    if cfg.nmf_train is not None:
        if not nmf_methods:
            raise ValueError(f"{label['nmf_train']} is for {label['method']} is-nmf / temporal-nmf")
        if len(cfg.nmf_train) != len(names):
            raise ValueError(f"give one {label['nmf_train']} folder per source ({len(names)}: {', '.join(names)}), "
                             f"got {len(cfg.nmf_train)}")
        train_files = None if cached else [nmf_dicts.nmf_train_files(f, label) for f in cfg.nmf_train]
    ref_waves = read_references(refs, names, wave, label) if refs is not None else None
    prior_list = [load_separation_prior(p) for p in priors] if priors else None
    nmf, fit_seconds = None, None
    if cached:
        nmf = nmf_dicts.load_nmf_dicts(dicts_path, names, cfg.nmf_rank, label)
    elif nmf_methods:
        t0 = time.perf_counter()
        nmf = nmf_dicts.learn_nmf_dicts(names, cfg.nmf_train, cfg.nmf_rank, sep_cfg.nmf.iters, cfg.nmf_max_frames,
                                        sep_cfg.seed, files=train_files, labels=label, log=log)
        fit_seconds = time.perf_counter() - t0
        if dicts_path is not None:
            nmf_dicts.save_nmf_dicts(dicts_path, nmf, cfg.nmf_rank)
    summary = {"sample_rate": rate, "methods": {}}
    outs = {}
    for method in methods:
        out = run_separation(wave, prior_list, names=names, nmf=nmf,
                             config=dataclasses.replace(sep_cfg, method=NMF_METHODS.get(method, method)))
        if method == "mixdvae":
            entry = {"outputs": {}, "algo": sep_cfg.algo, "iters": sep_cfg.num_iters, "chunk": sep_cfg.chunk or 0,
                     "seconds_per_iter": out.result.seconds_per_iter}
        else:
            entry = {"outputs": {}, "nmf_rank": cfg.nmf_rank, "nmf_iters": sep_cfg.nmf.iters,
                     "nmf_train": None if cached else list(cfg.nmf_train), "nmf_dicts": dicts_path,
                     "nmf_fit_seconds": fit_seconds}
        entry["seconds"] = out.info["seconds"]
        folder = out_dir if len(methods) == 1 else os.path.join(out_dir, method)
        os.makedirs(folder, exist_ok=True)
        for name, signal in zip(names, out.waveforms):
            path = os.path.join(folder, f"{name}.wav")
            write_like(path, signal, rate, length)
            entry["outputs"][name] = path
            if log is not None:
                log(f"{name}: {path}" if len(methods) == 1 else f"{method} {name}: {path}")
        summary["methods"][method], outs[method] = entry, out
    if ref_waves is not None:
        _score(summary, outs, names, wave, ref_waves)
    if len(methods) == 1:  # the keys of a single-method run, as before several methods existed: outputs, estimate...
        summary.update(summary["methods"][methods[0]])
    return summary


def _score(summary, outs, names, mix, refs):
    from pyro_dvae.data.audio import SAMPLE_RATE
    from pyro_dvae.metrics import score_sources

    for method, out in outs.items():
        summary["methods"][method]["estimate"] = score_sources(out.waveforms, refs, names, SAMPLE_RATE)
    summary["mixture"] = score_sources([mix] * len(names), refs, names, SAMPLE_RATE)


def score_table(summary):
    """The lines of the score table of a :func:`separate_file` summary (none without references): one row per
    source and method, then the mixture's."""
    if "mixture" not in summary:
        return []
    fmt = lambda v: "   n/a" if v is None or v != v or abs(v) == float("inf") else f"{v:6.2f}"  # noqa: E731
    lines = [f"{'source':12s} {'':12s} {'SI-SDR':>6s} {'RMSE':>6s} {'PESQwb':>6s} {'ESTOI':>6s}"]
    for name in summary["mixture"]:
        for kind in [*summary["methods"], "mixture"]:
            m = summary["mixture"][name] if kind == "mixture" else summary["methods"][kind]["estimate"][name]
            lines.append(f"{name:12s} {kind:12s} {fmt(m['si_sdr'])} {fmt(m['rmse'])} {fmt(m['pesq_wb'])} "
                         f"{fmt(m['estoi'])}")
    lines.append("scores at 16 kHz against the references; n/a: undefined for this signal (e.g. a silent reference "
                 "or estimate) or the pesq package is absent")
    return lines
