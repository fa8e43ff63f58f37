"""Resources and environment, set up in one place for the code location and the CLI."""
from __future__ import annotations

import os
import shutil
import sysconfig
import tempfile
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from dagster_dbt.dbt_project import using_dagster_dev

from medlake.config import get_settings

DBT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"


def dbt_executable() -> str:
    """The `dbt` installed in this Python environment, so PATH does not have to include
    the virtualenv (`dagster dev` may start code servers without it)."""
    beside = Path(sysconfig.get_path("scripts")) / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


dbt_project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)


def _manifest_is_stale() -> bool:
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    sources = [DBT_DIR / "dbt_project.yml", DBT_DIR / "profiles.yml",
               *DBT_DIR.glob("models/**/*"), *DBT_DIR.glob("macros/**/*"), *DBT_DIR.glob("seeds/**/*"),
               *DBT_DIR.glob("tests/**/*")]
    return any(p.is_file() and p.stat().st_mtime > built for p in sources)


def ensure_manifest() -> Path:
    """The dbt assets are defined from dbt's manifest, so it must exist, and match the
    models, when this module is imported.

    `dbt parse` runs with this environment's dbt (dagster-dbt's own preparer looks for
    `dbt` on PATH): on every load under `dagster dev`, and otherwise when a model, macro
    or config file is newer than the manifest. The project uses no dbt packages, so there
    is no `dbt deps` step (it would need the network).
    """
    if using_dagster_dev() or _manifest_is_stale():
        get_settings().export_env()
        # Parse into a private folder and swap the manifest in atomically: under
        # `dagster dev` every run process loads this module, and runs started together
        # by the sensors must never read a manifest another process is half-way writing.
        dbt_project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".parse-", dir=dbt_project.manifest_path.parent))
        try:
            (DbtCliResource(project_dir=dbt_project, profiles_dir=str(DBT_DIR),
                            dbt_executable=dbt_executable())
             .cli(["parse", "--quiet"], target_path=scratch).wait())
            os.replace(scratch / "manifest.json", dbt_project.manifest_path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return dbt_project.manifest_path


def resources() -> dict:
    get_settings().export_env()  # dbt runs as a subprocess and reads these
    return {"dbt": DbtCliResource(project_dir=dbt_project, profiles_dir=str(DBT_DIR),
                                  dbt_executable=dbt_executable())}
