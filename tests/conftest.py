import dataclasses
import json
import os
import uuid
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
    monkeypatch.delenv("MEDLAKE_VECTORS_URI", raising=False)
    monkeypatch.delenv("MEDLAKE_LANDING_URI", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.delenv("MEDLAKE_LLM_BASE_URL", raising=False)
    return home


def use_s3(monkeypatch, home: Path, endpoint: str, bucket: str) -> Path:
    """Like `use_home`, but the lake, the vectors and the landing zone are on the S3 API
    server at `endpoint`, under s3://`bucket`/ (created if missing); only Dagster's
    instance, dbt's scratch files and the landing cache stay in `home`. Configuration
    only: the code is the same."""
    use_home(monkeypatch, home)
    monkeypatch.setenv("MEDLAKE_LAKE_URI", f"s3://{bucket}/lake")
    monkeypatch.setenv("MEDLAKE_VECTORS_URI", f"s3://{bucket}/vectors")
    monkeypatch.setenv("MEDLAKE_LANDING_URI", f"s3://{bucket}/landing")
    from tests.s3_server import CREDENTIALS, create_bucket

    for name, value in {"AWS_ENDPOINT_URL": endpoint, **CREDENTIALS}.items():
        monkeypatch.setenv(name, value)
    create_bucket(endpoint, bucket)
    return home


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A real S3 API server (moto's) on loopback, on a free port, for the session:
    delta-rs, LanceDB, s3fs and dbt's subprocess all reach it over HTTP."""
    from tests.s3_server import S3Server

    with S3Server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_home(tmp_path, monkeypatch, s3_endpoint) -> Path:
    """An empty medlake on S3, in a bucket of its own."""
    return use_s3(monkeypatch, tmp_path / "medlake", s3_endpoint, f"medlake-{uuid.uuid4().hex[:12]}")


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


S3_DEMO_BUCKET = "medlake-demo"


@pytest.fixture(scope="session")
def s3_demo_home(tmp_path_factory, s3_endpoint) -> Path:
    """The same demo as `demo_home` (same patients, seed and bad files), built once per
    session by the same `run()` with the lake, vectors and landing zone on S3. The files
    are generated into `home/landing` (the test helpers read them there) and uploaded to
    s3://medlake-demo/landing, from where the pipeline stages them."""
    from medlake.generate import generate
    from medlake.landing import publish
    from medlake.pipeline import run

    home = tmp_path_factory.mktemp("s3demo") / "medlake"
    mp = pytest.MonkeyPatch()
    try:
        use_s3(mp, home, s3_endpoint, S3_DEMO_BUCKET)
        result = generate(home / "landing", patients=4, seed=7, bad_files=True)
        (home / "generated.json").write_text(json.dumps(dataclasses.asdict(result), default=str))
        publish(home / "landing")
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
