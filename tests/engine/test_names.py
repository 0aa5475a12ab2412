"""User-supplied names and output paths never write or delete outside their folder (issue 19).

One checker (engine/core/names.py) is called at every entry point; each entry point has a test
here that fails if its call is removed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.core import names, protocol, workspace
from engine.core.errors import EngineError

BAD_NAMES = ["..", "../x", "a/../../x", "/abs/x", "C:\\x", "a\\b", "x\x00y", "tab\there", "new\nline",
             "CON", "nul", "com1", "LPT9.txt", "con.json", "trailing.", "trailing ", "a:b", "", "."]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_checker_refuses_each_class_with_one_line(bad: str) -> None:
    with pytest.raises(EngineError) as caught:
        names.check_name(bad, "dataset name")
    assert caught.value.code == protocol.ExitCode.USAGE
    assert "\n" not in caught.value.message.replace("\\n", "")
    assert caught.value.message.startswith("dataset name ")


@pytest.mark.parametrize("good", ["reviews", "my-data_2.v1", "Ünïcode名前", "a b", ".hidden", "console", "com10"])
def test_checker_accepts_plain_names(good: str) -> None:
    assert names.check_name(good, "name") == good


def test_child_refuses_a_symlink_out_of_its_folder(tmp_path: Path) -> None:
    root, outside = tmp_path / "datasets", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(EngineError, match="points outside"):
        names.child(root, "link", "dataset name")


@pytest.mark.parametrize("bad", ["out\x00.jsonl", "out\x07.jsonl", "dir/CON.jsonl", "dir./x.jsonl", "x.jsonl "])
def test_out_paths_refuse_what_no_system_can_hold(bad: str) -> None:
    with pytest.raises(EngineError) as caught:
        names.check_out_path(bad, "--out")
    assert caught.value.code == protocol.ExitCode.USAGE


def test_out_paths_may_point_anywhere(tmp_path: Path) -> None:
    assert names.check_out_path(str(tmp_path / ".." / "x.jsonl"), "--out").name == "x.jsonl"


# -- entry points --------------------------------------------------------------------------------

def _files_outside(home: Path, tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if home not in p.parents and p != home and p.name != "a.jsonl"]


@pytest.mark.parametrize("form", ["../x", "{datasets}/../x", "{home}/../x"])
def test_cli_data_import_name_cannot_leave_datasets(form: str, workspace_home: Path, engine_env, engine_argv,
                                                    tmp_path: Path) -> None:
    """The reported cases: `--name ../x` and `--name <absolute workspace>/../x`."""
    source = tmp_path / "a.jsonl"
    source.write_text('{"text": "hello"}\n', encoding="utf-8")
    name = form.format(datasets=workspace_home / "datasets", home=workspace_home)
    done = subprocess.run(engine_argv("data", "import", str(source), "--name", name), env=engine_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.USAGE, done.stderr
    assert "Traceback" not in done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        f"error: dataset name {name!r}: " + names.name_problem(name)]
    assert _files_outside(workspace_home, tmp_path) == []
    assert list(tmp_path.rglob("x")) == [] and not any((workspace_home / "datasets").iterdir())


def test_dataset_lookups_refuse_bad_names(workspace_home: Path) -> None:
    from engine.data import importer

    with pytest.raises(EngineError, match="dataset name '../x'"):
        importer.versions("../x")
    with pytest.raises(EngineError, match="dataset name"):
        importer.dataset_folder("..")


def test_split_and_clean_store_through_the_checked_folder() -> None:
    """data split / data clean write their new version under dataset_folder(name), not a path
    built from the name directly."""
    from engine.data import clean, split

    for module in (split, clean):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert "dataset_folder(" in source and "datasets_dir() /" not in source


def test_resolve_treats_a_path_like_spec_as_a_file_not_a_workspace_name(workspace_home: Path, tmp_path: Path) -> None:
    from engine.data import importer

    (workspace_home / "datasets").mkdir(parents=True)
    outside = tmp_path / "x"
    (outside / "v1").mkdir(parents=True)
    (outside / "v1" / "manifest.json").write_text(json.dumps({"name": "x", "rows": 1}), encoding="utf-8")
    with pytest.raises(EngineError) as caught:
        importer.resolve(str(workspace_home / "datasets" / ".." / ".." / "x"))
    # Read as a file path (a folder that datasets did not save), never as the version beside it.
    assert caught.value.code == protocol.ExitCode.INVALID_INPUT and "not one saved by datasets" in caught.value.message


def test_suite_names_cannot_be_reserved_or_leave_suites(workspace_home: Path) -> None:
    from engine.infer import suites

    for bad in ("CON", "nul", "com1"):
        with pytest.raises(EngineError, match=f"suite name '{bad}'.*reserved"):
            suites.suite_path(bad)
    assert suites.suite_path("../../evil").parent == workspace_home / "suites"


def test_run_names_stay_in_runs(tmp_path: Path) -> None:
    folder = workspace.create_run("../../../x", root=tmp_path / "runs")
    assert folder.path.parent == tmp_path / "runs"


def test_run_folder_symlinked_out_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setattr(workspace, "new_run_id", lambda name="": "escape")
    (root / "escape").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(EngineError, match="points outside"):
        workspace.create_run("x", root=root)


def test_cli_data_export_out_is_checked(workspace_home: Path, engine_env, engine_argv, tmp_path: Path) -> None:
    done = subprocess.run(engine_argv("data", "export", "sample", "--out", str(tmp_path / "CON.jsonl")),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.USAGE, done.stderr
    assert "error: --out" in done.stderr and "reserved" in done.stderr
    folder = tmp_path / "taken"
    folder.mkdir()
    done = subprocess.run(engine_argv("data", "export", "sample", "--out", str(folder)),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.USAGE and "is a folder" in done.stderr, done.stderr


def test_cli_import_report_path_is_checked(workspace_home: Path, engine_env, engine_argv, tmp_path: Path) -> None:
    source = tmp_path / "a.jsonl"
    source.write_text('{"text": "hello"}\n', encoding="utf-8")
    done = subprocess.run(engine_argv("data", "import", str(source), "--report", str(tmp_path / "AUX")),
                          env=engine_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.USAGE and "error: --report" in done.stderr, done.stderr


def test_export_out_is_checked_before_the_model_loads(workspace_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    import argparse

    from engine.export import model as export_model

    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    monkeypatch.setattr(export_model.generate, "resolve", lambda model, run: ("default", adapter, {}))
    args = argparse.Namespace(outtype="f16", format="merged", model="default", run="r", force=True,
                              out=str(tmp_path / "COM1"))
    with pytest.raises(EngineError, match="--out .*reserved"):
        export_model.cmd_export(args, job=None)  # type: ignore[arg-type]


def test_export_force_never_deletes_a_folder_that_is_not_an_export(tmp_path: Path) -> None:
    from engine.export import model as export_model

    precious = tmp_path / "home"
    (precious / "notes").mkdir(parents=True)
    with pytest.raises(EngineError, match="not an earlier Tunebench export"):
        export_model.check_target(precious, "merged", force=True)
    assert (precious / "notes").is_dir()


def test_gui_catalog_names_datasets_by_folder_not_manifest(tmp_path: Path) -> None:
    from gui.state import dataset_catalog

    version = tmp_path / "real" / "v1"
    version.mkdir(parents=True)
    (version / "manifest.json").write_text(json.dumps({"name": "../../elsewhere", "rows": 1}), encoding="utf-8")
    (tmp_path / "bad " / "v1").mkdir(parents=True)
    (tmp_path / "bad " / "v1" / "manifest.json").write_text("{}", encoding="utf-8")
    assert [row.name for row in dataset_catalog.list_datasets(tmp_path)] == ["real"]


@pytest.mark.parametrize("command", ["status", "best", "export"])
def test_cli_sweep_names_cannot_leave_sweeps(command: str, workspace_home: Path, engine_env, engine_argv,
                                             tmp_path: Path) -> None:
    done = subprocess.run(engine_argv("sweep", command, "../x"), env=engine_env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == protocol.ExitCode.USAGE, done.stderr
    assert "error: sweep '../x'" in done.stderr and "Traceback" not in done.stderr
    assert _files_outside(workspace_home, tmp_path) == []


@pytest.mark.parametrize("argv", [("sweep", "init", "{tmp}/AUX.toml"),
                                  ("sweep", "best", "s", "--write", "{tmp}/NUL.toml"),
                                  ("sweep", "export", "s", "--out", "{tmp}/dir./x"),
                                  ("train", "--model", "m", "--dataset", "d", "--export-launch", "{tmp}/COM1")])
def test_cli_sweep_and_launch_outputs_are_checked(argv: tuple[str, ...], workspace_home: Path, engine_env,
                                                  engine_argv, tmp_path: Path) -> None:
    done = subprocess.run(engine_argv(*(part.format(tmp=tmp_path) for part in argv)), env=engine_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == protocol.ExitCode.USAGE, done.stderr
    assert "reserved" in done.stderr or "ends with" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not list(tmp_path.glob("*.toml"))


def test_a_slug_keeps_what_other_tools_accept_and_falls_back_when_nothing_is_left() -> None:
    assert names.slug("Kettle Helper v2!", "x") == "Kettle-Helper-v2"
    assert names.slug("Kettle Helper v2!", "x", lower=True) == "kettle-helper-v2"
    assert names.slug("..my_data.v1--", "x") == "my_data.v1"
    assert names.slug("é/ü\\:", "fallback") == "fallback"
    assert names.slug("a" * 80 + " b", "x", limit=64) == "a" * 64
