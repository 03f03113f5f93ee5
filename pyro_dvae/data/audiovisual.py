# SPDX-License-Identifier: Apache-2.0
"""A **semi-synthetic** audiovisual speech set: real speech, with a rendered face per STFT frame whose factors
are known.

No audiovisual speech corpus can be obtained here, so the visual stream is drawn from the audio and from seeded
randomness, with three kinds of factors that the MDVAE latents are meant to separate:

- **appearance** (static, shared with the voice): face width, face height, shade and size are a fixed function
  of the *speaker* (:func:`appearance`, seeded by the speaker's id), the same for every utterance of that
  speaker;
- **mouth opening** (dynamics shared by both modalities): the utterance's own low-band energy (100-1000 Hz) per
  frame, in dB, mapped from [loudest - 40 dB, loudest] to [0, 1] and smoothed over 3 frames
  (:func:`mouth_track`);
- **head position and blinks** (visual-only dynamics): an AR(1) random walk of the face centre (memory
  :data:`HEAD_MEMORY` per frame, stationary spread :data:`HEAD_STD` px, clipped to +-3 px) and blinks (on
  average one per 3 s, 6 frames each), seeded by the utterance (:func:`visual_tracks`), independent of the audio.
  The memory (0.8, a correlation time of about 5 frames) keeps the head *dynamic within a 30-frame chunk*: with
  the former 0.97 (same spread) about 70 % of the head's variance was a constant offset per chunk, which no model
  of a chunk can tell from the speaker's static appearance.

:func:`render` draws 32 x 32 grey frames (values in [0, 1], soft edges): a bright elliptic face on a black
background, two dark eyes (a thin line while blinking), a dark elliptic mouth whose height follows the mouth
opening. :func:`measure` reads the factors back from frames (face bounding box and centre, shade, dark pixels
of the mouth and eye regions); the tests check that it recovers the generator's own factors, and the MDVAE
benchmark uses it to tell what moved when latents are swapped.
"""

import hashlib

import numpy as np
import torch

SIZE = 32
#: visual frames are flattened to SIZE * SIZE values
PIXELS = SIZE * SIZE
#: the generator's version, part of a chunk store's settings: a store written by another version is rebuilt
#: (2: the head walk's memory 0.97 -> 0.8)
VERSION = 2
#: AR(1) memory per frame of the head walk and its stationary standard deviation in px (the former 0.97 memory
#: with 0.35 px innovations had the same spread)
HEAD_MEMORY = 0.8
HEAD_STD = 0.35 / (1.0 - 0.97**2) ** 0.5
MOUTH_BINS = (6, 33)  # 1024-point STFT at 16 kHz: bins 6-32 cover about 94-1000 Hz


def _seed(*keys):
    h = hashlib.sha256("/".join(str(k) for k in keys).encode()).digest()
    return int.from_bytes(h[:8], "little")


def appearance(speaker):
    """``(width, height, shade, size)`` of a speaker's face, a fixed function of the speaker id."""
    rng = np.random.default_rng(_seed("appearance", speaker))
    return np.array([rng.uniform(0.75, 1.0), rng.uniform(0.85, 1.15), rng.uniform(0.45, 1.0),
                     rng.uniform(8.5, 11.0)])


def mouth_track(power, smooth=3):
    """Mouth opening in [0, 1] per frame from a power spectrogram ``(T, 513)`` (module docstring)."""
    power = np.asarray(power, dtype=np.float64)
    db = 10 * np.log10(power[:, MOUTH_BINS[0]:MOUTH_BINS[1]].sum(-1) + 1e-10)
    m = np.clip((db - (db.max() - 40.0)) / 40.0, 0.0, 1.0)
    if smooth > 1:
        m = np.convolve(np.pad(m, (smooth // 2, smooth // 2), mode="edge"), np.ones(smooth) / smooth, "valid")
    return m


def visual_tracks(T, seed):
    """``(head (T, 2) in px, blink (T,) in {0, 1})``: the visual-only dynamics of one utterance (``seed``: any
    value with a stable ``str``, e.g. the file name)."""
    rng = np.random.default_rng(_seed("visual", seed))
    head = np.zeros((T, 2))
    pos = rng.uniform(-1.5, 1.5, 2)
    innovation = HEAD_STD * (1.0 - HEAD_MEMORY**2) ** 0.5
    for t in range(T):
        pos = np.clip(HEAD_MEMORY * pos + innovation * rng.standard_normal(2), -3.0, 3.0)
        head[t] = pos
    blink = np.zeros(T)
    t = int(rng.integers(0, 90))
    while t < T:
        blink[t:t + 6] = 1.0
        t += 6 + int(rng.exponential(190))
    return head, blink


def _soft(d, width=0.6):
    """A soft inside test: 1 inside (``d < 0``), 0 outside, a sigmoid edge of ``width`` px."""
    return 1.0 / (1.0 + np.exp(np.clip(d / width, -50, 50)))


def render(app, mouth, head, blink):
    """Frames ``(T, SIZE * SIZE)`` in [0, 1] for appearance ``app`` (4,), mouth ``(T,)``, head ``(T, 2)``, blink
    ``(T,)``."""
    width, height, shade, size = app
    a, b = size * width, size * height * 1.1
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
    head = np.asarray(head, dtype=np.float64)
    u = xx - (SIZE / 2 + head[:, 0, None, None])  # (T, SIZE, SIZE): every frame at once
    v = yy - (SIZE / 2 + head[:, 1, None, None])
    face = _soft((np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * min(a, b))
    out = shade * face
    ry = np.where(np.asarray(blink) > 0.5, 0.35, 1.4)[:, None, None]
    for side in (-1, 1):  # eyes: disks, or thin lines while blinking
        ex, ey = u - side * 0.38 * a, v + 0.28 * b
        eye = _soft((np.sqrt((ex / 1.6) ** 2 + (ey / ry) ** 2) - 1.0) * np.minimum(1.6, ry))
        out = out * (1 - 0.9 * eye)
    mh = (0.5 + 3.5 * np.asarray(mouth, dtype=np.float64))[:, None, None]  # the mouth's half-height follows it
    mw = 0.38 * a
    mo = _soft((np.sqrt((u / mw) ** 2 + ((v - 0.45 * b) / mh) ** 2) - 1.0) * np.minimum(mw, mh))
    out = out * (1 - 0.9 * mo)
    return out.reshape(len(out), PIXELS).astype(np.float32)


def measure(frames):
    """Factors read back from frames ``(..., T, SIZE * SIZE)``: a dict of arrays ``(..., T)``: ``x``, ``y``
    (face centre offset, px), ``width`` and ``height`` (face bounding box, px), ``shade`` (median of the face's
    bright pixels), ``mouth`` (dark pixels of the mouth region in the face's central columns: the opening height in
    px),
    ``eyes`` (dark pixels in the eye band)."""
    f = np.asarray(frames, dtype=np.float64)
    shape = f.shape[:-1]
    f = f.reshape(-1, SIZE, SIZE)
    out = {k: np.zeros(len(f)) for k in ("x", "y", "width", "height", "shade", "mouth", "eyes")}
    idx = np.arange(SIZE) + 0.5
    for i, img in enumerate(f):
        on = img > 0.12
        if not on.any():
            continue
        cols, rows = np.where(on.any(0))[0], np.where(on.any(1))[0]
        x0, x1, y0, y1 = idx[cols[0]], idx[cols[-1]], idx[rows[0]], idx[rows[-1]]
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        out["x"][i], out["y"][i] = cx - SIZE / 2, cy - SIZE / 2
        out["width"][i], out["height"][i] = x1 - x0 + 1, y1 - y0 + 1
        bright = img[on]
        shade = np.percentile(bright, 75)
        out["shade"][i] = shade
        inside = np.zeros_like(on)
        inside[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
        dark = inside & (img < 0.55 * shade)
        h = y1 - y0 + 1
        yy = idx[:, None] - cy
        mouth_band = (yy > 0.12 * h) & (yy < 0.42 * h)
        eye_band = (yy < -0.04 * h) & (yy > -0.30 * h)
        xx = np.abs(idx[None, :] - cx)
        near = xx < 0.42 * (x1 - x0 + 1)
        # the mouth's height: dark pixels of the mouth band in the three columns at the face's centre (the mouth
        # is centred there), so that the face's size or shade does not read as a mouth change
        c = int(np.clip(np.floor(cx), 1, SIZE - 2))
        out["mouth"][i] = (dark & mouth_band)[:, c - 1:c + 2].sum() / 3.0
        out["eyes"][i] = (dark & eye_band & near).sum()
    return {k: v.reshape(shape) for k, v in out.items()}


def utterance(x, speaker, seed, power=None):
    """The audiovisual frames of one utterance: ``(power (T, 513), frames (T, PIXELS), factors)`` with
    ``factors = {"appearance", "mouth", "head", "blink"}``. ``x`` is the 16 kHz waveform (peak-normalised
    here)."""
    from .audio import stft

    if power is None:
        x = np.asarray(x, dtype=np.float64)
        power = (stft(torch.as_tensor(x / max(np.abs(x).max(), 1e-12), dtype=torch.float32)).abs() ** 2).numpy()
    app = appearance(speaker)
    mouth = mouth_track(power)
    head, blink = visual_tracks(len(power), seed)
    frames = render(app, mouth, head, blink)
    return power, frames, {"appearance": app, "mouth": mouth, "head": head, "blink": blink}


def chunks(x, speaker, seed, seq_len=30, silence_db=30.0):
    """Audiovisual training chunks of one utterance: ``(N, seq_len, 513 + PIXELS)`` (the power spectrum then the
    frame, per step; silent chunks dropped as :func:`~pyro_dvae.data.audio.power_chunks` does) and the factors
    of each chunk."""
    power, frames, f = utterance(x, speaker, seed)
    T = (len(power) // seq_len) * seq_len
    if T == 0:
        return np.zeros((0, seq_len, power.shape[1] + PIXELS), np.float32), []
    p = power[:T].reshape(-1, seq_len, power.shape[1])
    level = p.mean((1, 2))
    keep = level >= level.max() * 10 ** (-silence_db / 10)
    av = np.concatenate([p, frames[:T].reshape(-1, seq_len, PIXELS)], -1)[keep].astype(np.float32)
    facts = [{"appearance": f["appearance"], "mouth": f["mouth"][k * seq_len:(k + 1) * seq_len],
              "head": f["head"][k * seq_len:(k + 1) * seq_len], "blink": f["blink"][k * seq_len:(k + 1) * seq_len]}
             for k in np.where(keep)[0]]
    return av, facts


def speaker_of(path):
    """The speaker id of a LibriSpeech / ARCTIC / VCTK file name (:func:`pyro_dvae.data.mixtures.speaker_id`)."""
    from .mixtures import speaker_id

    return speaker_id(path)
