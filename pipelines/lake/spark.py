"""The one way to get a SparkSession: local by default, any master by config.

Delta Lake and the Kafka source come from local jars fetched once by Maven
(``python -m infra fetch-jars``) and handed to Spark as ``spark.jars`` before the
first ``getOrCreate()``; nothing is resolved over Ivy at session start, and starting a
session never runs Maven: missing jars stop it with the command that fetches them.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pyspark
from pyspark.sql import SparkSession

from config import ConfigError, Settings
from config.errors import UserError

# greedy: "spark-sql-kafka-0-10_2.13-4.2.0.jar" -> "spark-sql-kafka-0-10_2.13"; "guava-33.4.0-jre.jar" -> "guava"
_ARTIFACT = re.compile(r"^(?P<artifact>.+)-\d[\w.]*(?:-[A-Za-z][\w.\-]*)?\.jar$")


def _artifact(jar: Path) -> str:
    match = _ARTIFACT.match(jar.name)
    return match.group("artifact") if match else jar.stem


class MissingJarsError(UserError):
    """The Delta / Kafka-source jars have not been fetched; the message says how."""


def extra_jars(settings: Settings) -> list[Path]:
    """Delta, Kafka-source and JDBC jars, minus any artifact the pyspark wheel already ships.

    Raises:
        MissingJarsError: the jar folder is absent or incomplete.
    """
    folder = settings.platform.jar_dir("spark")
    if not (folder / ".complete").exists():
        raise MissingJarsError(f"the Spark jars (Delta, Kafka source) are not in {folder}: "
                               "run `python -m infra fetch-jars` (or `make setup`) once")
    shipped = {_artifact(j) for j in (Path(pyspark.__file__).parent / "jars").glob("*.jar")}
    return [jar for jar in sorted(folder.glob("*.jar")) if _artifact(jar) not in shipped]


def get_spark(settings: Settings) -> SparkSession:
    """Return the process's SparkSession with Delta Lake enabled, creating it on first use.

    Raises:
        ConfigError: the installed pyspark is not the version the jars were fetched for.
        MissingJarsError: the jars were never fetched.
    """
    cfg = settings.platform.spark
    if pyspark.__version__ != cfg.version:
        raise ConfigError(
            f"config/platform.yaml: spark.version is {cfg.version} but pyspark {pyspark.__version__} "
            "is installed; the Kafka-source jar must match pyspark exactly"
        )
    # Python workers must run this interpreter (the virtualenv), not the first python3 on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    warehouse = settings.platform.state_dir / "spark-warehouse"
    local_dir = settings.platform.state_dir / "spark-tmp"
    local_dir.mkdir(parents=True, exist_ok=True)
    builder = (
        SparkSession.builder.master(cfg.master)
        .appName(cfg.app_name)
        .config("spark.jars", ",".join(str(j) for j in extra_jars(settings)))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.local.dir", str(local_dir))
        .config("spark.ui.enabled", str(cfg.ui_enabled).lower())
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        # nanosecond Parquet timestamps (pandas' default) load as longs; the file source converts them
        .config("spark.sql.legacy.parquet.nanosAsLong", "true")
    )
    if cfg.driver_host:  # by default loopback: no network lookups of the host name
        builder = builder.config("spark.driver.host", cfg.driver_host).config("spark.driver.bindAddress", cfg.driver_host)
    for key, value in cfg.conf.items():  # the deployment's own properties (platform.yaml spark.conf)
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
