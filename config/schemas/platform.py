"""Schema of ``platform.yaml``: where the platform keeps its state and how it reaches its services."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from config.schemas.base import PROJECT_ROOT, Frozen


class SparkSettings(Frozen):
    master: str = "local[2]"
    app_name: str = "quantlake"
    shuffle_partitions: int = Field(4, ge=1)
    driver_memory: str = "4g"
    version: str = "4.2.0"
    delta_version: str = "4.4.0"
    ui_enabled: bool = False
    # the address executors reach the driver at (bound too); null: Spark's own default, the
    # host's address, which a driver in a container or on a cluster host needs
    driver_host: str | None = "127.0.0.1"
    # any further Spark properties, applied last: what a real cluster needs (executor memory and
    # cores, spark.kubernetes.container.image, spark.hadoop.fs.s3a.*); QL_PLATFORM__SPARK__CONF='{"k": "v"}'
    conf: dict[str, str] = {}

    @property
    def line(self) -> str:
        """The Spark major.minor line that names Delta's artifact (``4.2``)."""
        return ".".join(self.version.split(".")[:2])


class LakeSettings(Frozen):
    root: str = "lake"


class PostgresSettings(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(5544, ge=1, le=65535)
    user: str = "quantlake"
    database: str = "quantlake"
    mlflow_database: str = "mlflow"
    dagster_database: str = "dagster"
    os_user: str = "postgres"

    def url(self, database: str | None = None, driver: str = "postgresql+psycopg2") -> str:
        """SQLAlchemy URL for ``database`` (default: the warehouse database)."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database or self.database}"


class RedisSettings(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(6390, ge=1, le=65535)
    db: int = Field(0, ge=0)
    # the ACL user every service logs in as (the default user is off); its password is
    # QL_REDIS_PASSWORD, else generated once in <state_dir>/secrets/redis.json
    user: str = "quantlake"
    appendfsync: Literal["always", "everysec"] = "always"  # see infra/services/redis.py

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


class KafkaServerSettings(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(9392, ge=1, le=65535)
    controller_port: int = Field(9393, ge=1, le=65535)
    version: str = "4.4.0"
    heap: str = "512m"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"


class MlflowSettings(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(5500, ge=1, le=65535)
    experiment: str = "quantlake"
    registered_model: str = "quantlake-direction"

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.host}:{self.port}"


class TableauSettings(Frozen):
    """Where ``python -m tableau build`` writes, and an optional Tableau Server / Cloud to publish to.

    The token's secret is read from ``QL_TABLEAU_TOKEN_SECRET``, never from a file in the repo."""

    output_dir: Path = Path("tableau")   # under state_dir unless absolute: .tds, .twb, .hyper
    server_url: str | None = None        # e.g. https://tableau.example.com; publishing is off without it
    site: str = ""
    token_name: str | None = None
    project: str = "quantlake"


class WarehouseSettings(Frozen):
    """The star schema (PostgreSQL schema ``dw``) in the ``postgres.database`` database.

    Passwords come from ``QL_WAREHOUSE_LOADER_PASSWORD`` / ``QL_WAREHOUSE_REPORTING_PASSWORD``;
    without them ``python -m warehouse setup`` generates each once into
    ``<state_dir>/secrets/warehouse.json`` (mode 600, outside git)."""

    loader_role: str = Field("quantlake_loader", pattern=r"^[a-z_][a-z0-9_]*$")
    reporting_role: str = Field("quantlake_reporting", pattern=r"^[a-z_][a-z0-9_]*$")
    api_role: str = Field("quantlake_api", pattern=r"^[a-z_][a-z0-9_]*$")  # the API: reads dw, checks keys
    fan_paths: int = Field(1000, ge=10)  # Monte Carlo paths behind the fan quantiles (the first chunk's)
    # names and sectors of the symbols, where known (columns Symbol, Name, Sector); absent file: left empty
    symbols_file: Path | None = Path("../shared/data/sp500_pooksoft_constituents_sectors.csv")
    tableau: TableauSettings = TableauSettings()


class RunLauncherSettings(Frozen):
    """A Dagster run launcher for ``dagster.yaml``: ``module``, ``class_name`` and its ``config``
    (e.g. ``dagster_docker`` / ``DockerRunLauncher``: each run in its own container)."""

    module: str
    class_name: str
    config: dict[str, Any] = {}


class DagsterSettings(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(3300, ge=1, le=65535)
    run_start_timeout_s: int = Field(180, ge=10)   # a run stuck STARTING this long is failed
    run_cancel_timeout_s: int = Field(180, ge=10)  # a run stuck CANCELING this long is marked canceled
    monitor_interval_s: int = Field(30, ge=5)      # run monitoring's poll interval
    max_concurrent_runs: int = Field(1, ge=1)      # local Spark wants both cores: one run at a time here
    run_launcher: RunLauncherSettings | None = None  # None: runs as processes beside the daemon

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class ApiSettings(Frozen):
    """``python -m streaming api``: the REST/WebSocket API and the live page.

    Keys live hashed in PostgreSQL (``python -m streaming.api keys create --scope read``); the
    API reads them, and the warehouse, as ``warehouse.api_role``."""

    host: str = "127.0.0.1"                      # loopback unless a deployment says otherwise
    port: int = Field(8700, ge=1, le=65535)
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")  # Host headers served ("*": any)
    cors_origins: tuple[str, ...] = ()           # browser origins allowed to call the API
    rate_per_second: float = Field(50.0, gt=0)   # requests per key per second (token bucket) ...
    burst: int = Field(100, ge=1)                # ... and the bucket's size; above it: 429
    key_cache_seconds: float = Field(10.0, ge=0)  # a key checked against PostgreSQL is trusted this long
    key_cache_size: int = Field(10_000, ge=1)    # keys (good or bad) remembered at most; the oldest go first
    auth_failures_per_minute: int = Field(20, ge=1)  # failed authentications per client address; above: 429
    page_size: int = Field(100, ge=1)            # list endpoints' default page
    max_page_size: int = Field(1000, ge=1)
    order_ack_seconds: float = Field(3.0, ge=0)  # a manual order or a cancel waits this long for the venue
    min_order_notional: float = Field(1.0, ge=0)  # a manual order below this many dollars is refused
    ws_queue: int = Field(500, ge=1)             # messages held per WebSocket client; a client further behind is dropped
    ws_heartbeat_seconds: float = Field(5.0, gt=0)
    ws_per_key: int = Field(32, ge=1)            # open WebSocket connections per API key; one more is closed with 4429
    ws_auth_seconds: float = Field(5.0, gt=0)    # a WebSocket must authenticate within this


class MetricsSettings(Frozen):
    """The live services' Prometheus endpoints (``/metrics``; the API serves its own on its port)."""

    host: str = "127.0.0.1"
    stream_port: int = Field(8701, ge=1, le=65535)
    venue_port: int = Field(8702, ge=1, le=65535)
    portfolio_port: int = Field(8703, ge=1, le=65535)


class PrometheusSettings(Frozen):
    """The Prometheus server ``python -m infra up`` runs (Debian's package), with the alert rules
    of ``docker/prometheus/alerts.yml``."""

    host: str = "127.0.0.1"
    port: int = Field(9590, ge=1, le=65535)
    scrape_interval: str = Field("5s", pattern=r"^[0-9]+(ms|s|m)$")
    retention: str = Field("7d", pattern=r"^[0-9]+[hdw]$")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class SparkClusterSettings(Frozen):
    """A Spark standalone master and its workers from the pyspark distribution (``spark-class``)."""

    host: str = "127.0.0.1"
    master_port: int = Field(7077, ge=1, le=65535)
    master_webui_port: int = Field(8780, ge=1, le=65535)
    workers: int = Field(2, ge=1)
    worker_cores: int = Field(1, ge=1)
    worker_memory: str = Field("2g", pattern=r"^[0-9]+[mg]$")
    worker_webui_port: int = Field(8781, ge=1, le=65535)   # worker i: this + i

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"


class KafkaClusterSettings(Frozen):
    """A KRaft cluster of ``brokers`` nodes, each broker and controller, on loopback ports."""

    host: str = "127.0.0.1"
    brokers: int = Field(3, ge=1)
    port: int = Field(9492, ge=1, le=65535)             # broker i (1-based) listens on port + i - 1
    controller_port: int = Field(9592, ge=1, le=65535)  # and its controller on controller_port + i - 1
    heap: str = "384m"
    replication_factor: int = Field(3, ge=1)
    min_insync_replicas: int = Field(2, ge=1)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{self.host}:{self.port + i}" for i in range(self.brokers))


class ClusterSettings(Frozen):
    """``python -m infra up --cluster``: the cluster services beside the single-node ones. Point
    the platform at them with ``QL_PLATFORM__SPARK__MASTER``, ``QL_KAFKA__BOOTSTRAP_SERVERS`` and
    ``QL_KAFKA__REPLICATION_FACTOR`` (``up --cluster`` prints them)."""

    spark: SparkClusterSettings = SparkClusterSettings()
    kafka: KafkaClusterSettings = KafkaClusterSettings()


class PlatformSettings(Frozen):
    environment: Literal["local", "ci", "production"] = "local"
    state_dir: Path = Path(".state")
    spark: SparkSettings = SparkSettings()
    lake: LakeSettings = LakeSettings()
    postgres: PostgresSettings = PostgresSettings()
    redis: RedisSettings = RedisSettings()
    kafka: KafkaServerSettings = KafkaServerSettings()
    mlflow: MlflowSettings = MlflowSettings()
    dagster: DagsterSettings = DagsterSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    cluster: ClusterSettings = ClusterSettings()
    reports_dir: Path = Path("reports")  # tear sheets; relative to state_dir

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, value: Path) -> Path:
        return value if value.is_absolute() else (PROJECT_ROOT / value).resolve()

    @property
    def lake_root(self) -> Path:
        root = Path(self.lake.root)
        return root if root.is_absolute() else self.state_dir / root

    @property
    def tableau_dir(self) -> Path:
        out = self.warehouse.tableau.output_dir
        return out if out.is_absolute() else self.state_dir / out

    @property
    def reports_root(self) -> Path:
        return self.reports_dir if self.reports_dir.is_absolute() else self.state_dir / self.reports_dir

    def jar_dir(self, jar_set: Literal["spark", "kafka-broker", "kafka-tools"]) -> Path:
        """Where ``python -m infra fetch-jars`` puts a jar set (named by its versions, so an
        upgrade fetches afresh); Spark start-up reads the same folder and never fetches."""
        tag = (f"spark{self.spark.version}-delta{self.spark.delta_version}" if jar_set == "spark"
               else f"kafka{self.kafka.version}")
        return self.state_dir / "jars" / f"{jar_set}-{tag}"
