# SPDX-License-Identifier: Apache-2.0
"""Training data for the engine: in-memory sequences or audio chunks streamed from a memory-mapped store.

- :class:`Sequences`: ``(N, T, D)`` tensors (and optional masks) already in memory (synthetic trajectories,
  a caller's tensors); a batch is one indexing of the tensor, not ``batch_size`` item lookups.
- :class:`ChunkStore`: the power-spectrum chunks of an audio folder (:func:`pyro_dvae.data.audio.power_chunks`,
  file by file, pitch-shifted copies included) written once to a float32 file on disk and read back through
  ``numpy.memmap``: only one file's spectrogram is in memory while it is built, and training reads the batches
  it needs (the operating system's page cache does the rest), so hours of speech fit on a laptop.
- :class:`TrajectoryStream`: synthetic box trajectories drawn anew for every batch of every epoch
  (:func:`pyro_dvae.data.synthetic_trajectories`, seeded by the run's seed, the epoch and the batch), so a
  long training never sees the same track twice; validation stays a fixed set.
- :class:`RankBatches`: the batch sampler, seeded per epoch and split across the ranks of a distributed run
  (each rank gets every ``world``-th batch of one permutation, so the ranks never overlap and together cover
  the data once per epoch, as :class:`torch.utils.data.DistributedSampler` does).
- :class:`SequenceData`: the :class:`lightning.pytorch.LightningDataModule` over a training and a validation
  source, with ``num_workers`` loader processes.
"""

import json
import math
import os

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

#: the store's file names inside its folder
STORE_DATA, STORE_META = "chunks.f32", "chunks.json"


class Sequences(Dataset):
    """Batches of in-memory sequences: ``dataset[index_tensor] -> (x, mask)`` (``mask`` may be ``None``);
    the samplers' ``(epoch, index_tensor)`` keys are taken too."""

    def __init__(self, x, mask=None):
        self.x, self.mask = x, mask

    def __len__(self):
        return len(self.x)

    def __getitem__(self, key):
        idx = key[1] if isinstance(key, tuple) else key
        return self.x[idx], (None if self.mask is None else self.mask[idx])


class TrajectoryStream(Dataset):
    """``n`` synthetic trajectories of ``seq_len`` frames per epoch, new ones every epoch (module docstring).

    :param dict options: keyword arguments of :func:`pyro_dvae.data.synthetic_trajectories`.
    """

    def __init__(self, n, seq_len, seed=0, **options):
        self.n, self.seq_len, self.seed, self.options = int(n), int(seq_len), int(seed), options
        self.shape = (self.n, self.seq_len, 4)

    def __len__(self):
        return self.n

    def __getitem__(self, key):
        from ..data import synthetic_trajectories

        epoch, idx = key if isinstance(key, tuple) else (0, key)
        seed = (self.seed * 1_000_003 + int(epoch) * 10_007 + int(idx.min())) % 2**32
        x = synthetic_trajectories(len(idx), self.seq_len, seed=seed, **self.options)
        return torch.as_tensor(x), None

    def tensor(self, limit=None):
        return self[(0, torch.arange(min(self.n, limit or self.n)))][0]


class ChunkStore(Dataset):
    """Power-spectrum chunks ``(N, seq_len, F)`` of an audio folder, on disk (see the module docstring).

    :param str folder: the store's folder (made by :meth:`build`).
    :param indices: the chunk numbers this view serves (default: all); :meth:`split` makes train / val views.
    """

    def __init__(self, folder, indices=None):
        self.folder = folder
        with open(os.path.join(folder, STORE_META)) as f:
            self.meta = json.load(f)
        self.shape = tuple(self.meta["shape"])
        self.indices = np.arange(self.shape[0]) if indices is None else np.asarray(indices)
        self._data = None

    @classmethod
    def build(cls, audio_folder, store, seq_len=50, hop=None, pitch_shifts=(0.0,), silence_db=30.0, kind="power"):
        """Write the chunks of every file of ``audio_folder`` (and its ``pitch_shifts`` copies) to ``store``.

        ``kind="power"``: power spectra (:func:`~pyro_dvae.data.audio.power_chunks`); ``"audiovisual"``: the
        semi-synthetic audiovisual chunks of :func:`pyro_dvae.data.audiovisual.chunks` (power spectrum and
        rendered face per step; the speaker is read from the file name). A store already built with the same
        settings from the same files is reused; the metadata file is written last (atomically), so an
        interrupted build is never taken for a finished one."""
        from ..data import audiovisual
        from ..data.audio import AUDIO_EXTENSIONS, audio_files, load_audio, pitch_shift, power_chunks

        if kind not in ("power", "audiovisual"):
            raise ValueError(f"kind must be 'power' or 'audiovisual', got {kind!r}")

        files = audio_files(audio_folder)
        if not files:
            raise ValueError(f"{audio_folder}: no {'/'.join(AUDIO_EXTENSIONS)} files found")
        shifts = [float(k) for k in pitch_shifts] or [0.0]
        settings = {"files": [[f, os.path.getsize(f), os.path.getmtime(f)] for f in files], "seq_len": int(seq_len),
                    "hop": hop, "pitch_shifts": shifts, "silence_db": float(silence_db), "kind": kind}
        if kind == "audiovisual":  # the rendered faces change with the generator
            settings["generator"] = audiovisual.VERSION
        meta_path = os.path.join(store, STORE_META)
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                if json.load(f).get("settings") == settings:
                    return cls(store)
        os.makedirs(store, exist_ok=True)
        count, width = 0, None
        with open(os.path.join(store, STORE_DATA), "wb") as out:
            for path in files:
                x = load_audio(path)
                for k in shifts:
                    if kind == "power":
                        c = power_chunks([pitch_shift(x, k)], seq_len, silence_db, hop)
                    else:
                        c = torch.from_numpy(audiovisual.chunks(pitch_shift(x, k), audiovisual.speaker_of(path),
                                                                (os.path.basename(path), k), seq_len, silence_db)[0])
                    if len(c):
                        width = c.shape[-1]
                        out.write(c.numpy().astype(np.float32).tobytes())
                        count += len(c)
        if count == 0:
            raise ValueError(f"{audio_folder}: no non-silent chunk of {seq_len} frames")
        tmp = meta_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"shape": [count, int(seq_len), width], "settings": settings}, f)
        os.replace(tmp, meta_path)
        return cls(store)

    @staticmethod
    def wait_for(store, timeout=3600.0):
        """Wait until another process has finished building ``store`` (the ranks > 0 of a launched run)."""
        import time

        start = time.monotonic()
        while not os.path.exists(os.path.join(store, STORE_META)):
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"{store}: the chunk store was not built within {timeout:.0f} s")
            time.sleep(0.5)
        return ChunkStore(store)

    @classmethod
    def for_run(cls, audio_folder, store, option="--data", **build_options):
        """The store of ``audio_folder`` at ``store`` for every process of a run: built by rank 0
        (:meth:`build` with ``build_options``), waited for by the others (:meth:`wait_for`). A missing folder, one
        without usable audio or with fewer than 2 chunks is an error naming the command-line ``option``."""
        from .ranks import is_rank_zero

        if not os.path.isdir(audio_folder):
            raise FileNotFoundError(f"{option} {audio_folder}: no such folder")
        if not is_rank_zero():
            return cls.wait_for(store)
        try:
            built = cls.build(audio_folder, store, **build_options)
        except ValueError as e:
            raise ValueError(f"{option} {e}") from None
        if len(built) < 2:
            seq_len = build_options.get("seq_len", 50)
            raise ValueError(f"{option} {audio_folder}: need at least 2 chunks of {seq_len} frames, got {len(built)}")
        return built

    def split(self, fraction, seed):
        """``(train, val)`` views: a seeded random ``fraction`` of the chunks (at least one) for validation."""
        n = self.shape[0]
        if n < 2:
            raise ValueError(f"need at least 2 chunks, got {n}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
        n_val = max(1, int(round(fraction * n)))
        return ChunkStore(self.folder, perm[n_val:]), ChunkStore(self.folder, perm[:n_val])

    def tensor(self, limit=None):
        """The chunks of this view as one tensor (the first ``limit`` of them): normalisation statistics."""
        return self[np.arange(min(len(self), limit or len(self)))][0]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, key):
        idx = key[1] if isinstance(key, tuple) else key
        if self._data is None:  # opened lazily: once per loader worker
            self._data = np.memmap(os.path.join(self.folder, STORE_DATA), dtype=np.float32, mode="r",
                                   shape=self.shape)
        rows = np.sort(self.indices[np.asarray(idx)])  # sorted reads; the batch order does not matter
        return torch.from_numpy(np.ascontiguousarray(self._data[rows])), None

    def __getstate__(self):  # loader workers reopen the memmap
        return {**self.__dict__, "_data": None}


class RankBatches(torch.utils.data.Sampler):
    """``(epoch, index batch)`` keys for one rank: a permutation seeded by ``seed`` and the epoch (``shuffle``)
    or the natural order, cut into batches of ``batch_size``; rank ``r`` of ``world`` takes batches ``r, r + world,
    ...``.
    With ``pad`` (training), every rank gets the same number of batches (the last ones repeat early batches when
    they do not divide), so that the gradient all-reduces of a distributed run stay in step; validation
    (``pad=False``) counts every sequence exactly once."""

    def __init__(self, n, batch_size, shuffle=True, seed=0, rank=0, world=1, pad=True):
        self.n, self.batch_size, self.shuffle, self.seed, self.pad = n, int(batch_size), shuffle, seed, pad
        self.rank, self.world, self.epoch = rank, world, 0

    def set_epoch(self, epoch):  # called by Lightning before every epoch
        self.epoch = epoch

    def _batches(self):
        order = (torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + 1000003 * self.epoch))
                 if self.shuffle else torch.arange(self.n))
        return list(order.split(self.batch_size))

    def __len__(self):
        batches = math.ceil(self.n / self.batch_size)
        if self.pad:
            return math.ceil(batches / self.world)
        return len(range(self.rank, batches, self.world))

    def __iter__(self):
        batches = self._batches()
        mine = batches[self.rank::self.world]
        while len(mine) < len(self):  # pad with this rank's earliest batches
            mine.append(batches[(self.rank + self.world * len(mine)) % len(batches)])
        return iter((self.epoch, b) for b in mine)


def _identity(batch):
    return batch


class SequenceData(pl.LightningDataModule):
    """Training and validation sources (:class:`Sequences` or :class:`ChunkStore`) for the engine.

    :param int batch_size: sequences per step and process (the effective batch of ``k`` processes is ``k``
        times this).
    :param int num_workers: loader processes per training process (0: load in the training process).
    """

    def __init__(self, train, val, batch_size, seed=0, num_workers=0, val_batch_size=None):
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.seed, self.num_workers = int(batch_size), int(seed), int(num_workers)
        self.val_batch_size = int(val_batch_size or batch_size)

    def _loader(self, data, batch_size, shuffle):
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        sampler = RankBatches(len(data), batch_size, shuffle, self.seed, rank, world, pad=shuffle)
        return DataLoader(data, sampler=sampler, batch_size=None, collate_fn=_identity, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader(self.train, self.batch_size, True)

    def val_dataloader(self):
        world = 1 if self.trainer is None else self.trainer.world_size
        if len(self.val) < world:
            raise ValueError(f"{len(self.val)} validation sequences for {world} processes: each needs at least one")
        return self._loader(self.val, min(self.val_batch_size, math.ceil(len(self.val) / world)), False)
