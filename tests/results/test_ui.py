"""`prunetuna ui`: a real headless Chromium lands on the study's trials with their metrics, the parent run carries
its description and Pareto table; optuna-dashboard serves the study; SIGTERM stops every server it started."""

from __future__ import annotations

import html as html_module
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from mlflow import MlflowClient
from services import free_port, wait_for_http
from typer.testing import CliRunner

from conftest import HERE, tiny_config, write_config
from prunetuna.cli import app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium installed (.ci/run installs Debian's chromium)"
)
ARTIFACTS = Path(
    os.environ.get("PRUNETUNA_TEST_ARTIFACTS", HERE.parent / "test-artifacts")
)  # screenshots of failed page checks
URL_LINE = re.compile(r"MLflow UI for study '[^']+', on its trials: (\S+)")


def _text(html: str) -> str:
    html = re.sub(r"<(style|script).*?</\1>", " ", html, flags=re.S)
    return html_module.unescape(" ".join(re.sub(r"<[^>]+>", " ", html).split()))


def _chromium(url: str, profile: Path, *action: str) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1600,1000",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=30000",
        *action,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def _page_text(url: str, profile: Path, expect: str) -> str:
    """The rendered page's text; the single-page app may need a second load while the server warms up."""
    text = ""
    for attempt in range(4):
        text = _text(_chromium(url, Path(f"{profile}-{attempt}"), "--dump-dom").stdout)
        if expect in text:
            break
    return text


@contextmanager
def _screenshot_on_failure(url: str, profile: Path, name: str) -> Iterator[None]:
    """A failed page check leaves a screenshot of that page under test-artifacts/ (or $PRUNETUNA_TEST_ARTIFACTS)."""
    try:
        yield
    except AssertionError as exc:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"{name}.png"
        _chromium(url, profile, f"--screenshot={shot}")
        raise AssertionError(f"{exc}\n(screenshot: {shot})") from None


@dataclass
class Served:
    process: subprocess.Popen
    log: Path
    url: str


def _descendants(pid: int) -> set[int]:
    """Every process under ``pid`` now (read from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@contextmanager
def _serving(config: Path, workdir: Path, *args: str, extra_env: dict[str, str] | None = None) -> Iterator[Served]:
    """``prunetuna ui`` in a child process until the MLflow UI it prints answers; killed (whole tree) after."""
    port = free_port()
    log = workdir.parent / f"ui-{port}.log"
    env = {**os.environ, "PYTHONPATH": str(HERE), **(extra_env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("w") as sink:  # a file, not a pipe: the servers' request logs must never block them
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prunetuna",
                "ui",
                str(config),
                "--workdir",
                str(workdir),
                "--port",
                str(port),
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
            env=env,
            start_new_session=True,
        )
    tree: set[int] = set()
    try:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health", process)
        except TimeoutError:
            pytest.fail(f"the MLflow UI did not come up: {log.read_text()}")
        tree = _descendants(process.pid)
        found = URL_LINE.search(log.read_text())
        assert found, log.read_text()
        yield Served(process, log, found.group(1))
    finally:
        for pid in [process.pid, *tree, *_descendants(process.pid)]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three trials under a FLOPs budget: the uniform and global-ranking baselines and one searched candidate."""
    folder = tmp_path_factory.mktemp("ui")
    config = write_config(folder, tiny_config("ui-study", search={"n_trials": 3}, constraints={"flops": 0.6}))
    result = CliRunner().invoke(app, ["search", str(config), "--workdir", str(folder / "w")])
    assert result.exit_code == 0, result.output
    return config, folder / "w"


@pytest.fixture(scope="module")
def served(study: tuple[Path, Path]) -> Iterator[Served]:
    with _serving(*study) as serving:
        yield serving


def _client(workdir: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")


def _runs(workdir: Path) -> dict[str, object]:
    client = _client(workdir)
    experiment = client.get_experiment_by_name("ui-study")
    return {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}


@needs_chromium
def test_the_printed_url_lands_on_the_trials_with_their_metrics(
    served: Served, study: tuple[Path, Path], tmp_path: Path
) -> None:
    runs = _runs(study[1])
    trials = sorted(
        (r for name, r in runs.items() if name.startswith("trial-")), key=lambda r: -r.data.metrics["accuracy"]
    )
    assert len(trials) == 3
    with _screenshot_on_failure(served.url, tmp_path / "shot", "ui-landing"):
        page = _page_text(served.url, tmp_path / "landing", "3 matching runs")
        assert "3 matching runs" in page, page[:3000]  # the trials alone, listed flat: no parent row to expand
        assert "Model registry" in page, page[:3000]  # the "Model training" side bar, not GenAI's
        for run in trials:
            for metric in ("accuracy", "flops_ratio", "latency_ratio", "params_ratio", "speedup"):
                assert metric in page and str(run.data.metrics[metric]) in page, (
                    run.info.run_name,
                    metric,
                    page[:3000],
                )
            assert run.data.tags["prunetuna.origin"] in page
        positions = [page.index(run.info.run_name) for run in trials]
        assert positions == sorted(positions), page[:3000]  # best accuracy first


@needs_chromium
def test_a_trial_run_page_lists_its_params_metrics_and_description(
    served: Served, study: tuple[Path, Path], tmp_path: Path
) -> None:
    run = _runs(study[1])["trial-1"]
    description = run.data.tags["mlflow.note.content"]
    assert description.startswith(f"trial 1: accuracy {run.data.metrics['accuracy']:.3f} (")
    url = served.url.split("/runs?")[0] + f"/runs/{run.info.run_id}"
    with _screenshot_on_failure(url, tmp_path / "shot", "ui-trial-run"):
        page = _page_text(url, tmp_path / "run", "val_accuracy")
        assert "trial-1" in page and description in page, page[:3000]
        for param in (k for k in run.data.params if k.startswith("sparsity.")):
            assert param in page
        for metric in ("accuracy", "flops_ratio", "params_ratio", "val_accuracy"):
            assert metric in page


@needs_chromium
def test_the_parent_run_shows_the_gain_lines_and_the_pareto_table(
    served: Served, study: tuple[Path, Path], tmp_path: Path
) -> None:
    config, workdir = study
    report = json.loads(CliRunner().invoke(app, ["report", str(config), "--workdir", str(workdir), "--json"]).stdout)
    front = [t for t in report["trials"] if t["pareto"]]
    assert front and report["baselines"]
    parent = _runs(workdir)["ui-study"]
    base = served.url.split("/runs?")[0] + f"/runs/{parent.info.run_id}"
    with _screenshot_on_failure(base, tmp_path / "shot", "ui-parent-run"):
        page = _page_text(base, tmp_path / "parent", "Pareto-optimal trials")
        for gain in report["baselines"]:
            assert f"best searched vs {gain['origin']}" in page and f"{gain['gain_points']:+.2f} points" in page, page[
                :3000
            ]
        for trial in front:
            assert f"trial-{trial['number']}" in page
    table_url = f"{base}/artifacts/pareto_trials.json"
    with _screenshot_on_failure(table_url, tmp_path / "shot", "ui-pareto-table"):
        page = _page_text(table_url, tmp_path / "table", "run_link")
        for column in ("trial", "accuracy", "flops_ratio", "feasible", "run_id", "run_link"):
            assert column in page, page[:3000]
        for trial in front:
            assert trial["mlflow_run_id"] in page
    for name in ("pareto_front.png", "sparsity_profiles.png"):
        assert f"plots/{name}" in [a.path for a in _client(workdir).list_artifacts(parent.info.run_id, "plots")]


def test_optuna_dashboard_serves_the_study_and_sigterm_stops_every_server(
    study: tuple[Path, Path], tmp_path: Path
) -> None:
    pytest.importorskip("optuna_dashboard")
    dashboard_port = free_port()
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"  # what --open runs: $BROWSER, as Python's webbrowser does
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    with _serving(
        *study, "--optuna", "--optuna-port", str(dashboard_port), "--open", extra_env={"BROWSER": str(browser)}
    ) as serving:
        api = f"http://127.0.0.1:{dashboard_port}/api/studies"
        with urllib.request.urlopen(api, timeout=30) as response:
            studies = json.load(response)["study_summaries"]
        study_id = next(s["study_id"] for s in studies if s["study_name"] == "ui-study")
        with urllib.request.urlopen(f"{api}/{study_id}", timeout=60) as response:
            assert response.status == 200
            detail = json.load(response)
        assert detail["objective_names"] == ["accuracy", "flops_ratio"] and len(detail["trials"]) == 3
        assert f"/dashboard/studies/{study_id}" in serving.log.read_text()
        deadline = time.monotonic() + 30
        while len(opened.read_text().splitlines() if opened.exists() else []) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sorted(opened.read_text().split()) == sorted(
            [f"http://127.0.0.1:{dashboard_port}/dashboard/studies/{study_id}", serving.url]
        )

        servers = _descendants(serving.process.pid)
        assert servers, "mlflow ui and its uvicorn run under prunetuna ui"
        os.kill(serving.process.pid, signal.SIGTERM)  # to prunetuna ui alone, as a supervisor or `kill` sends it
        assert serving.process.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in servers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in servers if _alive(pid)], "servers left running after SIGTERM"
        mlflow_health = serving.url.split("/#")[0] + "/health"
        for url in (mlflow_health, api):
            with pytest.raises(urllib.error.URLError):
                urllib.request.urlopen(url, timeout=5)


def test_optuna_without_the_dashboard_installed_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        sys.modules, "optuna_dashboard", None
    )  # what `import optuna_dashboard` meets when it is not installed
    config = write_config(tmp_path, tiny_config("no-dashboard"))
    result = CliRunner().invoke(app, ["ui", str(config), "--workdir", str(tmp_path / "w"), "--optuna"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "optuna-dashboard is not installed" in lines[0]
        and "pip install 'prunetuna[ui]'" in lines[0]
    )
    assert not (tmp_path / "w").exists()  # nothing created
