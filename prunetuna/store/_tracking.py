"""MLflow layout: one experiment per study, one parent run reused on resume (elected among workers:
store/_parent_run.py), one child run per trial."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import torch
from mlflow.entities import Metric, RunTag

from prunetuna.errors import UserError
from prunetuna.faults import fault, hold
from prunetuna.store._mlflow_client import open_client, probe_server
from prunetuna.store._outage import Outage, TrackingAway
from prunetuna.store._parent_run import MAX_PARAM, ParentRuns, mlflow_params
from prunetuna.store._records import Role, RunStatus, Tag, TrialEnd
from prunetuna.store._storage import Workspace, describe_error, mask_url

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["MANIFEST_FILE", "MAX_PARAM", "WEIGHTS_FILE", "StudyTracker"]

WEIGHTS_FILE = "state_dict.pt"
MANIFEST_FILE = "manifest.json"

_log = logging.getLogger("prunetuna")


def _now_ms() -> int:
    return int(time.time() * 1000)


class StudyTracker(ParentRuns):
    """Writes a study's runs through :class:`mlflow.MlflowClient` (no global active-run state).

    Only creating a run waits for the store (its id is needed at once); params, metrics, tags and
    run ends go to one background writer, in order, so a trial does not wait on database commits.
    :meth:`flush` waits for them; a failed write is reported on stderr and does not stop the study.
    Every call is retried while the store does not answer (:class:`Outage`), up to its patience.
    The parent run's methods (find, start, follow the elected one) are :class:`ParentRuns`'.
    """

    def __init__(self, workspace: Workspace, study_name: str) -> None:
        self.workspace = workspace
        self.study_name = study_name
        self.client = open_client(workspace)
        uri = workspace.tracking_uri
        self.outage = Outage(
            mask_url(uri),
            server=uri.startswith(("http://", "https://")),
            describe=lambda exc: describe_error(exc, uri, workspace.storage_url),
        )
        self._trials: dict[str, int] = {}  # run id -> trial number, for the fault points
        self.ack_first = workspace.shared  # a finished trial's data is written before Optuna is told (TrialWriter)
        self._unwritten: set[str] = set()  # runs one of whose writes failed
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._parent_params: Mapping[str, object] = {}  # the study's settings, logged on the parent run it joins
        self._parent_metrics: dict[str, float] = {}  # the dense metrics, logged again on a parent it moves to
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prunetuna-mlflow")
        self._pending: list[Future[object]] = []
        self.failed_writes = 0

    def _submit(self, fn, *args, **kwargs) -> None:  # noqa: ANN001 - any client method; args[0] is the run id
        self._pending = [f for f in self._pending if not f.done()]
        future = self._writer.submit(self._write, fn, *args, **kwargs)
        future.add_done_callback(self._report_failure)
        self._pending.append(future)

    def _write(self, fn, *args, **kwargs) -> object:  # noqa: ANN001
        run_id = args[0] if args and isinstance(args[0], str) else None
        if not self.ack_first:  # acknowledged first, the run's end is submitted after the tell: nothing to hold
            hold(self._trials.get(run_id))  # type: ignore[arg-type]
        if fn == self._written:
            return fn(*args)  # local: says nothing about the store
        try:
            return self.outage.call(fn, *args, **kwargs)
        except BaseException:
            if run_id is not None:
                self._unwritten.add(run_id)
            raise

    def _report_failure(self, future: Future[object]) -> None:
        """A failed background write is reported, never charged to whichever trial happens to run next."""
        exc = future.exception()
        if exc is not None:
            self.failed_writes += 1
            if isinstance(exc, TrackingAway):
                return  # reported once, by the Outage
            _log.warning(
                "prunetuna: an MLflow write failed (%s); the study goes on, that run may be incomplete",
                describe_error(exc, self.workspace.tracking_uri, self.workspace.storage_url),
            )

    def flush(self) -> None:
        """Wait until everything submitted is written (failures were reported as they happened)."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.exception()

    def connect(self, *, create: bool, used_before: bool = False) -> None:
        """Find (or create) the experiment; fail fast with the URI masked when the store is unusable. ``used_before``:
        the study already has its parent run in this store, so a server that does not answer is an outage (a
        restart, as a worker restarted beside it meets), waited for as the trials' writes are, not bad input."""
        shown = mask_url(self.workspace.tracking_uri)
        if create and self.workspace.tracking_uri.startswith("sqlite:///"):
            self.workspace.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if used_before:
                self.outage.call(probe_server, self.workspace.tracking_uri)
            else:
                probe_server(self.workspace.tracking_uri)
            experiment = self.client.get_experiment_by_name(self.study_name)
            if experiment is None and create:
                self.experiment_id = self._create_experiment()
            elif experiment is not None:
                self.experiment_id = experiment.experiment_id
        except Exception as exc:  # noqa: BLE001 - any failure to reach the store is bad input
            cause = exc.__cause__ if isinstance(exc, TrackingAway) and exc.__cause__ is not None else exc
            reason = describe_error(cause, self.workspace.tracking_uri, self.workspace.storage_url)
            raise UserError(
                f"--tracking-uri: cannot use {shown} ({reason}); check the URI and that the server is up"
            ) from None

    def _create_experiment(self) -> str:
        """Create the study's experiment; a worker that loses the race to create it uses the winner's."""
        try:
            return self.client.create_experiment(
                self.study_name,
                artifact_location=self.workspace.artifact_location,
                tags={Tag.EXPERIMENT_KIND: "custom_model_development"},
            )
        except Exception:
            experiment = self.client.get_experiment_by_name(self.study_name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def end_parent(self, status: str) -> None:
        self.flush()
        if self.parent_run_id:
            with contextlib.suppress(TrackingAway):  # reported once; the next start ends it
                self.outage.call(self.client.set_terminated, self.parent_run_id, status=status)

    def start_trial(self, number: int, origin: str, params: Mapping[str, object]) -> str:
        """A nested child run ``trial-<number>`` with its tags and params."""
        assert self.experiment_id is not None and self.parent_run_id is not None
        self.follow_parent()  # the parent elected since this worker joined one, if another won (_parent_run.py)
        tags = {
            Tag.PARENT: self.parent_run_id,
            Tag.TRIAL_NUMBER: str(number),
            Tag.STATE: RunStatus.RUNNING.value,
            Tag.ORIGIN: origin,
            Tag.ROLE: Role.TRIAL.value,
        }
        run = self.outage.call(self.client.create_run, self.experiment_id, run_name=f"trial-{number}", tags=tags)
        self._trials[run.info.run_id] = number
        self._submit(self.client.log_batch, run.info.run_id, params=mlflow_params(params))
        return run.info.run_id

    def log_epoch(self, run_id: str, epoch: int, accuracy: float, named: dict[str, float] | None = None) -> None:
        """The epoch's task score as ``val_accuracy`` and, for a user metric, as logged under its own name."""
        self._submit(self.client.log_metric, run_id, "val_accuracy", accuracy, step=epoch)
        for name, value in (named or {}).items():
            self._submit(self.client.log_metric, run_id, name, value, step=epoch)

    def background(self, fn: Callable[..., object], *args: object) -> None:
        """``fn(*args)`` in the background writer, after everything submitted before (retried through an outage)."""
        self._submit(fn, *args)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self._submit(self.client.set_tag, run_id, key, value)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._submit(self.client.log_text, run_id, text, artifact_file)

    def log_trial_model(self, run_id: str, model_dir: Path, profile: Callable[[], Figure] | None = None) -> None:
        """The files of ``model_dir`` (weights, then manifest) under ``model/``, and a sparsity-profile image.

        Uploaded and drawn off the trial's path; ``model_dir`` is the trial's durable record, never changed after.
        """

        def write(run_id: str) -> None:
            self.client.log_artifact(run_id, str(model_dir / WEIGHTS_FILE), "model")
            fault("upload", self._trials.get(run_id))
            self.client.log_artifact(run_id, str(model_dir / MANIFEST_FILE), "model")
            if profile is not None:
                self.client.log_figure(run_id, profile(), "sparsity_profile.png")

        self._submit(write, run_id)

    def log_figure(self, run_id: str, draw: Callable[[], Figure]) -> None:
        """The trial's sparsity-profile image, drawn in the background writer."""
        self._submit(lambda run_id: self.client.log_figure(run_id, draw(), "sparsity_profile.png"), run_id)

    def log_parent_files(self, paths: Sequence[Path], artifact_path: str = "plots") -> None:
        if self.parent_run_id:
            for path in paths:
                self.outage.call(self.client.log_artifact, self.parent_run_id, str(path), artifact_path)

    def log_side_run(self, name: str, files: Sequence[Path], params: Mapping[str, object]) -> str:
        """A finished child run of the parent (``prunetuna sensitivity``'s scan) holding ``files`` and ``params``."""
        assert self.experiment_id is not None and self.parent_run_id is not None
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={Tag.PARENT: self.parent_run_id, Tag.ROLE: name}
        )
        for path in files:
            self.client.log_artifact(run.info.run_id, str(path))
        self.client.log_batch(run.info.run_id, params=mlflow_params(params))
        self.client.set_terminated(run.info.run_id)
        return run.info.run_id

    def download_weights(self, run_id: str) -> dict[str, torch.Tensor]:
        """The fine-tuned state_dict a trial logged (loaded with ``weights_only=True``)."""
        with tempfile.TemporaryDirectory(prefix="prunetuna-") as folder:
            path = self.client.download_artifacts(run_id, f"model/{WEIGHTS_FILE}", folder)
            return torch.load(path, map_location="cpu", weights_only=True)

    def end_trial(
        self,
        run_id: str,
        state: str,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        """Final metrics and tags, then FINISHED for a finished trial and FAILED otherwise; then ``on_written``,
        when every write of the run has landed."""
        stamp = _now_ms()
        all_tags = {Tag.STATE: state, **(tags or {})}
        self._submit(
            self.client.log_batch,
            run_id,
            metrics=[Metric(k, float(v), stamp, 0) for k, v in (metrics or {}).items()],
            tags=[RunTag(k, str(v)) for k, v in all_tags.items()],
        )
        finished = TrialEnd(state).finished
        status = (RunStatus.FINISHED if finished else RunStatus.FAILED).value
        self._submit(self.client.set_terminated, run_id, status=status, end_time=stamp)
        if on_written is not None:
            self._submit(self._written, run_id, on_written)

    def _written(self, run_id: str, then: Callable[[], None]) -> None:
        if run_id not in self._unwritten:
            then()
