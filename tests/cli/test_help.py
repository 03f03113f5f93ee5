# SPDX-License-Identifier: Apache-2.0
"""``--help`` explains itself: every command shows its options' defaults and ends with an example; the
top-level help has no reStructuredText markup."""

import pytest

from pyro_dvae.cli import COMMANDS, main


def test_top_level_help_lists_the_commands_in_plain_text(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":class:" not in out
    for name in ("train-prior", "eval-prior", "train-noise", "track", "track-mot", "separate", "enhance"):
        assert name in out
    assert "pyro-dvae COMMAND --help" in out


@pytest.mark.parametrize("name", ["train-prior", "eval-prior", "train-noise", "track", "track-mot", "separate",
                                  "enhance"])
def test_command_help_shows_defaults_and_an_example(name, capsys):
    assert main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default: 1)" in out  # --threads
    assert "(default: 0)" in out  # --seed
    example = out.split("example:")[-1].strip()
    assert example.startswith(f"pyro-dvae {name} "), out
    assert len(COMMANDS) == 7
