"""The market-data record on Kafka, and how the stream reads and validates it.

One tick per message, keyed by symbol (so a symbol's ticks stay in order on one partition),
value a compact JSON object::

    {"v":1,"symbol":"SYN000","ts":"2024-01-31T14:30:02.123456Z","seq":812,"price":101.25,
     "size":40.0,"bid":101.23,"ask":101.27,"side":"buy","source":"synthetic"}

Why JSON and not Avro: no schema registry runs here, every tool (``kafka-console-consumer``,
the dead-letter topic's readers, a browser) can read it, and a producer in any language can
write it without a generated class. ``v`` is the schema version; a record with another
version is dead-lettered, never guessed at. Parsing costs more than Avro would; the stream
benchmark measures how much (``benchmarks/stream_throughput.py``).

Required: ``v``, ``symbol``, ``ts`` (ISO 8601, UTC), ``seq`` (per-symbol sequence number),
``price``. Optional: ``size``, ``bid``, ``ask``, ``side``, ``source``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import orjson
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from config.schemas.data import QualitySettings
from pipelines.ingest.row_rules import tick_rules

SCHEMA_VERSION = 1
REQUIRED = ("v", "symbol", "ts", "seq", "price")
TYPES = {"v": "int", "symbol": "string", "ts": "timestamp", "seq": "bigint", "price": "double",
         "size": "double", "bid": "double", "ask": "double", "side": "string", "source": "string"}
TICK_COLUMNS = ["symbol", "ts", "seq", "price", "size", "bid", "ask", "side", "source"]
# every field read as text first, so a wrong type can be named with its value
_TEXT_SCHEMA = ", ".join(f"`{name}` string" for name in TYPES) + ", `_corrupt` string"


def encode(ticks: pd.DataFrame) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) pairs for ticks with the tick contract's columns (``ts`` UTC).

    Floats are written with the shortest text that reads back to the same double, so a
    price survives the trip through Kafka bit for bit.
    """
    ts = pd.to_datetime(ticks["ts"])
    ts = ts.dt.tz_convert("UTC").dt.tz_localize(None) if ts.dt.tz is not None else ts
    stamps = np.datetime_as_string(ts.to_numpy().astype("datetime64[us]"), unit="us")
    columns = [ticks[c].astype(object).where(ticks[c].notna(), None).tolist() for c in TICK_COLUMNS]
    columns[1] = [f"{s}Z" for s in stamps]
    for row in zip(*columns):
        record = {"v": SCHEMA_VERSION, **dict(zip(TICK_COLUMNS, row))}
        yield str(row[0]).encode(), orjson.dumps(record)


def _shown(value: Column) -> Column:
    """``'value'`` for a reason text, cut at 40 characters."""
    return F.concat(F.lit("'"), F.substring(value, 1, 40), F.lit("'"))


def parse(raw: DataFrame, quality: QualitySettings) -> DataFrame:
    """Kafka rows -> typed tick columns, ``reason`` (NULL for a good tick, else every problem
    joined by ``; ``) and the Kafka coordinates (``partition``, ``offset``, ``kafka_ts``,
    ``key``, ``value``) a dead letter keeps.

    Problems: ``malformed JSON``, ``unknown schema version: '<v>'``, ``missing <field>``,
    ``wrong type <field>: '<value>'``, then the silver tick rules (non-positive price or size,
    crossed quote, timestamp in the future) on the typed values.
    """
    text = F.col("value").cast("string")
    parsed = raw.select(
        "key", "value", "partition", "offset", F.col("timestamp").alias("kafka_ts"),
        F.from_json(text, _TEXT_SCHEMA, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"}).alias("j"),
    )
    # typed values and the raw text in their own columns first: the checks below read each many
    # times, and Spark keeps a column computed once where it would copy an inlined expression
    fields = parsed.select(
        "key", "value", "partition", "offset", "kafka_ts",
        (F.col("j").isNull() | F.col("j._corrupt").isNotNull()).alias("_malformed"),
        *[F.col(f"j.`{name}`").alias(f"_raw_{name}") for name in TYPES],
        *[F.col(f"j.`{name}`").try_cast(kind).alias(name) for name, kind in TYPES.items()])
    malformed = F.col("_malformed")
    typed = {name: F.col(name) for name in TYPES}
    checks: list[tuple[Column, Column]] = [(malformed, F.lit("malformed JSON"))]
    for name in TYPES:
        raw_value = F.col(f"_raw_{name}")
        if name in REQUIRED:
            checks.append((~malformed & raw_value.isNull(), F.lit(f"missing {name}")))
        checks.append((~malformed & raw_value.isNotNull() & typed[name].isNull(),
                       F.concat(F.lit(f"wrong type {name}: "), _shown(raw_value))))
    checks.append((~malformed & (typed["v"] != SCHEMA_VERSION),
                   F.concat(F.lit("unknown schema version: "), _shown(F.col("_raw_v")))))
    checks.append((~malformed & (F.trim(typed["symbol"]) == ""), F.lit("missing symbol")))
    # the silver rules run on ticks whose fields parsed (a missing field is reported once, above)
    parsed_ok = ~malformed & (typed["v"] == SCHEMA_VERSION) & (F.trim(typed["symbol"]) != "")
    for name in TYPES:
        if name != "v":
            parsed_ok = parsed_ok & (typed[name].isNotNull() if name in REQUIRED
                                     else F.col(f"_raw_{name}").isNull() | typed[name].isNotNull())
    checks += [(parsed_ok & cond, F.lit(text)) for cond, text in tick_rules(quality)]
    # every message that applies, joined (concat_ws skips the NULLs of the checks that pass)
    messages = F.concat_ws("; ", *[F.when(F.coalesce(cond, F.lit(False)), text) for cond, text in checks])
    staged = fields.select("key", "value", "partition", "offset", "kafka_ts", *TICK_COLUMNS,
                           messages.alias("_reasons"))
    reason = F.when(F.col("_reasons") != "", F.col("_reasons"))
    return staged.withColumn("reason", reason).drop("_reasons")
