# SPDX-License-Identifier: Apache-2.0
"""Small pretrained priors shipped with the package (no download).

Trajectories (tracking): ``srnn_mot.pt``, an SRNN box-trajectory prior (x_dim 4, z_dim 4, residual decoder), and
``deepar_mot.pt``, the Deep AR baseline (an LSTM autoregressive model), both trained by this project's own
command on synthetic trajectories; ``srnn_mot_real.pt``, a velocity-input SRNN (``srnn-velocity``) trained on the
real pedestrian tracks of :mod:`pyro_dvae.data.tracks` (MOT17-02/04/09 first halves, PETS09-S2L1, KITTI-17,
ETH-Sunnyday, Venice-2, at every frame rate from 7 to 30 fps), the default prior of ``pyro-dvae track-mot``.

Audio (16 kHz, STFT 1024 / hop 256, 513 power bins): ``speech.pt`` (SRNN), ``speech_rvae.pt`` (causal RVAE, the
default prior of ``pyro-dvae enhance`` and ``train-noise``) and ``speech_light.pt`` (LigHT-DVAE), trained on the
171 *training* speakers of :func:`pyro_dvae.data.heldout.speech_split` (LibriSpeech train-clean-100, CC BY 4.0),
``flute.pt`` (SRNN, power floor 80 dB down) on the 18 *training* notes of
:func:`~pyro_dvae.data.heldout.note_split` (University of Iowa MIS flute, pitch-shifted by -2..2 semitones), by
``pyro-dvae train-prior``, and ``nmf_speech_flute.pt``: the rank-64 IS-NMF dictionaries of
``pyro-dvae separate --nmf-train`` learnt from the same training audio (sources ``speech`` and ``flute``). They
are stored by :func:`export` (weights in float16, no training state). The dev and test speakers / notes of those
splits were never used to train them. The commands and validation losses are in ``TRAINING.md`` beside them.

On the command line a shipped file is named without its folder and ``.pt`` (:func:`resolve`), e.g.
``pyro-dvae separate mix.wav --priors speech flute`` or ``pyro-dvae enhance noisy.wav --prior speech_rvae``.
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
#: :func:`export` stores floating tensors of at least this many entries in float16.
HALF_MIN = 1024


def path(name="srnn_mot"):
    """File path of a shipped prior."""
    p = os.path.join(HERE, f"{name}.pt")
    if not os.path.exists(p):
        raise FileNotFoundError(f"no shipped prior {name!r}; shipped: {shipped()}")
    return p


def shipped():
    """Names of the shipped files (without ``.pt``)."""
    return sorted(f[:-3] for f in os.listdir(HERE) if f.endswith(".pt"))


def resolve(arg):
    """A command-line file argument: ``arg`` itself when such a file exists, else the path of the shipped file of
    that name (``"speech"`` or ``"speech.pt"``), else ``arg`` unchanged (its reader then reports it missing)."""
    if arg is None or os.path.exists(arg) or os.sep in arg:
        return arg
    name = arg[:-3] if arg.endswith(".pt") else arg
    return os.path.join(HERE, f"{name}.pt") if name in shipped() else arg


def load(name="srnn_mot"):
    from pyro_dvae import priors

    return priors.load(path(name))


def export(src, dst, half=True):
    """Write the checkpoint ``src`` (from ``pyro-dvae train-prior``) as a shippable one at ``dst``: the best
    weights, config and front-end entries only (no optimiser or resume state), floating weight tensors of at
    least :data:`HALF_MIN` entries in float16 when ``half`` (loading casts them back to the prior's dtype; biases
    and normalisation statistics stay as they are). Returns the number of bytes written."""
    from pyro_dvae.checkpoint import read_torch_file
    from pyro_dvae.priors.base import save_checkpoint

    ckpt = read_torch_file(src, "pyro_dvae prior checkpoint")
    keep = {k: v for k, v in ckpt.items() if k != "training"}
    if half:
        keep["state_dict"] = {k: v.half() if v.is_floating_point() and v.numel() >= HALF_MIN else v
                              for k, v in ckpt["state_dict"].items()}
    save_checkpoint(keep, dst)
    return os.path.getsize(dst)
