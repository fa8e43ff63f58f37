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
    "MEDLAKE_VECTORS_URI": ("$MEDLAKE_HOME/vectors", "where LanceDB keeps clinical_chunks (a path or s3://bucket/prefix)"),
    "MEDLAKE_LANDING_URI": ("$MEDLAKE_HOME/landing", "where files land (a path or s3://bucket/prefix; objects are staged to $MEDLAKE_HOME/landing_cache to be read)"),
    "MEDLAKE_LAKE_CACHE_DAYS": ("7", "with the lake on object storage, DuckDB reads its data files from copies in $MEDLAKE_HOME/lake_cache; nightly maintenance removes those unused this many days"),
    "AWS_ENDPOINT_URL": ("(unset: AWS S3)", "S3 API endpoint for s3:// URIs (MinIO, Ceph, a test server); an http:// endpoint allows plain HTTP"),
    "AWS_REGION": ("$AWS_DEFAULT_REGION, else us-east-1", "region of the s3:// buckets"),
    "AWS_ACCESS_KEY_ID": ("(unset: the AWS credential chain)", "S3 access key; unset, each client finds credentials itself (instance role, web identity)"),
    "AWS_SECRET_ACCESS_KEY": ("(unset)", "S3 secret key, with AWS_ACCESS_KEY_ID"),
    "AWS_SESSION_TOKEN": ("(unset)", "S3 session token, for temporary credentials"),
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
    "MEDLAKE_GX_DOCS_KEEP": ("5", "Data Docs keep each table's newest N validations, so rebuilding them costs the same in the hundredth run as in the fifth (every result stays in gold.dq_results)"),
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


def is_remote(uri: str) -> bool:
    """Whether `uri` names object storage rather than a local path."""
    return "://" in uri and not uri.startswith("file://")


@dataclass(frozen=True)
class S3:
    """Where and how to reach s3:// URIs, from the standard AWS_* variables. Each library
    takes them under its own names; these methods are the only translations."""
    endpoint: str | None = None
    region: str = "us-east-1"
    key_id: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @property
    def http(self) -> bool:
        return bool(self.endpoint and self.endpoint.startswith("http://"))

    def delta(self) -> dict[str, str]:
        """delta-rs (object_store) options. Commits are made safe by conditional put: the
        next log entry is written only if absent (If-None-Match), so of two writers racing
        for one version exactly one wins and the other retries on the next. S3 has no
        atomic rename, so the unsafe rename fallback is switched off explicitly, whatever
        the environment says."""
        return {**self._named("AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID",
                              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
                "AWS_CONDITIONAL_PUT": "etag", "AWS_S3_ALLOW_UNSAFE_RENAME": "false"}

    def lance(self) -> dict[str, str]:
        """LanceDB options (the same settings under its own object_store names)."""
        return self._named("region", "aws_endpoint", "allow_http", "aws_access_key_id",
                           "aws_secret_access_key", "aws_session_token")

    def _named(self, region: str, endpoint: str, http: str, key_id: str, secret: str,
               token: str) -> dict[str, str]:
        """The settings that are set, under a library's option names."""
        values = {region: self.region, endpoint: self.endpoint, http: "true" if self.http else None,
                  key_id: self.key_id, secret: self.secret, token: self.token}
        return {name: value for name, value in values.items() if value}

    def fsspec(self) -> dict:
        """s3fs options: DuckDB reads the lake's Parquet through it, and the landing zone
        is listed and fetched with it. Listings are not cached: other processes and
        delta-rs add objects meanwhile."""
        opts: dict = {"client_kwargs": {"region_name": self.region},
                      "use_listings_cache": False}
        if self.endpoint:
            opts["endpoint_url"] = self.endpoint
        if self.key_id:
            opts.update(key=self.key_id, secret=self.secret, token=self.token)
        return opts


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
    lake_cache_days: float = 7.0
    vectors_uri: str = ""  # "" = $MEDLAKE_HOME/vectors
    landing_uri: str = ""  # "" = $MEDLAKE_HOME/landing
    s3: S3 = S3()

    @property
    def sole_bronze_writer(self) -> bool:
        """Whether one ingest at a time writes bronze, so a batch of new keys may be
        appended (`lake.merge`'s `sole_writer`)."""
        return self.bronze_writers == 1

    @property
    def landing(self) -> Path:
        """The local folder files are ingested from: the landing zone itself, or, when it
        is on object storage, the cache its objects are staged to (medlake/landing.py)."""
        if self.landing_remote:
            return self.home / "landing_cache"
        return Path(self.landing_uri) if self.landing_uri else self.home / "landing"

    @property
    def landing_remote(self) -> bool:
        return is_remote(self.landing_uri)

    @property
    def vectors(self) -> str:
        """Where LanceDB lives: a local folder or an s3:// URI."""
        return self.vectors_uri or str(self.home / "vectors")

    @property
    def lake_cache(self) -> Path:
        """Local copies of an object store's Delta data files, for DuckDB (medlake/storage.py)."""
        return self.home / "lake_cache"

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

    def source_uri(self, path: Path) -> str:
        """The URI a landing file is recorded under (bronze `source_uri`, quarantine,
        ingest log): the file's own, or for a file staged from object storage, its
        object's. `path` is absolute."""
        if self.landing_remote and path.is_relative_to(self.landing):
            return f"{self.landing_uri.rstrip('/')}/{path.relative_to(self.landing).as_posix()}"
        return path.as_uri()

    def storage_options(self, uri: str, lance: bool = False) -> dict[str, str] | None:
        """Options for delta-rs (or LanceDB) to reach `uri`; None for a local path, so
        local tables are opened exactly as before."""
        if not is_remote(uri):
            return None
        if not uri.startswith(("s3://", "s3a://")):
            raise ValueError(f"{uri}: only local paths and s3:// URIs are supported.")
        return self.s3.lance() if lance else self.s3.delta()

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
        lake_cache_days=float(env.get("MEDLAKE_LAKE_CACHE_DAYS", "7")),
        vectors_uri=_uri(env.get("MEDLAKE_VECTORS_URI")),
        landing_uri=_uri(env.get("MEDLAKE_LANDING_URI")),
        s3=S3(endpoint=env.get("AWS_ENDPOINT_URL") or None,
              region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
              key_id=env.get("AWS_ACCESS_KEY_ID") or None,
              secret=env.get("AWS_SECRET_ACCESS_KEY") or None,
              token=env.get("AWS_SESSION_TOKEN") or None),
    )


def _positive(env, name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{name}={raw!r}: expected a whole number of at least 1.")
    return int(raw)


def _uri(value: str | None) -> str:
    """A URI as given, a path made absolute, "" when unset."""
    if not value:
        return ""
    return value if is_remote(value) else str(Path(value).expanduser().resolve())
