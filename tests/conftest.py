import dataclasses
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The project's shared test material sits beside the checkout (and beside CI's clone).
SHARED = Path(os.environ.get("MEDLAKE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def use_home(monkeypatch, home: Path) -> Path:
    """Point every medlake setting at `home`, restored after the test."""
    monkeypatch.setenv("MEDLAKE_HOME", str(home))
    monkeypatch.setenv("MEDLAKE_LAKE_URI", str(home / "lake"))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.delenv("MEDLAKE_LLM_BASE_URL", raising=False)
    return home


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    return use_home(monkeypatch, tmp_path / "medlake")


@pytest.fixture(scope="session")
def shared() -> Path:
    assert SHARED.is_dir(), f"shared test data not found at {SHARED}"
    return SHARED


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    """A lake built once per session by the real pipeline on 4 generated patients with
    bad files: landing → bronze → silver → gold → checks → embeddings."""
    from medlake.generate import generate
    from medlake.pipeline import run

    home = tmp_path_factory.mktemp("demo") / "medlake"
    mp = pytest.MonkeyPatch()
    try:
        use_home(mp, home)
        result = generate(home / "landing", patients=4, seed=7, bad_files=True)
        (home / "generated.json").write_text(json.dumps(dataclasses.asdict(result), default=str))
        report = run(show_progress=False)
        assert report.success, report.failures
    finally:
        mp.undo()
    return home


@pytest.fixture
def demo(demo_home, monkeypatch) -> Path:
    return use_home(monkeypatch, demo_home)


@pytest.fixture
def demo_copy(demo_home, tmp_path, monkeypatch) -> Path:
    """A private copy of the demo lake, for tests that change it."""
    import shutil

    home = tmp_path / "medlake"
    shutil.copytree(demo_home, home, ignore=shutil.ignore_patterns("dagster_home", "gx"))
    return use_home(monkeypatch, home)
