# SPDX-License-Identifier: Apache-2.0
"""Speech + music mixtures for single-channel source separation, and speaker / note train-test splits.

:func:`make_mixtures` draws random speech and music segments of exactly ``T`` STFT frames under the
project's STFT (:mod:`pyro_dvae.data.audio`: centred frames, ``(T - 1) * hop`` samples), rejects segments in
which either source is mostly silent, scales the music to a given speech-to-music ratio (MixDVAE's SC-ASS
data put the flute 10 dB above the speech: ``smr_db=-10``) and sums them.

Silence rule: each source file is cut into frames of ``win`` samples every ``hop`` samples; a frame is
*silent* when its energy is more than ``silence_db`` below the file's loudest frame (the ``top_db`` rule of
the reference data script). A segment is rejected when more than ``max_silent_fraction`` of its frames are
silent (``0`` rejects any silence, as the reference does after trimming the files' ends).

References:
    - X. Lin, L. Girin, X. Alameda-Pineda, "Mixture of dynamical variational autoencoders for multi-source
      trajectory modeling and separation", TMLR 2023 (SC-ASS setting).
    - V. Panayotov et al., "LibriSpeech: an ASR corpus based on public domain audio books", ICASSP 2015;
      J. Kominek, A. W. Black, "The CMU Arctic speech databases", SSW 2004; C. Veaux, J. Yamagishi,
      K. MacDonald, "CSTR VCTK corpus", 2017; University of Iowa Musical Instrument Samples.
"""

import os
import re
from dataclasses import dataclass, field, fields, replace

import numpy as np

from .audio import HOP, N_FFT, SAMPLE_RATE, load_audio, num_samples


@dataclass
class Mixture:
    """One mixture: ``mix == sources["speech"] + sources["music"]`` (float64, same length).

    ``names`` and ``offsets`` give, per source, the file (or ``"<array i>"``) and the first sample used.
    """

    mix: np.ndarray
    sources: dict
    names: dict
    offsets: dict = field(default_factory=dict)
    smr_db: float = 0.0


def _load_all(items, sr, kind):
    if len(items) == 0:
        raise ValueError(f"no {kind} files given")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, (str, os.PathLike)):
            x, name = load_audio(os.fspath(item), sr), os.fspath(item)
        else:
            x, name = np.asarray(item, dtype=np.float64), f"<{kind} array {i}>"
            if x.ndim != 1 or not np.isfinite(x).all():
                raise ValueError(f"{name}: must be a finite 1-D signal")
        out.append((name, x, np.concatenate([[0.0], np.cumsum(x**2)])))
    return out


def _frame_energy(cum, start, length, win, hop):
    starts = start + np.arange(0, max(length - win, 0) + 1, hop)
    return cum[np.minimum(starts + win, len(cum) - 1)] - cum[starts]


def _silent_fraction(entry, start, length, win, hop, silence_db):
    _, x, cum = entry
    ref = _frame_energy(cum, 0, len(x), win, hop).max()
    if ref <= 0:
        return 1.0
    e = _frame_energy(cum, start, length, win, hop)
    return float(np.mean(e < ref * 10 ** (-silence_db / 10)))


@dataclass
class MixtureSpec:
    """What each mixture of :func:`make_mixtures` is: its length, speech-to-music ratio, peak and silence rule.

    :ivar num_frames: STFT frames per mixture (segments of ``(num_frames - 1) * hop`` samples; default 100).
    :ivar smr_db: speech-to-music ratio in dB over the segment (default -10: the flute 10 dB above the speech,
        MixDVAE's SC-ASS setting).
    :ivar sr: sample rate the files are read at (default 16 kHz).
    :ivar hop: STFT hop in samples (default 256).
    :ivar win: frame length of the silence rule, in samples (default 1024, the STFT frame).
    :ivar silence_db: a frame is silent more than this many dB below the file's loudest frame (default 30).
    :ivar max_silent_fraction: a segment with a larger fraction of silent frames in either source is drawn
        again (default 0.2; 0 rejects any silence).
    :ivar peak: ``max |mix|`` after scaling both sources by one common factor (default 0.9; ``None``: no
        scaling).
    """

    num_frames: int = 100
    smr_db: float = -10.0
    sr: int = SAMPLE_RATE
    hop: int = HOP
    win: int = N_FFT
    silence_db: float = 30.0
    max_silent_fraction: float = 0.2
    peak: float = 0.9

    @property
    def length(self):
        """Samples per segment: ``(num_frames - 1) * hop``."""
        return num_samples(self.num_frames, self.hop)

    def __post_init__(self):
        length = self.length
        if length < self.win // 2 + 1:
            raise ValueError(f"num_frames={self.num_frames} gives {length} samples, shorter than half a frame "
                             f"({self.win})")


def make_mixtures(speech_files, music_files, n, spec=None, *, seed=0, max_tries=None, **overrides):
    """``n`` reproducible speech + music mixtures of exactly ``spec.num_frames`` STFT frames.

    ``speech_files`` / ``music_files``: paths (read with :func:`~pyro_dvae.data.audio.load_audio` at ``sr``)
    or 1-D arrays already at ``sr``; files shorter than one segment are skipped. ``spec``: a :class:`MixtureSpec`
    (default: ``MixtureSpec()``), whose fields ``overrides`` replace (``num_frames=50, smr_db=-5.0``; another
    name is a :class:`TypeError`). Each mixture picks a file and a start sample uniformly for each source
    (``numpy.random.default_rng(seed)``; the same lists in the same order give the same mixtures), rejects the
    draw by the silence rule of the module docstring, scales the music so that ``10 log10(sum speech^2 / sum
    music^2) = smr_db`` over the segment, then scales both sources by one common factor so that ``max |mix| =
    peak`` (``None``: no scaling; the SMR is unchanged). Segments have ``(num_frames - 1) * hop`` samples, which
    :func:`~pyro_dvae.data.audio.stft` turns into exactly ``num_frames`` frames. Raises :class:`ValueError` when
    no file is long enough or when ``max_tries`` draws (default ``100 n``) do not give ``n`` non-silent mixtures.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a nonnegative integer, got {n!r}")
    if spec is not None and not isinstance(spec, MixtureSpec):
        raise TypeError(f"make_mixtures() spec must be a MixtureSpec, got {spec!r} (pass num_frames= etc. by name)")
    unknown = sorted(set(overrides) - {f.name for f in fields(MixtureSpec)})
    if unknown:
        raise TypeError(f"make_mixtures() got an unexpected keyword argument {unknown[0]!r}")
    spec = replace(spec or MixtureSpec(), **overrides)
    num_frames, smr_db, sr, hop, win = spec.num_frames, spec.smr_db, spec.sr, spec.hop, spec.win
    silence_db, max_silent_fraction, peak = spec.silence_db, spec.max_silent_fraction, spec.peak
    length = spec.length
    pools = {}
    for kind, items in (("speech", speech_files), ("music", music_files)):
        entries = _load_all(items, sr, kind)
        pools[kind] = [e for e in entries if len(e[1]) >= length]
        if not pools[kind]:
            raise ValueError(f"no {kind} file has the {length} samples ({num_frames} frames) a segment needs"
                             + ("; concatenate notes with concatenate_notes()" if kind == "music" else ""))
    rng = np.random.default_rng(seed)
    max_tries = 100 * n if max_tries is None else max_tries
    out, tries = [], 0
    while len(out) < n:
        if tries >= max_tries:
            raise ValueError(f"only {len(out)} of {n} mixtures after {tries} draws: the others had a source more "
                             f"than {100 * max_silent_fraction:g} % silent (silence_db={silence_db})")
        tries += 1
        segs, names, offsets = {}, {}, {}
        for kind in ("speech", "music"):
            entry = pools[kind][rng.integers(len(pools[kind]))]
            start = int(rng.integers(len(entry[1]) - length + 1))
            if _silent_fraction(entry, start, length, win, hop, silence_db) > max_silent_fraction:
                break
            segs[kind], names[kind], offsets[kind] = entry[1][start:start + length], entry[0], start
        else:
            out.append(_mix(segs, names, offsets, smr_db, peak))
    return out


def _mix(segs, names, offsets, smr_db, peak):
    speech, music = segs["speech"], segs["music"]
    music = music * np.sqrt((speech @ speech) / (music @ music) * 10 ** (-smr_db / 10))
    scale = 1.0 if peak is None else peak / np.abs(speech + music).max()
    sources = {"speech": speech * scale, "music": music * scale}
    return Mixture(sources["speech"] + sources["music"], sources, names, offsets, float(smr_db))


def concatenate_notes(files, num_notes, seed=0, sr=SAMPLE_RATE, trim_db=30.0, fade_ms=20.0):
    """A melody of ``num_notes`` random notes (drawn with replacement, seeded): each note is trimmed to its
    frames within ``trim_db`` of its loudest 1024-sample frame, faded in and out over ``fade_ms`` and
    peak-normalised to 1 before concatenation. For music segments longer than one Iowa note (~2.5 s)."""
    notes = [x for _, x, _ in _load_all(files, sr, "note")]
    rng = np.random.default_rng(seed)
    fade = int(sr * fade_ms / 1000)
    out = []
    for k in rng.integers(len(notes), size=num_notes):
        x = notes[k]
        e = np.convolve(x**2, np.ones(N_FFT), "same")
        if e.max() <= 0:
            continue
        loud = np.flatnonzero(e >= e.max() * 10 ** (-trim_db / 10))
        x = x[loud[0]:loud[-1] + 1] / np.abs(x).max()
        ramp = np.linspace(0.0, 1.0, min(fade, len(x) // 2))
        x[: len(ramp)] *= ramp
        x[len(x) - len(ramp):] *= ramp[::-1]
        out.append(x)
    if not out:
        raise ValueError("all notes are silent")
    return np.concatenate(out)


# --- train / test splits ---------------------------------------------------------------------------------

_SPEAKER_PATTERNS = (
    ("librispeech", re.compile(r"^(\d+)-\d+-\d+$")),  # <speaker>-<chapter>-<utterance>.flac
    ("cmu_arctic", re.compile(r"^cmu_(?:arctic_)?us_([a-z]+)_(?:arctic_)?[ab]\d{4}$")),  # cmu_arctic_us_axb_a0006
    ("vctk", re.compile(r"^(p\d{3}|s\d+)_\d{3}(?:_mic\d)?$")),  # p286_011.wav, p286_011_mic1.flac
)
_ARCTIC_PLAIN = re.compile(r"^arctic_[ab]\d{4}$")
_ARCTIC_DIR = re.compile(r"cmu_us_([a-z]+)_arctic")


def speaker_id(path):
    """Speaker of a LibriSpeech, CMU ARCTIC or VCTK file, from its name: ``"librispeech:118"``,
    ``"cmu_arctic:axb"``, ``"vctk:p286"``. A plain ``arctic_a0001.wav`` takes the speaker from a
    ``cmu_us_<spk>_arctic`` folder above it, else ``"cmu_arctic:unknown"`` (all such files are then treated as
    one speaker, so they never straddle a split). Other names are a :class:`ValueError`."""
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    for corpus, pattern in _SPEAKER_PATTERNS:
        m = pattern.match(stem)
        if m:
            return f"{corpus}:{m.group(1)}"
    if _ARCTIC_PLAIN.match(stem):
        m = _ARCTIC_DIR.search(os.fspath(path))
        return f"cmu_arctic:{m.group(1) if m else 'unknown'}"
    raise ValueError(f"{path}: cannot tell the speaker (expected LibriSpeech <spk>-<chapter>-<utt>, CMU ARCTIC "
                     "cmu_arctic_us_<spk>_a0001 or arctic_a0001, VCTK p225_001); pass speaker_of=")


_NOTE = re.compile(r"(?:^|\.)([A-G][b#]?-?\d)(?=\.|$)")


def note_id(path):
    """Note name of a University of Iowa sample (``Flute.vib.ff.Ab5.wav`` -> ``"Ab5"``)."""
    stem = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    found = _NOTE.findall(stem)
    if not found:
        raise ValueError(f"{path}: no note name like 'A4' or 'Bb5' between dots in the file name")
    return found[-1]


def _group_split(files, key, test_fraction, seed, test_groups, what):
    files = [os.fspath(f) for f in files]
    groups = {}
    for f in files:
        groups.setdefault(key(f), []).append(f)
    names = sorted(groups)
    if test_groups is None:
        if len(names) < 2:
            raise ValueError(f"need at least 2 {what}s to split, found {len(names)}: {names}")
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        k = min(max(1, round(test_fraction * len(names))), len(names) - 1)
        test_groups = set(np.random.default_rng(seed).permutation(names)[:k].tolist())
    else:
        test_groups = set(test_groups)
        unknown = test_groups - set(names)
        if unknown:
            raise ValueError(f"unknown {what}s {sorted(unknown)}; found {names}")
    train = [f for f in files if key(f) not in test_groups]
    test = [f for f in files if key(f) in test_groups]
    return train, test


def speaker_split(files, test_fraction=0.2, seed=0, test_speakers=None, speaker_of=speaker_id):
    """Split files into ``(train, test)`` with no speaker in both (``speaker_of(path)`` names the speaker).

    ``round(test_fraction * speakers)`` speakers (at least one each side) are drawn with ``seed``, or
    ``test_speakers`` are given explicitly. The input order is kept within each list.
    """
    return _group_split(files, speaker_of, test_fraction, seed, test_speakers, "speaker")


def note_split(files, test_fraction=0.2, seed=0, test_notes=None):
    """Split instrument-note files into ``(train, test)`` by note name (:func:`note_id`), so that a note
    (e.g. every ``A4`` file, whatever its dynamics) is only on one side."""
    return _group_split(files, note_id, test_fraction, seed, test_notes, "note")
