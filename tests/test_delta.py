"""Delta Lake through the platform's Spark session: write, read, MERGE, time travel, partitions."""

from __future__ import annotations

from pathlib import Path

from pipelines import lake


def _rows(df) -> dict[int, str]:
    return {r["k"]: r["v"] for r in df.collect()}


def test_write_read_merge_time_travel(spark, lake_dir: Path) -> None:
    path = lake_dir / "kv"
    v0 = lake.overwrite(spark.createDataFrame([(1, "a"), (2, "b"), (3, "c")], "k INT, v STRING"), path)
    assert v0 == 0
    assert _rows(lake.read(spark, path)) == {1: "a", 2: "b", 3: "c"}

    v1 = lake.merge(spark.createDataFrame([(2, "B"), (4, "d")], "k INT, v STRING"), path, keys=["k"])
    assert v1 == 1
    assert _rows(lake.read(spark, path)) == {1: "a", 2: "B", 3: "c", 4: "d"}

    assert _rows(lake.read(spark, path, version=0)) == {1: "a", 2: "b", 3: "c"}
    assert lake.table_version(spark, path) == 1


def test_merge_is_idempotent(spark, lake_dir: Path) -> None:
    path = lake_dir / "kv"
    batch = spark.createDataFrame([(1, "x"), (2, "y")], "k INT, v STRING")
    lake.merge(batch, path, keys=["k"])
    lake.merge(batch, path, keys=["k"])
    assert lake.read(spark, path).count() == 2


def test_replace_range_replaces_exactly_its_days(spark, lake_dir: Path) -> None:
    path = lake_dir / "daily"
    schema = "date STRING, x DOUBLE"
    lake.replace_range(spark.createDataFrame([("2024-01-01", 1.0), ("2024-01-02", 2.0), ("2024-01-03", 3.0),
                                              ("2024-02-01", 4.0)], schema), path, "date", "2024-01-01", "2024-02-01")
    # re-run of one day inside January: its neighbours in the same month file stay
    lake.replace_range(spark.createDataFrame([("2024-01-02", 20.0)], schema), path, "date", "2024-01-02", "2024-01-02")
    lake.replace_range(spark.createDataFrame([("2024-01-02", 20.0)], schema), path, "date", "2024-01-02", "2024-01-02")
    got = sorted((r["date"], r["x"]) for r in lake.read(spark, path).collect())
    assert got == [("2024-01-01", 1.0), ("2024-01-02", 20.0), ("2024-01-03", 3.0), ("2024-02-01", 4.0)]
    assert sorted(p.name for p in path.glob("month=*")) == ["month=2024-01", "month=2024-02"]
