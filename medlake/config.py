"""Settings from the environment, read in one place.

Every other module asks `get_settings()` where things live and which secrets and
endpoints to use, so a deployment changes configuration only, never code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# The variables medlake reads, with their defaults and meaning. The README's table is
# generated from this list (`medlake env`), so the two never drift apart.
ENV_VARS: dict[str, tuple[str, str]] = {
    "MEDLAKE_HOME": ("./.medlake", "root folder for landing/, lake/, vectors/, gx/, dagster_home/"),
    "MEDLAKE_LAKE_URI": ("$MEDLAKE_HOME/lake", "where the Delta tables live (a path or s3://bucket/prefix)"),
    "MEDLAKE_PSEUDONYM_KEY": ("medlake-demo-key (insecure)", "secret for HMAC-SHA256 person_key and other pseudonyms; set it in production"),
    "MEDLAKE_DATE_SHIFT_DAYS": ("365", "maximum per-person date shift in days (0 disables shifting)"),
    "MEDLAKE_EMBED_MODEL": ("packaged all-MiniLM-L6-v2", "sentence-transformers model folder or name"),
    "MEDLAKE_EMBED_DEVICE": ("cpu", "torch device for embeddings (cpu, cuda)"),
    "MEDLAKE_EMBED_BATCH": ("32", "texts per embedding batch (256 or more pays on a GPU)"),
    "MEDLAKE_EMBED_BACKEND": ("auto", "torch, onnx or onnx-int8 (ONNX Runtime, exported offline into $MEDLAKE_HOME/models on first use); auto = torch fp32 (onnx-int8 is 1.8x faster on an AVX2 CPU with recall@10 within 0.02, short of the 3x that would make it the default)"),
    "MEDLAKE_LLM_BASE_URL": ("(unset)", "OpenAI-compatible endpoint, e.g. http://vllm:8000/v1; unset = answer from evidence only"),
    "MEDLAKE_LLM_MODEL": ("(unset)", "model name served at that endpoint"),
    "MEDLAKE_LLM_API_KEY": ("EMPTY", "API key for the endpoint (vLLM accepts any unless --api-key is set)"),
    "MEDLAKE_LLM_TIMEOUT": ("60", "seconds before an LLM call is abandoned"),
    "MEDLAKE_LLM_RETRIES": ("2", "retries of a failed LLM call (exponential backoff), then the evidence-only answer"),
    "MEDLAKE_LLM_CONCURRENCY": ("4", "LLM calls in flight at once in batch generation (gold.patient_summary)"),
    "MEDLAKE_USER": ("login name", "who is recorded as asking, in gold.rag_audit"),
    "MEDLAKE_GX_ENGINE": ("auto", "validation engine: pandas (GX, Data Docs), duckdb, or auto (by table size)"),
    "MEDLAKE_GX_PANDAS_MAX_ROWS": ("200000", "with auto, tables above this many rows are validated in DuckDB"),
    "MEDLAKE_LANDING_SETTLE_SECONDS": ("10", "a landing file is ingested once unchanged this long (still-copying files wait)"),
    "MEDLAKE_BRONZE_WRITERS": ("1", "ingest runs that may write bronze at once (the lake_bronze pool's limit). 1: appends where no key is stored yet; above 1 every write is a MERGE whose commit conflicts are retried, so batches sharing keys still land once (every process must see the same value)"),
    "MEDLAKE_VACUUM_RETENTION_DAYS": ("30", "nightly vacuum keeps this many days of Delta history for time travel and audits"),
    "MEDLAKE_API_TOKENS": ("(unset: the API refuses everyone)", "bearer tokens of `medlake serve`: `principal:token[:scope+scope]`, comma-separated; scopes ask, search, feedback (default all)"),
    "MEDLAKE_VLLM_TENSOR_PARALLEL": ("1", "`medlake serve-llm`: GPUs to shard the model over (--tensor-parallel-size)"),
    "MEDLAKE_VLLM_GPU_MEMORY": ("0.9", "`medlake serve-llm`: fraction of GPU memory vLLM may use (--gpu-memory-utilization)"),
    "MEDLAKE_VLLM_MAX_MODEL_LEN": ("8192", "`medlake serve-llm`: context length in tokens (--max-model-len)"),
    "MEDLAKE_VLLM_HOST": ("0.0.0.0", "`medlake serve-llm`: address vLLM listens on"),
    "MEDLAKE_VLLM_PORT": ("8000", "`medlake serve-llm`: port vLLM listens on"),
    "DAGSTER_HOME": ("$MEDLAKE_HOME/dagster_home", "Dagster instance folder (runs, event logs)"),
}

DEMO_KEY = "medlake-demo-key"


@dataclass(frozen=True)
class Settings:
    home: Path
    lake_uri: str
    pseudonym_key: bytes = field(repr=False)
    date_shift_days: int
    embed_model: str | None
    embed_device: str
    embed_batch: int
    llm_base_url: str | None
    llm_model: str | None
    llm_api_key: str = field(repr=False)
    llm_timeout: float
    user: str
    landing_settle_seconds: float = 10.0
    vacuum_retention_days: int = 30
    embed_backend: str = "auto"
    llm_retries: int = 2
    llm_concurrency: int = 4
    api_tokens: str = field(default="", repr=False)
    vllm_tensor_parallel: int = 1
    vllm_gpu_memory: float = 0.9
    vllm_max_model_len: int = 8192
    vllm_host: str = "0.0.0.0"
    vllm_port: int = 8000
    bronze_writers: int = 1

    @property
    def sole_bronze_writer(self) -> bool:
        """Whether one ingest at a time writes bronze, so a batch of new keys may be
        appended (`lake.merge`'s `sole_writer`)."""
        return self.bronze_writers == 1

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def vectors(self) -> Path:
        return self.home / "vectors"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def gx_root(self) -> Path:
        return self.home / "gx"

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME") or self.home / "dagster_home")

    @property
    def dbt_staging(self) -> Path:
        """Scratch Parquet that dbt writes before the Delta commit; safe to delete."""
        return self.home / "dbt_staging"

    def table_uri(self, table: str) -> str:
        """`bronze.fhir_resources` -> `<lake>/bronze/fhir_resources`."""
        layer, name = table.split(".")
        return f"{self.lake_uri.rstrip('/')}/{layer}/{name}"

    def export_env(self) -> None:
        """Make child processes (dbt, dagster dev) see the same resolved settings."""
        os.environ["MEDLAKE_HOME"] = str(self.home)
        os.environ["MEDLAKE_LAKE_URI"] = self.lake_uri
        os.environ.setdefault("DAGSTER_HOME", str(self.dagster_home))


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"


def get_settings() -> Settings:
    env = os.environ
    home = Path(env.get("MEDLAKE_HOME", ".medlake")).expanduser().resolve()
    lake = env.get("MEDLAKE_LAKE_URI") or str(home / "lake")
    return Settings(
        home=home,
        lake_uri=lake,
        pseudonym_key=env.get("MEDLAKE_PSEUDONYM_KEY", DEMO_KEY).encode(),
        date_shift_days=int(env.get("MEDLAKE_DATE_SHIFT_DAYS", "365")),
        embed_model=env.get("MEDLAKE_EMBED_MODEL") or None,
        embed_device=env.get("MEDLAKE_EMBED_DEVICE", "cpu"),
        embed_batch=int(env.get("MEDLAKE_EMBED_BATCH", "32")),
        llm_base_url=env.get("MEDLAKE_LLM_BASE_URL") or None,
        llm_model=env.get("MEDLAKE_LLM_MODEL") or None,
        llm_api_key=env.get("MEDLAKE_LLM_API_KEY", "EMPTY"),
        llm_timeout=float(env.get("MEDLAKE_LLM_TIMEOUT", "60")),
        user=env.get("MEDLAKE_USER") or _user(),
        landing_settle_seconds=float(env.get("MEDLAKE_LANDING_SETTLE_SECONDS", "10")),
        vacuum_retention_days=int(env.get("MEDLAKE_VACUUM_RETENTION_DAYS", "30")),
        embed_backend=env.get("MEDLAKE_EMBED_BACKEND", "auto").strip().lower() or "auto",
        llm_retries=int(env.get("MEDLAKE_LLM_RETRIES", "2")),
        llm_concurrency=int(env.get("MEDLAKE_LLM_CONCURRENCY", "4")),
        api_tokens=env.get("MEDLAKE_API_TOKENS", ""),
        vllm_tensor_parallel=int(env.get("MEDLAKE_VLLM_TENSOR_PARALLEL", "1")),
        vllm_gpu_memory=float(env.get("MEDLAKE_VLLM_GPU_MEMORY", "0.9")),
        vllm_max_model_len=int(env.get("MEDLAKE_VLLM_MAX_MODEL_LEN", "8192")),
        vllm_host=env.get("MEDLAKE_VLLM_HOST", "0.0.0.0"),
        vllm_port=int(env.get("MEDLAKE_VLLM_PORT", "8000")),
        bronze_writers=_positive(env, "MEDLAKE_BRONZE_WRITERS", 1),
    )


def _positive(env, name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={raw!r}: expected a whole number of at least 1.")
    return int(raw)
