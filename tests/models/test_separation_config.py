# SPDX-License-Identifier: Apache-2.0
"""The typed settings of separation (:class:`SeparationConfig` and its groups), the keyword overrides of
:func:`run_separation`, :func:`separate_file` from Python and the NMF dictionaries file."""

import dataclasses

import numpy as np
import pytest
import torch

from pyro_dvae import priors
from pyro_dvae.models.separation import (
    NMFOptions,
    SeparateFileConfig,
    SeparationConfig,
    VEMOptions,
    run_separation,
    score_table,
    separate_file,
)
from pyro_dvae.models.separation.config import FLAT_KEYWORDS, apply_overrides
from pyro_dvae.nmf import NMFSeparator
from pyro_dvae.nmf_dicts import learn_nmf_dicts, load_nmf_dicts, save_nmf_dicts

SR = 16000


def _tiny_priors():
    torch.manual_seed(0)
    return [priors.build(n, x_dim=513, z_dim=2, emission="spectral", dense_dim=8, rnn_dim=8, z_dense=[8]).eval()
            for n in ("vae", "srnn")]


def _signal(seconds, seed):
    return 0.3 * np.random.default_rng(seed).standard_normal(int(seconds * SR))


def test_defaults_and_flat_keywords_map_to_fields():
    cfg = SeparationConfig()
    assert (cfg.method, cfg.algo, cfg.num_iters, cfg.output, cfg.chunk) == ("mixdvae", "vem", 30, "wiener", None)
    assert cfg.vem == VEMOptions() and cfg.vem.init == "equal" and cfg.vem.learn_gain and not cfg.vem.sample_z
    assert cfg.nmf == NMFOptions(iters=100)
    for key, (group, name) in FLAT_KEYWORDS.items():  # every flat keyword names a field of its group
        assert name in {f.name for f in dataclasses.fields(getattr(cfg, group))}, key
    out = apply_overrides(cfg, num_iters=5, init="prior", average=2, nmf_iters=7, nmf_alpha=0.5)
    assert (out.num_iters, out.vem.init, out.vem.average, out.nmf.iters, out.nmf.alpha) == (5, "prior", 2, 7, 0.5)
    assert cfg.num_iters == 30 and cfg.vem.init == "equal"  # the given config is left as it was
    # a whole group, then a flat keyword on top of it; groups given as dicts
    out = apply_overrides(None, vem=VEMOptions(mode="parallel"), sample_z=True)
    assert out.vem.mode == "parallel" and out.vem.sample_z
    assert SeparationConfig(vem={"family": "structured"}).vem.family == "structured"


@pytest.mark.parametrize("overrides, needle", [
    (dict(num_iters=0), "num_iters must be an integer >= 1"),
    (dict(method="ica"), "method must be one of"),
    (dict(algo="hmc"), "algo must be one of"),
    (dict(output="magic"), "output must be one of"),
    (dict(lr=-1.0), "lr must be"),
    (dict(chunk=0), "chunk must be an integer >= 1"),
    (dict(init="nowhere"), "init must be one of"),
    (dict(mode="fast"), "mode must be one of"),
    (dict(family="full"), "family must be one of"),
    (dict(noise="white"), "noise must be one of"),
    (dict(noise_ratio=0.0), "noise_ratio must be"),
    (dict(average=-1), "average must be an integer >= 0"),
    (dict(nmf_iters=0), "iters must be an integer >= 1"),
    (dict(nmf_beta=-0.1), "beta must be"),
])
def test_values_out_of_range_name_the_field(overrides, needle):
    with pytest.raises(ValueError, match=needle) as info:
        apply_overrides(None, **overrides)
    assert len(str(info.value).splitlines()) == 1


def test_unknown_override_and_misplaced_options_are_type_errors():
    mix = _signal(0.2, 0)
    with pytest.raises(TypeError, match="'num_iter'"):
        run_separation(mix, _tiny_priors(), num_iter=3)
    with pytest.raises(TypeError, match="NMFSeparator"):
        run_separation(mix, names=["a", "b"], method="is_nmf", nmf=NMFOptions(iters=3))
    with pytest.raises(TypeError, match="SeparationConfig"):
        run_separation(mix, _tiny_priors(), config={"num_iters": 3})


def test_config_and_flat_keywords_give_the_same_separation():
    ps, mix = _tiny_priors(), _signal(0.5, 1)
    flat = run_separation(mix, ps, names=["a", "b"], num_iters=3, init="prior", mode="parallel", seed=2)
    cfg = SeparationConfig(num_iters=3, seed=2, vem=VEMOptions(init="prior", mode="parallel"))
    typed = run_separation(mix, ps, names=["a", "b"], config=cfg)
    assert torch.equal(flat.stft, typed.stft) and np.array_equal(flat.waveforms, typed.waveforms)
    other = run_separation(mix, ps, names=["a", "b"], config=cfg, num_iters=1)  # an override on a config
    assert other.result.info["num_iters"] == 1


@pytest.fixture
def nmf_folders(tmp_path):
    sf = pytest.importorskip("soundfile")
    from pyro_dvae.data.synthetic_audio import flute_like, speech_like

    for name, x in (("speech", speech_like(1.0, seed=1)), ("flute", flute_like(1.0, seed=2))):
        (tmp_path / name).mkdir()
        sf.write(tmp_path / name / "0.wav", 0.5 * x / np.abs(x).max(), SR)
    s, f = 0.4 * speech_like(0.5, seed=3), 0.3 * flute_like(0.5, seed=4)
    for name, x in (("mix", s + f), ("ref_speech", s), ("ref_flute", f)):
        sf.write(tmp_path / f"{name}.wav", x, SR, subtype="FLOAT")
    return tmp_path


def test_nmf_dicts_file_round_trip_and_checks(nmf_folders, tmp_path):
    d = nmf_folders
    lines = []
    sep = learn_nmf_dicts(["speech", "flute"], [str(d / "speech"), str(d / "flute")], rank=3, iters=5, log=lines.append)
    assert len(lines) == 2 and lines[0].startswith("NMF dictionary speech: rank 3")
    path = tmp_path / "new" / "dicts.pt"
    save_nmf_dicts(path, sep, 3)
    back = load_nmf_dicts(path, ["flute", "speech"], 3)
    assert isinstance(back, NMFSeparator) and back.names == ["flute", "speech"]
    assert torch.equal(back.dictionaries["speech"], sep.dictionaries["speech"])
    with pytest.raises(ValueError, match="at nmf_rank 4"):
        load_nmf_dicts(path, ["speech", "flute"], 4)
    with pytest.raises(ValueError, match="--nmf-dicts .* at --nmf-rank 4"):  # the command's option names
        load_nmf_dicts(path, ["speech", "flute"], 4, labels={"nmf_dicts": "--nmf-dicts", "nmf_rank": "--nmf-rank"})
    torch.save({"rank": 3}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a dictionaries file"):
        load_nmf_dicts(tmp_path / "other.pt", ["speech", "flute"], 3)


def test_separate_file_from_python(nmf_folders, tmp_path):
    d, out = nmf_folders, tmp_path / "out"
    cfg = SeparateFileConfig(methods=["is_nmf", "temporal-nmf", "is_nmf"], nmf_train=[str(d / "speech"),
                             str(d / "flute")], nmf_rank=3, nmf_dicts=str(tmp_path / "dicts.pt"))
    assert cfg.methods == ("is_nmf", "temporal-nmf")  # repeats dropped, order kept
    summary = separate_file(str(d / "mix.wav"), str(out), names=["speech", "flute"], config=cfg, nmf_iters=5,
                            refs=[str(d / "ref_speech.wav"), str(d / "ref_flute.wav")])
    assert list(summary["methods"]) == ["is_nmf", "temporal-nmf"] and (tmp_path / "dicts.pt").exists()
    assert summary["methods"]["is_nmf"]["nmf_iters"] == 5 and (out / "temporal-nmf" / "flute.wav").exists()
    table = score_table(summary)
    assert table[0].split()[:2] == ["source", "SI-SDR"] and len(table) == 2 + 2 * 3
    # the second run reads the dictionaries: the same estimates
    again = separate_file(str(d / "mix.wav"), str(tmp_path / "again"), names=["speech", "flute"], nmf_iters=5,
                          config=dataclasses.replace(cfg, nmf_train=None),
                          refs=[str(d / "ref_speech.wav"), str(d / "ref_flute.wav")])
    assert again["methods"]["is_nmf"]["estimate"] == summary["methods"]["is_nmf"]["estimate"]
    assert score_table(separate_file(str(d / "mix.wav"), str(tmp_path / "x"), names=["speech", "flute"],
                                     config=dataclasses.replace(cfg, nmf_train=None, methods=["is-nmf"]))) == []
    # messages name the Python parameters unless labels= says otherwise
    with pytest.raises(ValueError, match="give one nmf_train folder per source"):
        separate_file(str(d / "mix.wav"), str(tmp_path / "y"), names=["speech", "flute"], methods=["is_nmf"],
                      nmf_train=[str(d / "speech")])
    with pytest.raises(ValueError, match="methods mixdvae needs priors"):
        separate_file(str(d / "mix.wav"), str(tmp_path / "y"), names=["speech", "flute"])
    with pytest.raises(ValueError, match="methods must be one or more of"):
        SeparateFileConfig(methods=["ica"])
    with pytest.raises(TypeError, match="'nmf_ranks'"):
        separate_file(str(d / "mix.wav"), str(tmp_path / "y"), names=["speech", "flute"], nmf_ranks=3)
    assert not (tmp_path / "y").exists()
