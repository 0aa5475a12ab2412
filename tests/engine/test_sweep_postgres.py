"""Two `sweep worker` processes on one study held by a real PostgreSQL server (Debian's package,
started throwaway by tests/postgres_server.py), through SQLAlchemy and psycopg."""

from __future__ import annotations

import postgres_server
import pytest

from .test_sweep import SPACE, assert_two_workers_share, engine, result, status, sweep_file

pytest.importorskip("optuna")
pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")

if postgres_server.unavailable():
    pytest.skip(postgres_server.unavailable(), allow_module_level=True)


def test_two_workers_share_a_study_on_a_postgresql_server(tiny_model_dir, workspace_home, engine_env,
                                                          tmp_path) -> None:
    path = sweep_file(tmp_path, tiny_model_dir, "pg", SPACE, n_trials=4, pruner="none", sampler="random")
    with postgres_server.throwaway_server() as url:
        created = result(engine(engine_env, "sweep", "create", str(path), "--storage", url, "--json"))
        assert created["storage"].startswith("postgresql+psycopg://")
        # Workers name only the storage: the definition travels inside the study.
        assert_two_workers_share(engine_env, workspace_home, ["sweep", "worker", "--storage", url], "pg", 4,
                                 storage=["--storage", url])
        assert status(engine_env, "pg", "--storage", url)["done"] >= 4
        assert not (workspace_home / "sweeps" / "pg.db").exists()  # nothing went to SQLite
