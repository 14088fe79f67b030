"""A chaos soak: N workers of one shared study, killed and restarted (or their node lost) while the servers restart;
then the durability invariant is checked.

Each worker is ``prunetuna search CFG --storage PG --tracking-uri MLFLOW --workdir W`` in its own process group,
with a work dir of its own (as on a separate machine), on a throwaway PostgreSQL and an ``mlflow server`` on
127.0.0.1 (tests/services.py). For ``--duration`` seconds, every ``--interval`` seconds (uniform 0.5x-1.5x) a
random running worker gets SIGKILL or SIGTERM (to its group); with probability ``--lost-share`` (at most
``--max-lost`` times) its node is lost: its work dir is deleted and a new node with a fresh work dir takes its place,
else it restarts on its own work dir. The MLflow server is stopped (SIGTERM) and started again on the same port
and store ``--mlflow-restarts`` times, down ``--down`` seconds each, at seeded moments; ``--pg-restarts`` does the
same to PostgreSQL (``pg_ctl restart -m fast``; off by default: see docs/benchmarks.md for whether the Optuna
storage survives it). A worker that exits non-zero without being killed is a crash, and is restarted. After
``--duration`` the survivors run until the study is finished (exit 0 each). Then the invariant:
``study_violations`` (exactly n_trials finished, one FINISHED run per trial with its metrics, params and
``model/`` files, one parent run, nothing RUNNING, no failed trial's parameters lost) and ``prunetuna export
--trial N`` of every COMPLETE trial from a fresh work dir (``export_failures``). Seeded (``--seed``): the kill
times, signals, victims and lost nodes; what the workers do between kills depends on the machine.

The suite's short version (tests/store/test_chaos.py) calls :func:`run_chaos` with ``faults``: a seeded list of
fault points (prunetuna/faults.py) armed, in order, on the worker starts, so each kill lands at a named point of
that worker's first trial instead of at a moment.

    .venv/bin/python experiments/benchmarks/chaos.py [--workers 3] [--n-trials 15] [--duration 180]
        [--interval 8] [--lost-share 0.25] [--max-lost 5] [--mlflow-restarts 2] [--pg-restarts 0] [--seed 0]
        [--finetune-batches 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import yaml  # noqa: E402
from services import (  # noqa: E402
    export_failures,
    free_port,
    mlflow_server,
    restart_postgres,
    study_violations,
    throwaway_postgres,
)

from conftest import tiny_config  # noqa: E402


@dataclass
class ChaosResult:
    workers: int
    n_trials: int
    seconds: float = 0.0
    kills: dict[str, int] = field(default_factory=dict)  # SIGKILL, SIGTERM, fault:<point>
    restarts: int = 0  # worker restarts on their own work dir
    lost_nodes: int = 0  # work dirs deleted, a new node started in their place
    crashes: list[str] = field(default_factory=list)  # non-zero exits nobody caused: the log's last line
    mlflow_restarts: int = 0
    pg_restarts: int = 0
    trials: dict[str, int] = field(default_factory=dict)  # Optuna states
    violations: list[str] = field(default_factory=list)
    export_failures: dict = field(default_factory=dict)

    def line(self) -> str:
        kills = sum(self.kills.values())
        return (
            f"{self.workers} workers, {self.n_trials} trials, {self.seconds:.0f} s: {kills} kills {self.kills}, "
            f"{self.restarts} restarts, {self.lost_nodes} lost nodes, {len(self.crashes)} crashes, "
            f"{self.mlflow_restarts} MLflow restarts, {self.pg_restarts} PostgreSQL restarts; trials {self.trials}; "
            f"{len(self.violations)} violations, {len(self.export_failures)} export failures"
        )


class Node:
    """One worker on its own 'machine' (work dir); ``start`` runs ``prunetuna search`` there."""

    def __init__(self, root: Path, index: int, command: list[str], env: dict[str, str]) -> None:
        self.root, self.index, self.command, self.env = root, index, command, env
        self.generation, self.process, self.killed, self.lost, self.fault = 0, None, None, False, None
        self.workdir = root / f"node-{index}-0"

    def start(self, fault: str | None = None) -> None:
        env = {**self.env, **({"PRUNETUNA_FAULT": fault} if fault else {})}
        self.killed, self.lost, self.fault = None, False, fault
        log = open(self.root / f"node-{self.index}.log", "a")  # noqa: SIM115 (the child holds it)
        log.write(f"--- start in {self.workdir} fault={fault}\n")
        log.flush()
        command = [*self.command, "--workdir", str(self.workdir)]
        self.process = subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True, cwd=REPO)
        log.close()

    def new_node(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.generation += 1
        self.workdir = self.root / f"node-{self.index}-{self.generation}"

    def last_line(self) -> str:
        lines = (self.root / f"node-{self.index}.log").read_text(errors="replace").strip().splitlines()
        return lines[-1][-300:] if lines else ""


def run_chaos(
    root: Path,
    *,
    workers: int = 3,
    n_trials: int = 15,
    duration: float = 180.0,
    interval: float = 8.0,
    lost_share: float = 0.25,
    max_lost: int = 5,
    mlflow_restarts: int = 2,
    pg_restarts: int = 0,
    down: float = 3.0,
    seed: int = 0,
    faults: Sequence[tuple[str, bool]] | None = None,
    finish_timeout: float = 900.0,
    finetune_batches: int = 3,
) -> ChaosResult:
    """The soak in ``root`` (kept: the workers' logs are there). With ``faults`` ((point, lost) pairs, armed in
    order on worker starts), no timed kills: each armed start kills itself at that point of its first trial."""
    rng = random.Random(seed)
    result = ChaosResult(workers, n_trials)
    name = "chaos"
    config = root / "chaos.yaml"
    settings = tiny_config(
        name,
        search={"sampler": "random", "n_trials": n_trials, "heartbeat": 2, "max_failures": 10**6},
        finetune={"max_batches": finetune_batches},  # longer trials: the study outlasts the kills
    )
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    plan = list(faults or ())
    start = time.monotonic()
    end = start + (0.0 if faults is not None else duration)
    moments = [] if faults is not None else sorted(rng.uniform(0.15, 0.85) * duration for _ in range(mlflow_restarts))
    pg_moments = sorted(rng.uniform(0.15, 0.85) * duration for _ in range(pg_restarts))
    with ExitStack() as stack:
        storage = stack.enter_context(throwaway_postgres())
        folder = root / "mlflow"
        folder.mkdir(parents=True, exist_ok=True)
        server = stack.enter_context(ExitStack())
        port = free_port()
        tracking = server.enter_context(mlflow_server(folder, port))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]), "OMP_NUM_THREADS": "1"}
        for key in ("MLFLOW_TRACKING_URI", "PRUNETUNA_FAULT"):
            env.pop(key, None)
        command = [sys.executable, "-m", "prunetuna", "search", str(config), "--storage", storage]
        command += ["--tracking-uri", tracking]
        nodes = [Node(root, i, command, env) for i in range(workers)]
        for node in nodes:
            _arm(node, plan)
        next_kill = start + interval * rng.uniform(0.5, 1.5)
        while True:
            now = time.monotonic()
            elapsed = now - start
            if moments and elapsed >= moments[0] and (now < end or faults is not None):
                moments.pop(0)
                tracking = _restart_mlflow(server, folder, port, down)
                result.mlflow_restarts += 1
            if pg_moments and elapsed >= pg_moments[0] and now < end:
                pg_moments.pop(0)
                restart_postgres(storage, down)
                result.pg_restarts += 1
            if faults is None and now < end and now >= next_kill:
                next_kill = now + interval * rng.uniform(0.5, 1.5)
                running = [n for n in nodes if n.process.poll() is None]
                if running:
                    victim = rng.choice(running)
                    how = rng.choice([signal.SIGKILL, signal.SIGTERM])
                    victim.lost = result.lost_nodes < max_lost and rng.random() < lost_share
                    victim.killed = how.name
                    os.killpg(victim.process.pid, how)
            for node in nodes:
                code = node.process.poll()
                if code is None or code == 0 and node.killed is None:
                    continue
                if code == 0:  # killed after it finished: it had finished
                    node.killed = None
                    continue
                if node.killed is not None:
                    result.kills[node.killed] = result.kills.get(node.killed, 0) + 1
                elif node.fault is not None and code == -signal.SIGKILL:
                    key = f"fault:{node.fault}"
                    result.kills[key] = result.kills.get(key, 0) + 1
                else:
                    result.crashes.append(f"node {node.index} exit {code}: {node.last_line()}")
                if node.lost:
                    node.new_node()
                    result.lost_nodes += 1
                else:
                    result.restarts += 1
                if faults is not None and result.mlflow_restarts < mlflow_restarts:
                    # with faults: the server restarts after a kill, while the others run, before the node restarts
                    tracking = _restart_mlflow(server, folder, port, down)
                    result.mlflow_restarts += 1
                _arm(node, plan)
            if all(n.process.poll() == 0 for n in nodes) and now >= end:
                break
            if now - start > duration + finish_timeout:
                result.violations.append(f"the survivors did not finish within {finish_timeout:.0f} s")
                for node in nodes:
                    if node.process.poll() is None:
                        os.killpg(node.process.pid, signal.SIGKILL)
                        node.process.wait()
                break
            time.sleep(0.2)
        result.seconds = time.monotonic() - start
        import optuna

        trials = optuna.load_study(study_name=name, storage=storage).trials
        for trial in trials:
            result.trials[trial.state.name] = result.trials.get(trial.state.name, 0) + 1
        result.violations += study_violations(storage, tracking, name, n_trials)
        complete = [t.number for t in trials if t.state.name == "COMPLETE"]
        result.export_failures = export_failures(config, storage, tracking, complete, root / "fresh")
    return result


def _restart_mlflow(server: ExitStack, folder: Path, port: int, down: float) -> str:
    """Stop the MLflow server (SIGTERM to its group, waited for), ``down`` seconds, start it on the same port and
    store; returns its URL once it answers."""
    server.close()
    time.sleep(down)
    return server.enter_context(mlflow_server(folder, port))


def _arm(node: Node, plan: list[tuple[str, bool]]) -> None:
    """Start the node, armed with the plan's next fault (its point as PRUNETUNA_FAULT; whether the node is then
    lost) when there is one."""
    point, lost = plan.pop(0) if plan else (None, False)
    node.start(point)
    node.lost = lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--n-trials", type=int, default=15)
    parser.add_argument("--duration", type=float, default=180.0)
    parser.add_argument("--interval", type=float, default=8.0)
    parser.add_argument("--lost-share", type=float, default=0.25)
    parser.add_argument("--max-lost", type=int, default=5)
    parser.add_argument("--mlflow-restarts", type=int, default=2)
    parser.add_argument("--pg-restarts", type=int, default=0)
    parser.add_argument("--down", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finetune-batches", type=int, default=3, help="batches per trial's fine-tune (trial length)")
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "chaos.json"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="prunetuna-chaos-"))
    result = run_chaos(
        root,
        workers=args.workers,
        n_trials=args.n_trials,
        duration=args.duration,
        interval=args.interval,
        lost_share=args.lost_share,
        max_lost=args.max_lost,
        mlflow_restarts=args.mlflow_restarts,
        pg_restarts=args.pg_restarts,
        down=args.down,
        seed=args.seed,
        finetune_batches=args.finetune_batches,
    )
    print(result.line())
    for line in result.crashes + result.violations + [f"export {n}: {e}" for n, e in result.export_failures.items()]:
        print("  " + line)
    print(f"logs: {root}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**asdict(result), "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
