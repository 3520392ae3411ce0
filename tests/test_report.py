"""``report.html``: written by every recorded run, rebuilt by ``consortia report``, one self-contained file."""

from __future__ import annotations

import base64
import json
import re

import pytest
from typer.testing import CliRunner

from consortia.cli import app
from consortia.errors import ConfigError
from consortia.experiment.recorded import run_recorded
from consortia.runs.report import SECTIONS, render_html, write_report

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def _check_page(page: str, result) -> None:
    for section in SECTIONS:
        assert f"<h2>{section}</h2>" in page, section
    images = _images(page)
    assert len(images) == 4 and all(image.startswith(PNG) and len(image) > 5_000 for image in images)
    assert "src='http" not in page and "<script" not in page  # self-contained: nothing to fetch
    for name in result.per_institution:
        assert f"<td>{name}</td>" in page
    assert f"{result.summary['pooled']['federated']:.4f}" in page
    assert f"<td>mechanism</td><td>{result.privacy['mechanism']}</td>" in page
    assert f"{result.timings['total_s']:.3f}" in page


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    from consortia import ExperimentConfig

    folder = tmp_path_factory.mktemp("report") / "run"
    config = {"vertical": "healthcare", "institutions": 3, "rows": 1500, "rounds": 3, "seed": 7}
    return run_recorded(ExperimentConfig.build(**config, run_dir=str(folder)))


def test_every_run_folder_gets_a_report_that_can_be_rebuilt(recorded, tmp_path):
    result, folder = recorded
    report = folder.path / "report.html"
    page = report.read_text()
    _check_page(page, result)
    assert "label rate (train)" in page and len(re.findall(r"<td>\d+\.\d%</td>", page)) >= 3 * 3

    report.unlink()
    png = tmp_path / "charts.png"
    out = runner.invoke(app, ["report", str(folder.path), "--png", str(png)])
    assert out.exit_code == 0, out.output
    _check_page(report.read_text(), result)
    assert png.read_bytes().startswith(PNG)


def test_report_refuses_what_is_not_a_finished_run(tmp_path):
    out = runner.invoke(app, ["report", str(tmp_path / "absent")])
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.exit_code == 2 and len(lines) == 1 and "no such run folder" in lines[0], out.output
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text(json.dumps({"vertical": "healthcare"}))
    with pytest.raises(ConfigError, match=r"has no result\.json"):
        write_report(tmp_path / "half")


def test_many_institutions_and_dp_render(recorded):
    """Past 30 institutions the charts change form; a DP run's ε shows in the privacy table."""
    data = recorded[0].to_dict()
    one = next(iter(data["per_institution"].values()))
    data["per_institution"] = {f"site-{i:02d}": one for i in range(40)}
    data["institution_sizes"] = {f"site-{i:02d}": {"train": 100 + i, "test": 30} for i in range(40)}
    data["privacy"] = {"mechanism": "dp-client", "epsilon": 3.5, "delta": 1e-5, "aggregation": "plain"}
    page = render_html(data)
    assert len(_images(page)) == 4 and "<td>site-39</td>" in page
    assert "<td>epsilon</td><td>3.5</td>" in page and "Label rates unknown" in page
