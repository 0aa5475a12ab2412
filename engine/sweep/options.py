"""Options of the `sweep` commands. A sweep's own settings are the SweepConfig schema and its
space (engine/sweep/spec.py), read from the sweep file; these are the flags around them."""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.schema import knob

STORAGE_HELP = ("the study's database as a SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db for "
                "workers on several machines (default: the SQLite file sweeps/NAME.db in the workspace)")


def storage_knob(required: bool = False) -> str | None:
    return knob(None, STORAGE_HELP, metavar="URL", required=required)


@dataclass
class SweepCreateOptions:
    config: str = knob("", "a sweep file with a [sweep] table: settings, [sweep.base] (the run config "
                       "every trial starts from) and [sweep.space.KNOB] tables", positional=True,
                       metavar="SWEEP.toml")
    storage: str | None = storage_knob()


@dataclass
class SweepInitOptions:
    file: str = knob("", "where to write the sweep file (refused if it exists)", positional=True)
    name: str = knob("", "the sweep's name (default: the file's name)")


@dataclass
class SweepNameOptions:
    sweep: str = knob("", "the sweep's name (see sweep list)", positional=True)
    storage: str | None = storage_knob()


@dataclass
class SweepWorkerOptions:
    storage: str = knob("", STORAGE_HELP, metavar="URL", required=True)
    sweep: str | None = knob(None, "the sweep's name (default: the only one in the storage)")


@dataclass
class SweepBestOptions:
    sweep: str = knob("", "the sweep's name (see sweep list)", positional=True)
    storage: str | None = storage_knob()
    write: str | None = knob(None, "also write the best trial's settings as a run file for "
                             "`train --config`", metavar="FILE.toml")


@dataclass
class SweepExportOptions:
    sweep: str = knob("", "the sweep's name (see sweep list)", positional=True)
    storage: str | None = storage_knob()
    out: str | None = knob(None, "folder for trials.csv and NAME.db (default: sweeps/NAME-export in the "
                           "workspace)", metavar="DIR")
