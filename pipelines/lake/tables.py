"""The table catalog: every Delta table of the lake, declared once.

A :class:`Table` names its layer, its schema (the columns every writer must give, as a
Spark DDL string) and how its files are partitioned. Code that reads or writes a table
imports its declaration and asks it for the path; nothing else builds a lake path from
strings. Per-dataset tables live at ``<lake root>/<layer>/<dataset>/<name>``.

Layers: bronze (raw, as received), silver (validated; rejected rows in ``quarantine``),
gold (features, labels, predictions, backtests, decile long-short books, Monte Carlo). The streaming job's tables sit
in the same layers under ``live_`` names: bars and dead letters in silver, features and
predictions in gold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from config import Settings

Layer = Literal["bronze", "silver", "gold"]


@dataclass(frozen=True)
class Table:
    """One Delta table.

    Attributes:
        layer: bronze, silver or gold.
        name: the folder name under ``<layer>/<dataset>/``.
        schema: the columns writers give, in order (Spark DDL).
        partition_by: the partition columns (``month`` is derived from ``date`` on write).
        open_schema: whether writers may add columns beyond ``schema`` (the feature table's
            columns come from the feature recipe; bronze keeps whatever the source sent).
        per_dataset: False for platform tables that belong to no dataset.
    """

    layer: Layer
    name: str
    schema: str
    partition_by: tuple[str, ...] = ()
    open_schema: bool = False
    per_dataset: bool = True

    def path(self, settings: Settings, dataset: str | None = None) -> str:
        """Where the table lives for ``dataset`` (default: the configured dataset)."""
        root = settings.platform.lake_root / self.layer
        if self.per_dataset:
            root = root / (dataset or settings.data.dataset)
        return str(Path(root) / self.name)

    @property
    def columns(self) -> list[str]:
        """The declared column names, in order."""
        return [part.strip().split()[0] for part in self.schema.split(",")]

    def conform(self, df: DataFrame) -> DataFrame:
        """``df`` with the declared columns first, cast to their declared types.

        Raises:
            ValueError: a declared column is missing, or (closed schemas) an undeclared one is
                present; the message names the table and the columns.
        """
        types = dict(part.strip().split(None, 1) for part in self.schema.split(","))
        missing = [c for c in types if c not in df.columns]
        extra = [c for c in df.columns if c not in types and c not in self.partition_by]
        if missing or (extra and not self.open_schema):
            raise ValueError(f"table {self.layer}/{self.name}: missing columns {missing}, undeclared columns {extra}"
                             f" (declared: {self.schema})")
        rest = [F.col(c) for c in df.columns if c not in types]
        return df.select(*[F.col(c).cast(t).alias(c) for c, t in types.items()], *rest)


TICK_SCHEMA = ("symbol string, ts timestamp, seq long, price double, size double, bid double, ask double, "
               "side string, source string")
SOURCE_BAR_SCHEMA = ("symbol string, ts timestamp, open double, high double, low double, close double, "
                     "volume double, adj_close double")
BAR_SCHEMA = ("symbol string, ts timestamp, interval string, open double, high double, low double, close double, "
              "volume double, vwap double, trades long")
KEY_SCHEMA = "symbol string, ts timestamp, date string"

# bronze: raw as received (sources may add columns, e.g. files' source_file)
BRONZE_TICKS = Table("bronze", "ticks", f"{TICK_SCHEMA}, date string, ingested_at timestamp", ("month",),
                     open_schema=True)
BRONZE_BARS = Table("bronze", "bars", f"{SOURCE_BAR_SCHEMA}, date string, ingested_at timestamp", ("month",),
                    open_schema=True)
SOURCE_FACTS = Table("bronze", "source_facts", "fact string, value double, source string, written_at timestamp")

# silver: validated bars and every rejected row with its reasons
SILVER_BARS = Table("silver", "bars", f"{BAR_SCHEMA}, date string", ("month",))
QUARANTINE = Table("silver", "quarantine", "table string, symbol string, ts timestamp, date string, reason string, "
                                           "record string, quarantined_at timestamp", ("month",))

# gold: research results
FEATURES = Table("gold", "features", KEY_SCHEMA, ("month",), open_schema=True)  # + one double per feature
LABELS = Table("gold", "labels", f"{KEY_SCHEMA}, fwd_return double, direction double", ("month",))
PREDICTIONS = Table("gold", "predictions", "symbol string, ts timestamp, direction double, fwd_return double, "
                                           "fold long, p_up double, expected_return double, model string, "
                                           "run_id string, date string", ("model",))
BACKTEST_TRADES = Table("gold", "backtest_trades", "t long, ts timestamp, symbol string, quantity double, "
                                                   "price double, cost double, decision_close double, strategy string",
                        ("strategy",))
BACKTEST_EQUITY = Table("gold", "backtest_equity", "ts timestamp, equity double, returns double, "
                                                   "gross_exposure double, periods_per_year double, strategy string",
                        ("strategy",))
BACKTEST_POSITIONS = Table("gold", "backtest_positions", "ts timestamp, symbol string, shares double, value double, "
                                                         "strategy string", ("strategy",))
BACKTEST_METRICS = Table("gold", "backtest_metrics", "scope string, metric string, value double, "
                                                     "strategy_name string, params string, model string, strategy string",
                         ("strategy",))
BACKTEST_REJECTIONS = Table("gold", "backtest_rejections", "ts timestamp, symbol string, quantity double, "
                                                           "price double, limit_hit string, reason string, strategy string",
                            ("strategy",))
LONG_SHORT = Table("gold", "long_short", "ts timestamp, n long, n_long long, n_short long, long_return double, "
                                         "short_return double, gross double, turnover double, cost double, "
                                         "net double, strategy string", ("strategy",))
MONTECARLO_SUMMARY = Table("gold", "montecarlo_summary", "statistic string, mean double, low double, median double, "
                                                         "high double, simulations long, method string, "
                                                         "confidence double, risk_of_ruin double, strategy string",
                           ("strategy",))
MONTECARLO_FAN = Table("gold", "montecarlo_fan", "step long, ts timestamp, paths long, q05 double, q25 double, "
                                                 "q50 double, q75 double, q95 double, strategy string", ("strategy",))

# live: the streaming job's tables, appended once per micro-batch (Delta txnAppId/txnVersion)
LIVE_BARS = Table("silver", "live_bars", f"{BAR_SCHEMA}, date string, last_append timestamp, batch_id long", ("date",))
LIVE_FEATURES = Table("gold", "live_features", f"{KEY_SCHEMA}, batch_id long", ("date",), open_schema=True)
LIVE_PREDICTIONS = Table("gold", "live_predictions", "symbol string, ts timestamp, model string, model_version string, "
                                                "family string, p_up double, expected_return double, "
                                                "last_append timestamp, bar_ready timestamp, scored_at timestamp, "
                                                "batch_id long, date string", ("date",))
LIVE_DEAD_LETTERS = Table("silver", "live_dead_letters", "topic string, partition int, offset long, kafka_ts timestamp, "
                                                  "key binary, value binary, reason string, symbol string, "
                                                  "ts timestamp, batch_id long, dead_lettered_at timestamp, "
                                                  "date string", ("date",))
# live trading: orders from the stream's trader (Spark, once per micro-batch); fills, positions and
# equity from the portfolio service (delta-rs, :mod:`pipelines.lake.rows`, from its Redis journal)
LIVE_ORDERS = Table("gold", "live_orders", "order_id string, ts timestamp, symbol string, side string, qty double, "
                                          "order_type string, price double, decision_volume double, strategy string, "
                                          "model_version string, status string, limit_hit string, reason string, "
                                          "batch_id long, date string", ("date",))
LIVE_FILLS = Table("gold", "live_fills", "fill_id string, order_id string, ts timestamp, symbol string, side string, "
                                        "qty double, price double, fee double, applied_at timestamp, date string",
                   ("date",))
LIVE_POSITIONS = Table("gold", "live_positions", "ts timestamp, symbol string, qty double, avg_px_open double, "
                                                "realized_pnl double, unrealized_pnl double, last_px double, "
                                                "date string", ("date",))
LIVE_EQUITY = Table("gold", "live_equity", "ts timestamp, cash double, equity double, peak_equity double, "
                                          "gross_exposure double, realized_pnl double, fees double, date string",
                    ("date",))

# the platform smoke run's table (belongs to no dataset)
SMOKE_PRICES = Table("bronze", "smoke_prices", "symbol string, ts timestamp, close double, ret double, date string",
                     ("date",), per_dataset=False)

CATALOG: tuple[Table, ...] = (BRONZE_TICKS, BRONZE_BARS, SOURCE_FACTS, SILVER_BARS, QUARANTINE, FEATURES, LABELS,
                              PREDICTIONS, BACKTEST_TRADES, BACKTEST_EQUITY, BACKTEST_POSITIONS, BACKTEST_METRICS,
                              BACKTEST_REJECTIONS, LONG_SHORT,
                              MONTECARLO_SUMMARY, MONTECARLO_FAN, LIVE_BARS, LIVE_FEATURES, LIVE_PREDICTIONS, LIVE_DEAD_LETTERS,
                              LIVE_ORDERS, LIVE_FILLS, LIVE_POSITIONS, LIVE_EQUITY, SMOKE_PRICES)


def bronze(kind: Literal["ticks", "bars"]) -> Table:
    """The bronze table a source of ``kind`` lands in."""
    return BRONZE_TICKS if kind == "ticks" else BRONZE_BARS
