"""Throwaway servers on 127.0.0.1 for the tests and the benchmarks (one copy: both import it), and processes that
start together.

PostgreSQL from Debian's package (initdb and pg_ctl, as the postgres user when run as root, since
PostgreSQL refuses to run as root) and free local ports. Benchmarks put ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import glob
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

INITDB = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
POSTGRES_MISSING = "PostgreSQL is not installed (.ci/run and scripts/system-packages.sh install Debian's postgresql)"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def throwaway_postgres(password: str | None = None) -> Iterator[str]:
    """A PostgreSQL cluster on 127.0.0.1 with an empty database ``optuna``; yields its URL, removed after.

    The cluster trusts local connections; ``password`` only goes into the URL (to check masking).
    """
    if not INITDB:
        raise FileNotFoundError(POSTGRES_MISSING)
    bindir = Path(INITDB[-1]).parent
    folder = Path(tempfile.mkdtemp(prefix="prunetuna-pg-"))
    os.chmod(folder, 0o755)
    data = folder / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    _CLUSTERS[port] = (as_user, bindir, data, folder)
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "prunetuna"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_user,
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(folder / "log"),
                "-w",
                "start",
                "-o",
                f"-h 127.0.0.1 -p {port} -k {folder}",
            ],
            check=True,
            capture_output=True,
        )
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=port, user="prunetuna", dbname="postgres", autocommit=True
        ) as connection:
            connection.execute("CREATE DATABASE optuna")
        user = f"prunetuna:{password}" if password else "prunetuna"
        yield f"postgresql://{user}@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
        _CLUSTERS.pop(port, None)


_CLUSTERS: dict[int, tuple[list[str], Path, Path, Path]] = {}  # port -> (run as, bin dir, data dir, folder)


def restart_postgres(url: str, down: float = 0.0) -> None:
    """Stop a :func:`throwaway_postgres` cluster (fast: its connections are cut), ``down`` seconds, start it again
    on the same port and data (how a database server that restarts looks to its clients)."""
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    as_user, bindir, data, folder = _CLUSTERS[port]
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], check=True, capture_output=True)
    time.sleep(down)
    options = f"-h 127.0.0.1 -p {port} -k {folder}"
    subprocess.run([*pg_ctl, "-l", str(folder / "log"), "-w", "start", "-o", options], check=True, capture_output=True)


def run_together(fn: Callable[[Any], T], args: Sequence[Any]) -> list[T]:
    """``fn(arg)`` for every arg, each in its own process, all starting at one instant: how workers
    that start together meet a new database. ``fn`` must be a module-level function."""
    context = multiprocessing.get_context("fork")  # the test's imports are done once, not per process
    with context.Pool(len(args)) as pool:
        pool.map(abs, range(len(args)))  # every process is up before the clock starts
        start = time.time() + 0.3
        return pool.map(_at, [(fn, arg, start) for arg in args])


def _at(job: tuple[Callable[[Any], T], Any, float]) -> T:
    fn, arg, start = job
    time.sleep(max(0.0, start - time.time()))
    return fn(arg)


def wait_for_http(url: str, process: subprocess.Popen | None = None, timeout: float = 240.0) -> None:
    """Until ``url`` answers (a loaded 2-core CI machine takes its time to start a server); fails when
    ``process`` exits first or the time is up."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline or (process is not None and process.poll() is not None):
                raise TimeoutError(f"{url} did not answer") from None
            time.sleep(0.5)


@contextmanager
def mlflow_server(folder: Path, port: int | None = None) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 with its store and artifacts in ``folder``; yields its URL, stopped after.

    Started again on the same folder and port, it serves the same runs (how a server that went away comes back).
    """
    import signal
    import sys

    port = port or free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(folder / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/health", server)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@contextmanager
def throwaway_mlflow_server() -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 with a SQLite store in a temporary folder; yields its URL."""
    folder = Path(tempfile.mkdtemp(prefix="prunetuna-mlflow-"))
    try:
        with mlflow_server(folder) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


FINISHED = ("COMPLETE", "PRUNED")
MODEL_FILES = {"model/state_dict.pt", "model/manifest.json"}


def study_violations(storage: str, tracking: str, name: str, n_trials: int) -> list[str]:
    """What breaks the durability invariant in a study (empty: nothing): exactly ``n_trials`` finished trials and
    none RUNNING; exactly one run per trial number, FINISHED for a finished trial, with every metric of its record
    and its sparsity params, and for a COMPLETE trial every ``model/`` file (none once ``search.keep_weights: front``
    removed them, never for a trial on the front); one parent run (superseded candidates aside), every trial run its
    child; no run RUNNING; the
    parameters of every failed trial run again in a finished trial (none lost however often its workers were
    killed)."""
    import optuna
    from mlflow import MlflowClient

    study = optuna.load_study(study_name=name, storage=storage)
    trials, front = study.trials, {t.number for t in study.best_trials}
    found: list[str] = []
    finished = [t for t in trials if t.state.name in FINISHED]
    if len(finished) != n_trials:
        found.append(f"{len(finished)} finished trials, not {n_trials}")
    found += [f"trial {t.number} is RUNNING" for t in trials if t.state.name == "RUNNING"]
    done = [set(t.params.items()) for t in finished]
    for trial in trials:
        if trial.state.name == "FAIL" and trial.params and not any(set(trial.params.items()) <= p for p in done):
            found.append(f"trial {trial.number} failed and its parameters were never run again")
    client = MlflowClient(tracking_uri=tracking)
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id], max_results=5000)
    found += [f"run {r.info.run_id} ({r.info.run_name}) is RUNNING" for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if r.data.tags.get("prunetuna.role") == "study"]
    if len(parents) != 1:
        found.append(f"{len(parents)} parent runs")
    else:
        found += [
            f"run {r.info.run_id} ({r.info.run_name}) is a child of {r.data.tags.get('mlflow.parentRunId')}, not of "
            f"the parent run {parents[0].info.run_id}"
            for r in runs
            if r.data.tags.get("prunetuna.role") == "trial"
            and r.data.tags.get("mlflow.parentRunId") != parents[0].info.run_id
        ]
    per_number: dict[str, int] = {}
    for run in runs:
        if run.data.tags.get("prunetuna.role") == "trial":
            number = run.data.tags["optuna.trial_number"]
            per_number[number] = per_number.get(number, 0) + 1
    found += [f"trial {n} has {c} runs" for n, c in per_number.items() if c > 1]
    for trial in finished:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        where = f"trial {trial.number} ({trial.state.name}, run {run.info.run_id})"
        if run.info.status != "FINISHED" or run.data.tags.get("optuna.state") != trial.state.name:
            found.append(f"{where}: run {run.info.status}, optuna.state {run.data.tags.get('optuna.state')}")
        missing = set(trial.user_attrs.get("metrics", {})) - set(run.data.metrics)
        missing |= {f"sparsity.{k}" for k in trial.user_attrs.get("sparsity", {})} - set(run.data.params)
        missing |= {"finetune.epochs"} - set(run.data.params)
        if missing:
            found.append(f"{where}: lacks {sorted(missing)}")
        if trial.state.name == "COMPLETE":
            files = {f.path for f in client.list_artifacts(run.info.run_id, "model")}
            dropped = run.data.tags.get("prunetuna.weights")  # search.keep_weights: front removed them (or is)
            if dropped and trial.number in front:
                found.append(f"{where}: on the front, its weights removed ({dropped})")
            elif dropped == "dropped" and files:
                found.append(f"{where}: weights removed, yet model/ holds {sorted(files)}")
            elif not dropped and files != MODEL_FILES:
                found.append(f"{where}: model/ holds {sorted(files)}")
    return found


_EXPORT_EACH = """
import json, sys
from prunetuna.cli import app
config, storage, tracking, workdir, *numbers = sys.argv[1:]
failed = {}
for n in numbers:
    args = ["export", config, "--trial", n, "--format", "pt", "--out", f"{workdir}/trial-{n}.pt", "--force",
            "--storage", storage, "--tracking-uri", tracking, "--workdir", workdir]
    try:
        code = app(args, standalone_mode=False)
    except BaseException as exc:
        code = repr(exc)
    if code not in (0, None):
        failed[n] = str(code)
print(json.dumps(failed))
"""


def export_failures(config: Path, storage: str, tracking: str, numbers: Sequence[int], workdir: Path) -> dict:
    """``prunetuna export --trial N --format pt`` for each trial, from ``workdir`` (a fresh one: no record of the
    search), in one process; the trials whose export failed, with the exit status or the error."""
    import json
    import sys

    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), str(Path(__file__).parent)])}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PRUNETUNA_FAULT", None)
    done = subprocess.run(
        [sys.executable, "-c", _EXPORT_EACH, str(config), storage, tracking, str(workdir), *map(str, numbers)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if done.returncode != 0:
        return {"all": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])
