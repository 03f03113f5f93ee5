# SPDX-License-Identifier: Apache-2.0
"""A whole prior pre-training run from its settings: what ``pyro-dvae train-prior`` runs.

:class:`PriorTrainSpec` holds the settings of one run (the prior family, its data, sizes and options, the training
schedules and files); :func:`train_prior_from_spec` fills in the per-data defaults (:mod:`pyro_dvae.presets`),
checks the settings against each other, assembles the data (synthetic trajectories, new every epoch, real pedestrian
tracks of the MOTChallenge ground truth augmented every epoch, :func:`pyro_dvae.data.tracks.track_training_data`, or
the memory-mapped chunk store of an audio folder, :class:`~pyro_dvae.engine.ChunkStore`), builds the prior, fits its
normalisation, evaluates it untrained, trains it (:func:`pyro_dvae.training.train_prior`) and returns the summary
dict.

Its error messages name the ``pyro-dvae train-prior`` options that set each value (``--gain-db``, ``--data``, ...).

Example::

    spec = PriorTrainSpec(model="srnn", files=TrainFiles(out="srnn.pt"), training={"epochs": 3},
                          synthetic=SyntheticTracks(num_train=256, num_val=32))
    summary = train_prior_from_spec(spec, log=print)
"""

import os
import shutil
import time
from dataclasses import dataclass, field, replace

import torch

from . import presets
from .data.tracks import RealTracks, track_training_data
from .training import NORMALISATION_CHUNKS, TrainConfig, TrainFiles, evaluate, train_prior

__all__ = ["AudioChunks", "PriorTrainSpec", "RealTracks", "SyntheticTracks", "build_prior", "train_prior_from_spec"]


@dataclass
class SyntheticTracks:
    """The synthetic box trajectories a motion prior trains on (:func:`pyro_dvae.presets.synthetic_trajectory_data`).

    :ivar num_train: training tracks (new ones every epoch).
    :ivar num_val: validation tracks (fixed).
    :ivar frame_aspect: ``(low, high)`` range of frame width / height (default: MixDVAE's 16:9 statistics).
    :ivar speed_range: ``(low, high)`` per-track speed factor range (log-uniform).
    """

    num_train: int = 20000
    num_val: int = 2000
    frame_aspect: tuple = None
    speed_range: tuple = (1.0, 1.0)


@dataclass
class AudioChunks:
    """How an audio folder becomes training chunks (:meth:`pyro_dvae.engine.ChunkStore.for_run`).

    :ivar pitch_shift: also train on every file shifted by these semitones (0: the file itself).
    :ivar chunk_hop: frames between the starts of the chunks (``None``: the sequence length, no overlap).
    :ivar val_fraction: chunks held out for validation.
    :ivar cache: a folder to keep the chunks in (memory-mapped, reused by a later run with the same files and
        settings); ``None``: a folder beside the checkpoint (``OUT.chunks``), removed at the end.
    """

    pitch_shift: tuple = (0.0,)
    chunk_hop: int = None
    val_fraction: float = 0.1
    cache: str = None


@dataclass
class PriorTrainSpec:
    """The settings of one prior pre-training run (:func:`train_prior_from_spec`).

    :ivar model: the prior family (:func:`pyro_dvae.priors.available`).
    :ivar data: :data:`~pyro_dvae.presets.SYNTHETIC_TRAJECTORIES`, :data:`~pyro_dvae.presets.MOT_TRACKS` or a folder
        of audio files (wav / flac / ogg:
        a power-spectrum prior; ``model="mdvae"``: audio-visual, the faces rendered from the speech).
    :ivar seq_len: frames per sequence (``None``: the per-data default, :func:`~pyro_dvae.presets.training_defaults`).
    :ivar sizes: layer sizes ``z_dim``, ``dense_dim``, ``rnn_dim``, ``z_dense`` (missing or ``None``: the
        preset of the kind of data, :func:`~pyro_dvae.presets.prior_kwargs`).
    :ivar residual: trajectory priors predict the change from the previous box (``False``: the box itself).
    :ivar model_options: further keyword arguments of :func:`pyro_dvae.priors.build`, on top of the presets.
    :ivar seed: seeds the data, the validation split and the training.
    :ivar training: fields of :class:`~pyro_dvae.training.TrainConfig` other than ``seed`` (missing or ``None``:
        the per-data default for ``epochs``, ``batch_size`` and ``lr``, else ``TrainConfig``'s).
    :ivar files: the checkpoint, log and resume files (:class:`~pyro_dvae.training.TrainFiles`); its
        ``checkpoint_extra`` defaults to :func:`~pyro_dvae.presets.checkpoint_extra`.
    :ivar synthetic: the synthetic trajectories (with ``data=SYNTHETIC_TRAJECTORIES``).
    :ivar tracks: the real tracks (with ``data=MOT_TRACKS``; :class:`~pyro_dvae.data.tracks.RealTracks`, ``None``:
        its defaults).
    :ivar audio: the audio chunks (with an audio folder).
    :ivar init: a prior checkpoint or shipped name whose weights, sizes and normalisation the run starts from (a
        fine-tuning: a new run, schedules from epoch 1; ``None``: a new prior). Its family must be ``model``;
        ``sizes`` and ``model_options`` must then be left unset (they come from the checkpoint).
    """

    model: str
    data: str = presets.SYNTHETIC_TRAJECTORIES
    seq_len: int = None
    sizes: dict = field(default_factory=dict)
    residual: bool = True
    model_options: dict = field(default_factory=dict)
    seed: int = 0
    training: dict = field(default_factory=dict)
    files: TrainFiles = field(default_factory=TrainFiles)
    synthetic: SyntheticTracks = field(default_factory=SyntheticTracks)
    audio: AudioChunks = field(default_factory=AudioChunks)
    tracks: RealTracks = None
    init: str = None

    @property
    def audio_data(self):
        """Whether :attr:`data` is an audio folder."""
        return self.data not in presets.TRAJECTORY_DATA


def build_prior(name, kwargs, options=None):
    """:func:`pyro_dvae.priors.build` with further ``options`` on top of ``kwargs``; a bad option is named in the
    error (as ``--model-option KEY=VALUE``).

    :param str name: the prior family.
    :param dict kwargs: the keyword arguments of the presets (:func:`~pyro_dvae.presets.prior_kwargs`).
    :param dict options: further keyword arguments, replacing those of ``kwargs``.
    :returns: the built prior.
    """
    from . import priors

    extra = dict(options or {})
    try:
        return priors.build(name, **{**kwargs, **extra})
    except (TypeError, ValueError) as e:
        if not extra:
            raise
        raise ValueError(f"--model-option {' '.join(f'{k}={v!r}' for k, v in extra.items())}: {e}") from None


def _check(spec, gain_db):
    """The checks that need no data: audio-only options on trajectories, the gain range."""
    audio = spec.audio
    if not spec.audio_data and (tuple(gain_db) != (0.0, 0.0) or tuple(audio.pitch_shift) != (0.0,)
                                or audio.chunk_hop):
        raise ValueError("--gain-db, --pitch-shift and --chunk-hop are for audio folders (--data DIR)")
    if spec.tracks is not None and spec.data != presets.MOT_TRACKS:
        raise ValueError(f"--realdata, --holdout and --synthetic-fraction are for --data {presets.MOT_TRACKS}")
    if gain_db[0] > gain_db[1]:
        raise ValueError(f"--gain-db LOW HIGH: LOW must not exceed HIGH, got {gain_db[0]:g} {gain_db[1]:g}")


def _data(spec, seq_len):
    """``(train, val, store)``: the training and validation data, and the chunk store they come from (``None`` for
    synthetic trajectories)."""
    from .engine import ChunkStore

    if spec.data == presets.MOT_TRACKS:  # real tracks, augmented anew every epoch
        train, val, _ = track_training_data(seq_len, spec.tracks or RealTracks(), seed=spec.seed)
        return train, val, None
    if not spec.audio_data:  # new tracks every epoch
        s = spec.synthetic
        train, val = presets.synthetic_trajectory_data(s.num_train, s.num_val, seq_len, seed=spec.seed,
                                                       frame_aspect=s.frame_aspect, speed_range=s.speed_range)
        return train, val, None
    audio = spec.audio
    if spec.model == "mdvae" and audio.chunk_hop:
        raise ValueError("--chunk-hop: MDVAE cuts each utterance into consecutive --seq-len chunks")
    kind = "audiovisual" if spec.model == "mdvae" else "power"
    store = ChunkStore.for_run(spec.data, audio.cache or f"{spec.files.out}.chunks", option="--data", seq_len=seq_len,
                               hop=audio.chunk_hop, pitch_shifts=audio.pitch_shift, kind=kind)
    train, val = store.split(audio.val_fraction, spec.seed)
    return train, val, store


def _initial_prior(spec, sizes, x_dim):
    """The prior of ``spec.init`` (a checkpoint or shipped name), checked against the run's settings."""
    from . import pretrained, priors

    given = [f"--{k.replace('_', '-')}" for k, v in sizes.items() if v is not None]
    given += ["--model-option"] if spec.model_options else []
    if given:
        raise ValueError(f"--init {spec.init}: the sizes and options come from its checkpoint; drop "
                         f"{', '.join(given)}")
    if spec.files.resume is not None:
        raise ValueError("--init starts a new run from a checkpoint's weights and --resume continues an earlier "
                         "run: give one of them")
    path = pretrained.resolve(spec.init)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--init {spec.init}: no such checkpoint file and no shipped prior of that name")
    prior = priors.load(path)
    if prior.name != spec.model or prior.x_dim != x_dim:
        raise ValueError(f"--init {spec.init} holds a {prior.name} prior with x_dim={prior.x_dim}; this run trains "
                         f"--model {spec.model} on data with x_dim={x_dim}")
    return prior


def _make_parent(path):
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def train_prior_from_spec(spec, *, engine=None, progress=False, log=None):
    """Pre-train a DVAE prior as ``pyro-dvae train-prior`` does, from its settings.

    The steps: the per-data defaults of unset settings (:func:`~pyro_dvae.presets.training_defaults`); the checks
    of the settings against each other (the gain, pitch and hop options are for audio folders; a prior without
    latent variables takes no latent sizes; MDVAE trains on speech); the data (:class:`PriorTrainSpec`); the prior
    (:func:`build_prior`, or the checkpoint of ``spec.init``); its normalisation from the training data (unless
    resuming or starting from ``spec.init``) and its untrained validation loss (unless resuming); the training
    (:func:`pyro_dvae.training.train_prior`), which writes ``spec.files``. A chunk store made beside the checkpoint
    is removed at the end.

    :param PriorTrainSpec spec: the settings of the run.
    :param engine: :class:`~pyro_dvae.engine.Engine` (default: one CPU process with torch's current threads).
    :param bool progress: show a progress bar.
    :param log: called with one line of text before the training starts and one after it (rank 0 only; ``None``:
        silent).
    :returns: the summary dict: ``prior``, ``untrained_val_loss`` (``None`` when resuming; with ``spec.init``, the
        initial prior's), ``best_val_loss``,
        ``best_epoch``, ``epochs_run``, ``stopped_early``, ``skipped_steps``, ``out``, ``train_sequences``,
        ``threads``, ``processes``, ``accelerator``, ``resume_checkpoint``, ``seconds`` and the median
        ``seconds_per_epoch``.
    """
    from . import priors
    from .engine.ranks import is_rank_zero

    torch.manual_seed(spec.seed)
    audio_data = spec.audio_data
    given = {k: v for k, v in spec.training.items() if v is not None}
    defaults = presets.training_defaults(audio_data, spec.model)  # per kind of data
    default_seq_len = defaults.pop("seq_len")
    seq_len = spec.seq_len if spec.seq_len is not None else default_seq_len
    settings = {**defaults, **given}
    _check(spec, settings.get("gain_db", (0.0, 0.0)))
    train, val, store = _data(spec, seq_len)
    sizes = {key: spec.sizes.get(key) for key in presets.SIZE_KEYS}
    if not priors.prior_class(spec.model).latent_sites and (sizes["z_dim"] or sizes["z_dense"]):  # deepar
        raise ValueError(f"--model {spec.model} has no latent variables: drop --z-dim / --z-dense")
    if spec.model == "mdvae" and not audio_data:  # audio + rendered faces (pyro_dvae.data.audiovisual)
        raise ValueError("--model mdvae trains on a speech folder (--data DIR): the visual stream is rendered "
                         "from it (pyro_dvae.data.audiovisual)")
    if spec.init is not None:
        prior = _initial_prior(spec, sizes, train.shape[-1])
    else:
        prior = build_prior(spec.model, presets.prior_kwargs(spec.model, train.shape[-1], audio_data,
                                                             residual=spec.residual, **sizes), spec.model_options)
    cfg = TrainConfig(seed=spec.seed, **settings)
    files = spec.files
    if files.checkpoint_extra is None:
        files = replace(files, checkpoint_extra=presets.checkpoint_extra(spec.model, audio_data))
    if files.resume is None and spec.init is None:
        prior.fit_normalisation(train.tensor(NORMALISATION_CHUNKS))
    untrained = None if files.resume else evaluate(prior, val if torch.is_tensor(val) else val.tensor(),
                                                   ss_prob=cfg.val_ss_prob, ss_mode=cfg.ss_mode)
    if engine is None:
        from .engine import Engine

        engine = Engine(threads=torch.get_num_threads())
    say = log if log is not None and is_rank_zero() else (lambda *a, **k: None)
    feeding = ""
    if prior.autoregressive:
        feeding = (f", {cfg.ss_mode} scheduled sampling epochs {cfg.ss_start}-{cfg.ss_end} up to {cfg.ss_max:g}"
                   if cfg.ss_max > 0 else ", teacher forcing")
    say(f"{spec.model}: {len(train)} train / {len(val)} validation sequences of {train.shape[1]} steps, "
        f"x_dim={train.shape[-1]}, {sum(p.numel() for p in prior.parameters())} parameters; {cfg.epochs} epochs, "
        f"batch {cfg.batch_size}, lr {cfg.lr:g}, KL warm-up to epoch {cfg.warmup_epochs + 1}{feeding}; "
        f"{engine.threads} thread(s) per process; {engine.accelerator}, {engine.devices * engine.num_nodes} "
        f"process(es){', chunks streamed from ' + store.folder if store is not None else ''}")
    t0 = time.perf_counter()
    _make_parent(files.out)
    _make_parent(files.log_json)
    try:
        res = train_prior(prior, train, val, cfg, files=files, engine=engine, progress=progress)
    finally:
        if store is not None and spec.audio.cache is None and is_rank_zero():
            shutil.rmtree(store.folder, ignore_errors=True)
    seconds = time.perf_counter() - t0
    per_epoch = [row["seconds"] for row in res.history]
    summary = {"prior": spec.model, "untrained_val_loss": untrained, "best_val_loss": res.best_val,
               "best_epoch": res.best_epoch, "epochs_run": len(res.history), "stopped_early": res.stopped_early,
               "skipped_steps": res.skipped_steps, "out": files.out, "train_sequences": len(train),
               "threads": engine.threads, "processes": engine.devices * engine.num_nodes,
               "accelerator": engine.accelerator, "resume_checkpoint": files.resume_path(), "seconds": seconds,
               "seconds_per_epoch": sorted(per_epoch)[len(per_epoch) // 2] if per_epoch else None}
    start = ("resumed" if untrained is None else
             f"{'initial (--init)' if spec.init is not None else 'untrained'} {untrained:.4f}")
    say(f"validation loss (negative ELBO per step): {start} -> best {res.best_val:.4f} "
        f"at epoch {res.best_epoch}; saved {files.out} ({seconds:.0f} s, median "
        f"{summary['seconds_per_epoch'] or 0:.1f} s per epoch)")
    return summary
