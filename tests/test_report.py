"""``tormentor-engine report`` on real (tiny) experiment outputs, and the ``experiment`` command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tormentor.cli.exit_codes import ExitCode
from tormentor.cli.experiments import get
from tormentor.cli.experiments.results import read_results
from tormentor.cli.experiments.runner import Verdict, run_experiment
from tormentor.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, credit_path):
    """Two tiny experiments, as `experiment all` lays them out: <root>/<name>/."""
    root = tmp_path_factory.mktemp("all")
    run_experiment(
        get("sybil"),
        scale="quick",
        out=root / "sybil",
        log=None,
        overrides=["bits=[4, 8]", "identities=[1, 3]"],
    )
    run_experiment(
        get("fig8"),
        scale="quick",
        out=root / "fig8",
        log=None,
        overrides=[f"data.path={credit_path}", "iterations=150", "seeds=[1, 2]", "epsilons=[0.5, 5, inf]"],
    )
    return root


def image_links(report: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)


def test_report_assembles_every_experiment_with_the_paper_beside_ours(outputs, tmp_path, capsys):
    out = tmp_path / "combined"
    assert main(["report", str(outputs), "--out", str(out)]) == ExitCode.OK
    assert str(out / "report.md") in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert report.startswith("# TorMentor's evaluation, reproduced")
    # Every experiment has its section, in the `experiment all` order (fig8 before sybil).
    assert report.index("## fig8:") < report.index("## sybil:")
    # Honest differences, the paper's numbers, and the verdicts.
    assert "Leak-free data" in report and "Loopback, not a WAN" in report
    assert "| experiment | scale | claim | paper | ours | verdict |" in report
    assert "37% → 6%" in report and "33% → 1%" in report
    # Every figure is linked and the link resolves from the report's folder.
    links = image_links(report)
    assert {Path(link).name for link in links} == {"fig8.png", "sybil.png"}
    assert all((out / link).is_file() for link in links)
    # Seeds and settings are stated.
    assert "seeds: [1, 2]" in report and "iterations: 150" in report


def test_every_difference_and_contradiction_is_listed(outputs, tmp_path):
    assert main(["report", str(outputs / "fig8"), "--out", str(tmp_path)]) == ExitCode.OK
    report = (tmp_path / "report.md").read_text()
    section = report.split("## Where our results differ from or contradict the paper", 1)[1].split(
        "\n## ", 1
    )[0]
    rows = get("fig8").compare(read_results(outputs / "fig8"))
    against = [r for r in rows if r.verdict in (Verdict.DIFFERS, Verdict.CONTRADICTS)]
    for row in against:
        assert row.claim in section and row.verdict in section
    if not against:
        assert "Nowhere" in section
    for row in rows:
        if row.verdict == Verdict.AGREES:
            assert row.claim not in section


def test_default_report_folder(outputs, capsys):
    # A folder of experiment folders: the report goes into it.
    assert main(["report", str(outputs)]) == ExitCode.OK
    assert (outputs / "report.md").is_file()
    # Experiment folders: the report goes into the first one's parent.
    (outputs / "report.md").unlink()
    assert main(["report", str(outputs / "sybil"), str(outputs / "fig8")]) == ExitCode.OK
    report = (outputs / "report.md").read_text()
    assert report.index("## sybil:") < report.index("## fig8:")
    assert all((outputs / link).is_file() for link in image_links(report))


def test_report_refuses_a_folder_without_results(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["report", str(tmp_path / "empty"), "--out", str(tmp_path)])
    assert code == ExitCode.CONFIG_NOT_FOUND
    assert "no results.json" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()


def test_experiment_command_writes_the_standard_folder(tmp_path, capsys):
    out = tmp_path / "sybil"
    code = main(
        [
            "experiment",
            "sybil",
            "--quick",
            "--out",
            str(out),
            "--set",
            "bits=[4, 6]",
            "--set",
            "identities=[2]",
            "--set",
            "seeds=[7, 8, 9]",
        ]
    )
    assert code == ExitCode.OK
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 2 * 3 and {r["seed"] for r in records} == {7, 8, 9}
    meta = json.loads((out / "experiment.json").read_text())
    assert meta["scale"] == "quick" and meta["overrides"] == [
        "bits=[4, 6]",
        "identities=[2]",
        "seeds=[7, 8, 9]",
    ]
    assert (out / "sybil.png").is_file() and (out / "report.md").is_file()


def test_experiment_command_lists_every_bad_setting(tmp_path, capsys):
    code = main(
        [
            "experiment",
            "fig10",
            "--quick",
            "--out",
            str(tmp_path / "x"),
            "--set",
            "clients=eight",
            "--set",
            "costs.hash_rat=5",
        ]
    )
    assert code == ExitCode.CONFIG_INVALID
    err = capsys.readouterr().err
    assert "clients: expected an integer, got 'eight'" in err
    assert "costs.hash_rat: unknown key" in err
    assert not (tmp_path / "x").exists()
