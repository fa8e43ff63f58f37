"""Resources and environment, set up in one place for the code location and the CLI."""
from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from medlake.config import get_settings

DBT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"

dbt_project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)


def dbt_executable() -> str:
    """The `dbt` installed in this Python environment, so PATH does not have to include
    the virtualenv (`dagster dev` starts code servers with the bare interpreter path)."""
    beside = Path(sysconfig.get_path("scripts")) / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def ensure_manifest() -> Path:
    """dbt's manifest must exist before the dbt assets can be defined; `dagster dev`
    builds it itself, the CLI and tests need it built here (once, ~5 s)."""
    dbt_project.prepare_if_dev()
    if not dbt_project.manifest_path.exists():
        dbt_project.preparer.prepare(dbt_project)
    return dbt_project.manifest_path


def resources() -> dict:
    get_settings().export_env()  # dbt runs as a subprocess and reads these
    return {"dbt": DbtCliResource(project_dir=dbt_project, profiles_dir=str(DBT_DIR),
                                  dbt_executable=dbt_executable())}
