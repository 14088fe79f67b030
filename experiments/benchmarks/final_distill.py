"""Does distillation pay in the final fine-tune, and does prunetuna's distillation match a plain one?

On the studies cluttered.py made (run it first with the same settings and --workdir), for each architecture,
FLOPs budget B and seed S: the searched trial (``export --best --max-flops B`` of the TPE study) and the
uniform trial are given the final fine-tune twice through ``prunetuna finetune`` (``final_finetune``, seed
1000 + S): plain (cluttered.py's own, reused) and with ``final_finetune.distill: {alpha, temperature}`` from
the dense model. Beside them, a **plain reference implementation** written here in a few lines of torch (no
Lightning, no prunetuna training code): the same trial weights, Adam at the same learning rate with a
per-step cosine decay, the same epochs and batches, loss ``(1 - alpha) CE + alpha T^2 KL(teacher || student)``
or plain CE, seeded alike. Everything is scored on the test split.
Reported per architecture and budget: test accuracy mean +- std over seeds of each, and distill - plain in
points for prunetuna and for the reference.

    PYTHONPATH=. .venv/bin/python experiments/benchmarks/final_distill.py [--archs resnet] [--budgets 0.05]
        [--seeds 0 1 2] [--alpha 0.5] [--temperature 4] (cluttered.py's settings: --n-trials 20
        --final-epochs 4 --trial-batches 20 --baseline-epochs 8 --canvas 32 --width 16) --workdir DIR
        [--out runs/benchmarks/final_distill.json] [--threads K]

Measured and reported, not asserted.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from statistics import mean, pstdev

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO)]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from cluttered import _config, _test_accuracy, add_task_arguments  # noqa: E402

from prunetuna.config import parse_config  # noqa: E402
from prunetuna.export import final_finetune, rebuild_trial, select_trial  # noqa: E402
from prunetuna.store import TrialRecord, load_study, resolve_workspace  # noqa: E402
from prunetuna.training import evaluate_accuracy  # noqa: E402
from prunetuna.workload import load_workload, prepare_baseline  # noqa: E402


def _reference(config, workspace, trial, teacher, distill: bool, args) -> float:  # noqa: ANN001
    """A plain torch fine-tune of the trial's weights (the reference), its test accuracy."""
    rebuilt = rebuild_trial(config, workspace, trial)
    model, data = rebuilt.model, rebuilt.workload.datamodule
    torch.manual_seed(config.final_finetune.seed)
    loader = data.train_dataloader()
    steps = args.final_epochs * len(loader)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.final_finetune.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    teacher.eval()
    for _ in range(args.final_epochs):
        model.train()
        for x, y in loader:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if distill:
                with torch.no_grad():
                    soft_teacher = F.log_softmax(teacher(x) / args.temperature, dim=1)
                soft = F.kl_div(
                    F.log_softmax(logits / args.temperature, dim=1),
                    soft_teacher,
                    reduction="batchmean",
                    log_target=True,
                )
                loss = (1 - args.alpha) * loss + args.alpha * args.temperature**2 * soft
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return evaluate_accuracy(model, data.test_dataloader())


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for arch in args.archs:
        workdir = Path(args.workdir) / arch
        checkpoint = None
        for seed in args.seeds:
            for budget in args.budgets:
                raw = _config(args, arch, budget, seed, "tpe", checkpoint)
                plain = parse_config(raw)
                workspace = resolve_workspace(plain.name, workdir, None, None)
                if checkpoint is None:
                    checkpoint = str(sorted(workdir.glob("baseline-*.pt"), key=lambda p: p.stat().st_mtime)[0])
                raw["final_finetune"]["distill"] = {"alpha": args.alpha, "temperature": args.temperature}
                distilled = parse_config(raw)
                dense = load_workload(plain)
                prepare_baseline(plain, dense, workdir)  # the dense weights: the teacher
                teacher = copy.deepcopy(dense.model)
                study = load_study(workspace, plain.name)
                chosen = {"searched": select_trial(study, max_flops=budget)}
                chosen |= {
                    TrialRecord.of(t).origin: t
                    for t in study.get_trials(deepcopy=False)
                    if TrialRecord.of(t).origin == "uniform" and t.state.name == "COMPLETE"
                }
                for name, trial in chosen.items():
                    row = {"arch": arch, "budget": budget, "seed": seed, "candidate": name, "trial": trial.number}
                    for label, config in (("plain", plain), ("distill", distilled)):
                        started = time.perf_counter()
                        final_finetune(config, workspace, trial=trial.number)
                        row[label] = _test_accuracy(config, workspace, trial)
                        row[f"{label}_s"] = time.perf_counter() - started
                    for label, distill in (("ref_plain", False), ("ref_distill", True)):
                        row[label] = _reference(plain, workspace, trial, teacher, distill, args)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    table = []
    for key in dict.fromkeys((r["arch"], r["budget"], r["candidate"]) for r in rows):
        group = [r for r in rows if (r["arch"], r["budget"], r["candidate"]) == key]
        entry = {"arch": key[0], "budget": key[1], "candidate": key[2], "n": len(group)}
        for label in ("plain", "distill", "ref_plain", "ref_distill"):
            values = [100 * r[label] for r in group]
            entry[label] = {"mean": mean(values), "std": pstdev(values)}
        entry["gain"] = mean(100 * (r["distill"] - r["plain"]) for r in group)
        entry["ref_gain"] = mean(100 * (r["ref_distill"] - r["ref_plain"]) for r in group)
        table.append(entry)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet"], choices=["resnet", "mobilenet"])
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.05])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=4.0)
    add_task_arguments(parser, n_trials=20, final_epochs=4, canvas=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", default=str(REPO / "runs" / "benchmarks" / "final_distill.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = run(args)
    figures = {"rows": rows, "summary": summarize(rows), "settings": vars(args).copy(), "wall_s": 0.0}
    figures["wall_s"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    for e in figures["summary"]:
        print(
            f"{e['arch']} FLOPs {e['budget']:g} {e['candidate']} (n={e['n']}): prunetuna plain "
            f"{e['plain']['mean']:.2f} +- {e['plain']['std']:.2f}, distill {e['distill']['mean']:.2f} +- "
            f"{e['distill']['std']:.2f} ({e['gain']:+.2f}); reference plain {e['ref_plain']['mean']:.2f}, distill "
            f"{e['ref_distill']['mean']:.2f} ({e['ref_gain']:+.2f})"
        )
    print(f"wall time {figures['wall_s']:.0f} s; figures written to {out}")


if __name__ == "__main__":
    main()
