"""Every exit code has its help line, and the codes keep their ranges."""

from __future__ import annotations

from tormentor.cli.exit_codes import HELP, ExitCode
from tormentor.cli.main import main


def test_every_code_has_a_help_line():
    assert set(HELP) == set(ExitCode)
    assert all(HELP[code].strip() for code in ExitCode)


def test_codes_are_distinct_and_in_their_ranges():
    values = [int(code) for code in ExitCode]
    assert len(values) == len(set(values))
    ranges = {"CONFIG": (10, 19), "DATA": (20, 29), "NATS": (30, 39), "BROKER": (30, 39), "TOR": (40, 49),
              "CLIENT": (50, 59), "CURATOR": (50, 59)}
    for code in ExitCode:
        prefix = code.name.split("_")[0]
        if prefix in ranges:
            low, high = ranges[prefix]
            assert low <= code <= high, code


def test_exit_codes_command_lists_them_all(capsys):
    assert main(["exit-codes"]) == 0
    out = capsys.readouterr().out
    for code in ExitCode:
        assert f"{int(code):3d}  {code.name.lower()}" in out


def test_a_broken_config_exits_with_the_config_code(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("clients:\n  count: many\n")
    assert main(["run", str(path)]) == ExitCode.CONFIG_INVALID
    assert "clients.count: expected an integer" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.yaml")]) == ExitCode.CONFIG_NOT_FOUND
