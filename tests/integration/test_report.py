"""The HTML reports and the command line around them, end to end: ``capacitor run`` writes a
self-contained report.html that ``capacitor report`` rebuilds byte for byte; --no-requests,
--no-report, --quiet and --json; tables whole in a pipe; -h, --version and exit codes in the
help; ``validate --measured`` writes its report; and the page draws every chart in headless
Chromium (skipped, saying why, where Chromium is not installed)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from html.parser import HTMLParser
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from capacitor.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "canonical.yaml"
CHARTS = 7  # TTFT and E2E CDFs, timeline, power, deployments, frontier, costs
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def small_scenario(tmp_path_factory) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["simulation"]["window"]["duration_s"] = 120
    data["simulation"]["window"]["warmup_s"] = 30
    path = tmp_path_factory.mktemp("scenario") / "small.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def run_dir(small_scenario, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "small"
    result = invoke("run", small_scenario, "--out", out)
    assert result.exit_code in (0, 1), (result.output, result.exception)
    return out


class _Links(HTMLParser):
    """Every src / href attribute of the page's tags (script bodies are not tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.links += [(tag, k, v or "") for k, v in attrs if k in ("src", "href")]


def test_run_writes_a_self_contained_report_that_report_rebuilds(run_dir, tmp_path):
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    links = _Links()
    links.feed(page)
    assert [x for x in links.links if re.match(r"\s*(https?:)?//", x[2])] == []
    assert not any(tag in ("script", "link", "img") for tag, _, _ in links.links)
    assert page.count('class="plotly-graph-div"') == CHARTS
    assert len(page.encode()) < 10_000_000
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"]["text"] in page.replace("&#x27;", "'")
    assert "ASSUMPTION" in page or "cannot be read" in page  # the assumptions section
    rebuilt = tmp_path / "again.html"
    result = invoke("report", run_dir, "--out", rebuilt)
    assert result.exit_code == 0, (result.output, result.exception)
    assert rebuilt.read_bytes() == (run_dir / "report.html").read_bytes()
    assert "wrote report.html" in (run_dir / "run.log").read_text()


def test_report_of_a_directory_that_is_not_a_run_is_one_error_line(tmp_path):
    for target in (tmp_path / "absent", tmp_path):
        result = invoke("report", target)
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output


def test_no_requests_no_report_quiet_and_json(small_scenario, run_dir, tmp_path):
    out = tmp_path / "bare"
    result = invoke("run", small_scenario, "--out", out, "--no-requests", "--no-report", "-q")
    assert result.exit_code in (0, 1), (result.output, result.exception)
    assert result.output == ""  # quiet: nothing on stdout or stderr
    assert sorted(p.name for p in out.iterdir()) == ["run.log", "scenario.yaml",
                                                     "summary.json", "timeline.parquet"]
    # the outputs do not depend on the flags
    for name in ("summary.json", "timeline.parquet", "scenario.yaml"):
        assert (out / name).read_bytes() == (run_dir / name).read_bytes()
    # the report of a run without requests.parquet says what it left out
    assert invoke("report", out).exit_code == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "requests.parquet was not written" in page
    assert page.count('class="plotly-graph-div"') == CHARTS - 3  # no CDFs, no frontier
    as_json = invoke("run", small_scenario, "--out", tmp_path / "j", "--json", "--quiet",
                     "--no-report")
    assert as_json.stdout == (run_dir / "summary.json").read_text()


def test_tables_are_whole_in_a_pipe(small_scenario, tmp_path):
    result = invoke("run", small_scenario, "--out", tmp_path / "p", "--no-report")
    # CliRunner's stdout is not a terminal, like `capacitor run | cat`: nothing is cut to
    # fit 80 columns (rich marks a cut cell with an ellipsis) and the widest table is wider
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) > 80
    costs = [line for line in result.stdout.splitlines() if line.strip().startswith("fleet")]
    assert costs and len(costs[0].split()) == 7  # the label and its six numbers, on one line


def test_help_version_and_exit_codes():
    top = invoke("-h")
    assert top.exit_code == 0 and "Exit codes" in top.stdout
    run_help = invoke("run", "-h")
    assert run_help.exit_code == 0
    assert "<bool>" not in run_help.stdout
    for flag in ("--quiet", "--json", "--no-requests", "--no-report", "Exit codes"):
        assert flag in run_help.stdout
    validate_help = invoke("validate", "--help").stdout
    assert "DESIGN" not in validate_help and "README" in validate_help
    assert "Exit codes" in validate_help
    assert invoke("--version").stdout.strip() == f"capacitor {version('capacitor')}"


def test_validate_measured_writes_its_report(tmp_path, small_row, write_experiments):
    rows = [small_row, dict(small_row, id="small2", hardware="H200")]
    path = write_experiments(tmp_path / "e.csv", rows)
    measured = tmp_path / "m.csv"
    measured.write_text("id,ttft_mean_ms,e2e_mean_ms\nsmall,100,1000\nsmall2,50,500\n")
    result = invoke("validate", path, "--out", tmp_path / "p.csv", "--measured", measured)
    assert result.exit_code == 0, (result.output, result.exception)
    page = (tmp_path / "p.html").read_text(encoding="utf-8")
    for heading in ("Predicted against measured", "Error by hardware", "Error by engine",
                    "Error by concurrency", "Error per row"):
        assert f"<h2>{heading}" in page
    assert "H200" in page and "small2" in page
    links = _Links()
    links.feed(page)
    assert links.links == []
    into = tmp_path / "reports"
    into.mkdir()
    again = invoke("validate", path, "--out", tmp_path / "p.csv", "--measured", measured,
                   "--report", into)
    assert again.exit_code == 0 and (into / "p.html").read_bytes() == page.encode()
    bad = invoke("validate", path, "--out", tmp_path / "q.csv", "--report", tmp_path / "r.html")
    assert bad.exit_code == 2 and "--report needs --measured" in bad.output


RECORDER = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message)));
const __err = console.error;
console.error = (...a) => { window.__errors.push(a.join(" ")); __err(...a); };
window.addEventListener("load", () => {
  document.documentElement.setAttribute("data-load-ms", String(performance.now()));
  document.documentElement.setAttribute("data-errors", JSON.stringify(window.__errors));
});
</script>"""


def _chromium(*args: str, user_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--enable-logging=stderr", "--v=0", f"--user-data-dir={user_dir}",
         *args], capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                    reason="headless Chromium not installed (Debian: apt-get install chromium)")
def test_every_chart_draws_in_headless_chromium(run_dir, tmp_path):
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    probe = tmp_path / "probe.html"  # the report with an error recorder first in its head
    probe.write_text(page.replace("<head>", "<head>" + RECORDER, 1), encoding="utf-8")
    started = time.perf_counter()
    dom = _chromium("--dump-dom", probe.as_uri(), user_dir=tmp_path / "profile")
    wall_s = time.perf_counter() - started
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    errors = json.loads(re.search(r'data-errors="([^"]*)"', html).group(1).replace(
        "&quot;", '"'))
    assert errors == []
    assert not re.search(r"Uncaught|CONSOLE\(\d+\)\].*[Ee]rror", dom.stderr)
    charts = html.split('class="plotly-graph-div')[1:]
    assert len(charts) == CHARTS
    for chart in charts:  # each chart drew: plotly put its svg in the div
        assert 'class="main-svg"' in chart.split('class="plotly-graph-div')[0]
    load_ms = float(re.search(r'data-load-ms="([\d.]+)"', html).group(1))
    print(f"report loaded and drawn in {load_ms:.0f} ms in the page ({wall_s:.1f} s with "
          "Chromium's start)")
    shot = tmp_path / "report.png"
    done = _chromium("--hide-scrollbars", "--window-size=1280,4000", f"--screenshot={shot}",
                     probe.as_uri(), user_dir=tmp_path / "profile")
    assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
