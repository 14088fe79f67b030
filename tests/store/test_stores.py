from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from services import run_together

from prunetuna.errors import UserError
from prunetuna.store import describe_error, mask_text, mask_url, open_storage, resolve_workspace


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://alice:s3cret@db.example:5432/optuna", "postgresql://alice:***@db.example:5432/optuna"),
        ("postgresql+psycopg2://bob:p%40ss@localhost/db", "postgresql+psycopg2://bob:***@localhost/db"),
        ("http://user:pw@127.0.0.1:5000", "http://user:***@127.0.0.1:5000"),
        ("sqlite:////tmp/x/optuna.db", "sqlite:////tmp/x/optuna.db"),
        ("postgresql://alice@localhost/db", "postgresql://alice@localhost/db"),
        # SQLAlchemy reads these passwords whole; none of them may show
        ("postgresql://u:ab/cd@db/studies", "postgresql://u:***@db/studies"),
        ("postgresql://u:p#w?x@db:5432/studies", "postgresql://u:***@db:5432/studies"),
        ("postgresql://u:p@ss@db/studies", "postgresql://u:***@db/studies"),
        ("mysql+pymysql://u:pw@[::1]:3306/db", "mysql+pymysql://u:***@[::1]:3306/db"),
        ("postgresql://u:pw@db:notaport/x", "postgresql://u:***@db:notaport/x"),
        ("http://127.0.0.1:5000/a@b", "http://127.0.0.1:5000/a@b"),
        ("sqlite:////tmp/a@b/optuna.db", "sqlite:////tmp/a@b/optuna.db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_text_hides_the_password_even_in_a_cut_or_rewritten_url() -> None:
    url = "postgresql://alice:s3cret/x@db.example/optuna"
    message = f"Could not parse URL from string '{url[:30]}' (password s3cret/x)"
    assert "s3cret" not in mask_text(message, url)
    assert "s3cret" not in describe_error(ValueError(f"bad {url}"), url, limit=25)


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    workspace = resolve_workspace("study", None, None, None)
    assert workspace.workdir == Path("runs/study")
    assert workspace.storage_url == f"sqlite:///{tmp_path / 'runs/study/optuna.db'}"
    assert workspace.tracking_uri == f"sqlite:///{tmp_path / 'runs/study/mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_workspace("study", None, None, None).tracking_uri == "http://127.0.0.1:5999"
    assert resolve_workspace("study", None, None, "sqlite:///x.db").tracking_uri == "sqlite:///x.db"


def test_unreachable_storage_fails_fast_with_password_masked(tmp_path: Path) -> None:
    workspace = resolve_workspace("s", tmp_path, "postgresql://user:hunter2@127.0.0.1:1/optuna", None)
    with pytest.raises(UserError) as info:
        open_storage(workspace, create=True)
    message = str(info.value)
    assert message.startswith("--storage: ") and "user:***@127.0.0.1:1" in message
    assert "hunter2" not in message


def test_missing_sqlite_is_not_created_for_reading(tmp_path: Path) -> None:
    workspace = resolve_workspace("s", tmp_path / "w", None, None)
    with pytest.raises(UserError, match="does not exist"):
        open_storage(workspace, create=False)
    assert not (tmp_path / "w").exists()


def _open_fresh(url: str) -> str:
    """Open (so create) the storage at ``url``: 'ok' or the error line."""
    try:
        open_storage(resolve_workspace("race", Path(url[len("sqlite:///") :]).parent, url, None), create=True)
    except UserError as exc:
        return str(exc)
    return "ok"


def test_processes_opening_a_fresh_database_together_all_get_it(tmp_path: Path) -> None:
    # Workers (or a `report` run) that start on a new database together race to create Optuna's schema;
    # the loser used to exit 2 (UNIQUE constraint failed: alembic_version.version_num).
    for attempt in range(4):
        url = f"sqlite:///{tmp_path / f'fresh{attempt}' / 'optuna.db'}"
        assert run_together(_open_fresh, [url] * 4) == ["ok"] * 4


def test_report_and_ui_need_neither_lightning_nor_torch() -> None:
    # `prunetuna report` took 11 s, 8 of them importing Lightning and torch it never used
    import prunetuna.search as search
    import prunetuna.store as store

    for package in (search, store):  # lazy exports: every name listed resolves, and nothing else is exported
        homes = [name for names in package._HOMES.values() for name in names]
        assert sorted(package.__all__) == sorted(homes) and all(getattr(package, name) for name in package.__all__)
    code = (
        "import sys; from prunetuna.cli import app; from prunetuna.store import load_study, mask_url, "
        "resolve_workspace; from prunetuna.results import build_report, render_report; "
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr
