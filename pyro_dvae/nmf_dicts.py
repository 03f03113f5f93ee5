# SPDX-License-Identifier: Apache-2.0
"""NMF dictionaries of the separation baselines: learnt from folders of training audio (:func:`learn_nmf_dicts`),
and the dictionaries file of ``pyro-dvae separate --nmf-dicts`` (:func:`save_nmf_dicts`, :func:`load_nmf_dicts`;
the shipped ``nmf_speech_flute`` is one).

A dictionaries file is a ``torch.save`` of ``{"format": "pyro-dvae-nmf-dicts", "rank": K, "dictionaries": {name:
W (F, K)}}``, read back with ``weights_only=True``.

Messages name the inputs by the keys of :data:`LABELS` (the parameter names of
:func:`~pyro_dvae.models.separation.separate_file`); ``labels`` replaces them (``pyro-dvae separate`` passes its
option names, e.g. ``"--nmf-dicts"``).
"""

import os

import numpy as np
import torch

#: The ``"format"`` entry of a dictionaries file.
FORMAT = "pyro-dvae-nmf-dicts"
#: How messages name the inputs: the training folders, the dictionaries file and the rank.
LABELS = {"nmf_train": "nmf_train", "nmf_dicts": "nmf_dicts", "nmf_rank": "nmf_rank"}


def _labels(labels):
    return {**LABELS, **(labels or {})}


def nmf_train_files(folder, labels=None):
    """The audio files of one training folder (recursive); a missing or empty folder is an error."""
    from .data.audio import AUDIO_EXTENSIONS, audio_files

    label = _labels(labels)["nmf_train"]
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{label} {folder}: no such folder")
    files = audio_files(folder)
    if not files:
        raise ValueError(f"{label} {folder}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    return files


def learn_nmf_dicts(names, folders, rank=64, iters=100, max_frames=20000, seed=0, *, files=None, labels=None,
                    log=None):
    """An :class:`~pyro_dvae.nmf.NMFSeparator` with one IS-NMF dictionary of ``rank`` components per source,
    learnt in ``iters`` updates from the power spectrograms of its training files, each peak-normalised (as
    the mixture is; as ``examples/scass_mixdvae.py`` does); silent files and files under one frame are skipped.
    A source with more than ``max_frames`` frames learns from that many frames drawn at random (seeded): the
    dictionary does not depend on frame order, and an hour of speech (225k frames) would otherwise take the
    better part of an hour on one core.

    :param list names: the source names, in order.
    :param list folders: one folder of training audio per source.
    :param list files: the audio files of each folder (default: :func:`nmf_train_files` of each).
    :param log: called with one line per dictionary (e.g. ``print``); default: silent.
    """
    from .data.audio import N_FFT, load_audio, stft
    from .nmf import NMFSeparator

    label = _labels(labels)["nmf_train"]
    if files is None:
        files = [nmf_train_files(folder, labels) for folder in folders]
    sep = NMFSeparator(rank=rank, iters=iters)
    for name, folder, paths in zip(names, folders, files):
        powers = []
        for path in paths:
            x = load_audio(path)
            peak = np.abs(x).max()
            if peak > 0 and len(x) >= N_FFT:
                powers.append(stft(torch.as_tensor(x / peak, dtype=torch.float32)).abs().pow(2).mT)
        if not powers:
            raise ValueError(f"{label} {folder}: every audio file is silent or shorter than one STFT frame "
                             f"({N_FFT} samples at 16 kHz)")
        frames, n_files = sum(P.shape[-1] for P in powers), len(powers)
        if frames > max_frames:
            keep = torch.randperm(frames, generator=torch.Generator().manual_seed(seed))[:max_frames]
            powers = [torch.cat(powers, -1)[:, keep.sort().values]]
        if log is not None:
            log(f"NMF dictionary {name}: rank {rank}, {iters} iterations on {n_files} files ({frames} frames"
                + (f", {max_frames} drawn at random)" if frames > max_frames else ")"))
        sep.fit(name, powers)
    return sep


def save_nmf_dicts(path, sep, rank):
    """Write the dictionaries of the :class:`~pyro_dvae.nmf.NMFSeparator` ``sep`` (learnt at ``rank``) to
    ``path`` (missing folders are created), for :func:`load_nmf_dicts`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"format": FORMAT, "rank": rank, "dictionaries": sep.dictionaries}, path)


def load_nmf_dicts(path, names, rank, labels=None):
    """An :class:`~pyro_dvae.nmf.NMFSeparator` holding the dictionaries saved in ``path`` (by
    :func:`save_nmf_dicts`, e.g. an earlier ``pyro-dvae separate --nmf-dicts`` run), checked against the source
    ``names`` and the ``rank``: another source set or rank, or a file that is not a dictionaries file, is a
    :class:`ValueError` (a missing file a :class:`FileNotFoundError`)."""
    from .checkpoint import read_torch_file
    from .nmf import NMFSeparator

    label = _labels(labels)
    data = read_torch_file(path, "NMF dictionaries file written by pyro-dvae separate", label["nmf_dicts"])
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{label['nmf_dicts']} {path}: not a dictionaries file written by pyro-dvae separate")
    if sorted(data["dictionaries"]) != sorted(names) or data["rank"] != rank:
        raise ValueError(f"{label['nmf_dicts']} {path}: holds sources {sorted(data['dictionaries'])} at rank "
                         f"{data['rank']}, this run separates {names} at {label['nmf_rank']} {rank}")
    sep = NMFSeparator(rank=rank)
    sep.dictionaries = {n: data["dictionaries"][n].float() for n in names}  # shipped files hold float16
    return sep
