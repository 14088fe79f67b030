"""Wall time of the embedded default search, end to end, from a cold work dir.

Runs ``prunetuna search experiments/mnist.yaml --workdir TMP`` as a subprocess in a fresh
temporary folder (no cached baseline, no earlier study), and measures the wall time from
just before the process starts to its exit: interpreter start, imports, data loading,
baseline training, all trials, shutdown. Then it reads the finished trials back with
``prunetuna report ... --json`` and splits the time into phases with the Optuna study's
trial timestamps (datetime_start / datetime_complete) and the baseline cache file's mtime.
A second, no-op run of the same command (study complete, baseline cached) gives the fixed
start-up cost, hence an estimate of the baseline training time.

Target: the whole search in <= 300 s with >= 30 finished trials. The script measures and
reports whether the target was met; it does not fail when it is not.

    .venv/bin/python experiments/benchmarks/default_search.py [--config experiments/mnist.yaml]
        [--n-trials N] [--out runs/benchmarks/default_search.json] [--keep]

MLFLOW_TRACKING_URI is removed from the child's environment so that MLflow writes to the
temporary work dir, as a first run on a fresh checkout would.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from statistics import mean, median

from _machine import busy_cpu_seconds, cpu_model

REPO = Path(__file__).resolve().parents[2]
TARGET_SECONDS = 300.0
TARGET_TRIALS = 30


def prunetuna_command() -> list[str]:
    """The venv's ``prunetuna`` entry point, or ``python -m prunetuna`` when there is none."""
    script = Path(sys.executable).with_name("prunetuna")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "prunetuna"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "experiments" / "mnist.yaml"))
    parser.add_argument(
        "--n-trials", type=int, default=None, help="passed to search (default: the config's search.n_trials)"
    )
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "default_search.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    args = parser.parse_args()

    import optuna  # only to read the study back; the search itself runs in the child

    workdir = Path(tempfile.mkdtemp(prefix="prunetuna-bench-"))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    search_cmd = [*prunetuna_command(), "search", args.config, "--workdir", str(workdir)]
    if args.n_trials is not None:
        search_cmd += ["--n-trials", str(args.n_trials)]
    log = workdir / "search.log"
    print("running:", " ".join(search_cmd), flush=True)

    busy0, own0 = busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started_at = datetime.now()  # Optuna stamps trials with naive local datetime.now() too
    t0 = time.perf_counter()
    with log.open("w") as stream:
        rc = subprocess.call(search_cmd, cwd=REPO, env=env, stdout=stream, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    busy1, own1 = busy_cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    own_cpu = (own1.ru_utime + own1.ru_stime) - (own0.ru_utime + own0.ru_stime)
    other_cpu = busy1 - busy0 - own_cpu if busy0 is not None else None
    ended_at = datetime.now()
    if rc != 0:
        sys.stderr.write(log.read_text()[-3000:])
        raise SystemExit(f"search exited with status {rc}; work dir kept: {workdir}")

    report_cmd = [*prunetuna_command(), "report", args.config, "--workdir", str(workdir), "--json"]
    report = json.loads(
        subprocess.run(report_cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout
    )
    finished = [t for t in report["trials"] if t["state"] in ("COMPLETE", "PRUNED")]

    # The same command again: the study is complete and the baseline cached, so this times the fixed
    # cost of one CLI run (interpreter, imports, data, cached weights, stores) without training.
    t1 = time.perf_counter()
    subprocess.run(search_cmd, cwd=REPO, env=env, capture_output=True, check=True)
    noop = time.perf_counter() - t1

    study = optuna.load_study(study_name=report["study"], storage=f"sqlite:///{workdir / 'optuna.db'}")
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    durations = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    first_start = min(t.datetime_start for t in trials)
    last_complete = max(t.datetime_complete for t in trials)
    baseline_files = sorted(workdir.glob("baseline-*.json"))
    baseline_done = (
        (datetime.fromtimestamp(baseline_files[0].stat().st_mtime) - started_at).total_seconds()
        if baseline_files
        else None
    )

    figures = {
        "command": " ".join(search_cmd),
        "machine": {"cpus": os.cpu_count(), "processor": cpu_model(), "python": platform.python_version()},
        # CPU-seconds of the search process, and of everything else on the machine meanwhile (noise).
        "search_cpu_seconds": round(own_cpu, 1),
        "other_processes_cpu_seconds": round(other_cpu, 1) if other_cpu is not None else None,
        "wall_seconds": round(wall, 2),
        "finished_trials": len(finished),
        "trials_run": len(trials),
        # Process start -> baseline-*.json written: imports, data, dense training, dense evaluation.
        "until_baseline_cached_seconds": round(baseline_done, 2) if baseline_done is not None else None,
        # Process start -> first trial starts: the above plus study/MLflow setup and the dense cost measurement.
        "until_first_trial_seconds": round((first_start - started_at).total_seconds(), 2),
        # A second, no-op run of the same command (nothing to train): the fixed cost of a CLI run,
        # start-up and shutdown.
        "noop_rerun_seconds": round(noop, 2),
        # Estimate: time to the first trial minus the no-op run's start-up (its wall time less this run's shutdown).
        "baseline_training_estimate_seconds": round(
            (first_start - started_at).total_seconds() - (noop - (ended_at - last_complete).total_seconds()), 2
        ),
        "trials_span_seconds": round((last_complete - first_start).total_seconds(), 2),
        "trial_seconds_sum": round(sum(durations), 2),
        "trial_seconds_mean": round(mean(durations), 3),
        "trial_seconds_median": round(median(durations), 3),
        "trial_seconds_min": round(min(durations), 3),
        "trial_seconds_max": round(max(durations), 3),
        # Time between trials (sampler bookkeeping outside the objective, callbacks, storage writes).
        "between_trials_seconds": round((last_complete - first_start).total_seconds() - sum(durations), 2),
        "after_last_trial_seconds": round((ended_at - last_complete).total_seconds(), 2),
        "trial_seconds": [round(d, 3) for d in durations],
        "target": {"max_wall_seconds": TARGET_SECONDS, "min_finished_trials": TARGET_TRIALS},
        "target_met": wall <= TARGET_SECONDS and len(finished) >= TARGET_TRIALS,
    }

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    if args.keep:
        print("work dir kept:", workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)

    f = figures
    print(f"machine: {f['machine']['cpus']} CPUs ({f['machine']['processor']}), Python {f['machine']['python']}")
    print(
        f"CPU-seconds during the search: search {f['search_cpu_seconds']}, other processes "
        f"{f['other_processes_cpu_seconds']}"
    )
    print(f"wall time: {f['wall_seconds']:.1f} s for {f['finished_trials']} finished trials ({f['trials_run']} run)")
    print(
        f"  process start -> baseline cached:  {f['until_baseline_cached_seconds']} s  (imports, data, dense training)"
    )
    print(f"  process start -> first trial:      {f['until_first_trial_seconds']:.1f} s")
    print(
        f"  no-op rerun of the same command (start-up + shutdown, nothing to train): {f['noop_rerun_seconds']:.1f} s "
        f"-> baseline training about {f['baseline_training_estimate_seconds']:.1f} s"
    )
    print(
        f"  first trial start -> last trial end: {f['trials_span_seconds']:.1f} s "
        f"(sum of trials {f['trial_seconds_sum']:.1f} s, between trials {f['between_trials_seconds']:.2f} s)"
    )
    print(
        f"  per trial: mean {f['trial_seconds_mean']:.2f} s, median {f['trial_seconds_median']:.2f} s, "
        f"min {f['trial_seconds_min']:.2f} s, max {f['trial_seconds_max']:.2f} s"
    )
    print(f"  last trial end -> process exit:    {f['after_last_trial_seconds']:.2f} s")
    print(f"target: <= {TARGET_SECONDS:.0f} s for >= {TARGET_TRIALS} trials: {'MET' if f['target_met'] else 'NOT MET'}")
    print("figures written to", out)


if __name__ == "__main__":
    main()
