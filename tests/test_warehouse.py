"""The warehouse against the real PostgreSQL: migrations, roles, loads, reconciliation, bad input."""

from __future__ import annotations

import uuid

import pandas as pd
from deltalake import DeltaTable
import pyarrow as pa
import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from pipelines.lake import tables as T
from pipelines.lake.rows import arrow_schema, write_frame
from tests.warehousekit import fill_lake, small_settings
from warehouse import db
from warehouse import load as L
from warehouse.schema import API_SCHEMA, SCHEMA, ApiBase, Base

pytestmark = pytest.mark.services


@pytest.fixture
def admin(services):
    engine = create_engine(db.url(services, "admin"), isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def test_migrations_upgrade_an_empty_database_to_the_models_and_downgrade_it(services, admin) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    name = f"migration_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = db.url(services, "admin").rsplit("/", 1)[0] + f"/{name}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(db.alembic_config(services, conn), "head")
        with engine.connect() as conn:
            assert sorted(inspect(conn).get_table_names(schema=SCHEMA)) == sorted(t.name for t in Base.metadata.sorted_tables)
            for metadata, schema in ((Base.metadata, SCHEMA), (ApiBase.metadata, API_SCHEMA)):
                diff = compare_metadata(MigrationContext.configure(conn, opts={
                    "include_schemas": True, "compare_type": True,
                    "include_name": lambda n, t, p, schema=schema: t != "schema" or n == schema}), metadata)
                assert diff == [], diff  # the migrations create exactly the models
            checks = conn.execute(text("SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                                       "WHERE n.nspname = 'dw' AND c.contype = 'c'")).scalar_one()
            fks = conn.execute(text("SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                                    "WHERE n.nspname = 'dw' AND c.contype = 'f'")).scalar_one()
            assert checks >= 15 and fks >= 40, (checks, fks)
        with engine.begin() as conn:
            command.downgrade(db.alembic_config(services, conn), "base")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM pg_namespace WHERE nspname IN ('dw', 'api')")).scalar_one() == 0
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))


def test_the_reporting_and_api_roles_only_read_and_every_role_needs_its_password(services) -> None:
    reporting = db.engine(services, "reporting")
    with reporting.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM dw.dim_date")).scalar_one() >= 0
        with pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text("INSERT INTO dw.dim_dataset (name) VALUES ('not-allowed')"))
    reporting.dispose()
    api = db.engine(services, "api")  # the API's role reads dw and the keys, and writes nothing
    with api.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api.api_key")).scalar_one() >= 0
        for statement in ("INSERT INTO dw.dim_dataset (name) VALUES ('not-allowed')",
                          "UPDATE api.api_key SET revoked_at = NULL"):
            with pytest.raises(ProgrammingError, match="permission denied"):
                conn.execute(text(statement))
            conn.rollback()
    api.dispose()
    pg = services.platform.postgres
    for role in ("loader", "reporting", "api"):
        wrong = create_engine(f"postgresql+psycopg2://{db.role_name(services, role)}:wrong@{pg.host}:{pg.port}/{pg.database}")
        with pytest.raises(OperationalError, match="password authentication failed"):
            wrong.connect()
        wrong.dispose()
    assert (services.platform.state_dir / "secrets" / "warehouse.json").stat().st_mode & 0o077 == 0


def _counts(engine, dataset: str) -> dict[str, int]:
    with engine.connect() as conn:
        key = conn.execute(text("SELECT dataset_key FROM dw.dim_dataset WHERE name = :n"), {"n": dataset}).scalar()
        return {t.name: conn.execute(text(f"SELECT count(*) FROM dw.{t.name} WHERE dataset_key = :k"), {"k": key}).scalar_one()
                for t in Base.metadata.sorted_tables if t.name.startswith("fact_")}


def _load_all(settings, engine, groups=tuple(L.GROUPS)) -> list[L.SliceLoad]:
    done = []
    for group in groups:
        done += L.load(settings, engine, L.GROUPS[group], L.slices(settings, L.GROUPS[group]))
    return done


def _reconcile_all(settings, engine) -> list[str]:
    return [p for g in L.GROUPS.values() for p in L.reconcile(settings, engine, g, L.slices(settings, g))]


def test_every_fact_loads_reconciles_and_a_rerun_replaces_exactly_its_slice(services, tmp_path) -> None:
    settings = small_settings(tmp_path / "lake")
    frames = fill_lake(settings)
    loader = db.engine(services, "loader")
    dataset = settings.data.dataset
    _load_all(settings, loader)
    first = _counts(loader, dataset)
    assert first == {"fact_daily_bar": 6, "fact_data_quality": 3 + 2, "fact_prediction": 36,
                     "fact_backtest_equity": 2 * 3, "fact_backtest_trade": 8, "fact_backtest_round_trip": 4,
                     "fact_backtest_metric": 6, "fact_backtest_rejection": 2, "fact_montecarlo_summary": 4,
                     "fact_montecarlo_fan": 18,
                     "fact_live_order": 3, "fact_live_rejection": 1, "fact_live_fill": 2, "fact_live_position": 2,
                     "fact_live_equity": 2}, first
    assert _reconcile_all(settings, loader) == []
    with loader.connect() as conn:
        day = conn.execute(text(
            "SELECT open, high, low, close, volume, bars FROM dw.fact_daily_bar b JOIN dw.dim_symbol s USING (symbol_key) "
            "JOIN dw.dim_dataset d USING (dataset_key) WHERE d.name = :n AND s.symbol = 'AAA' AND b.date_key = 20240130"),
            {"n": dataset}).one()
        src = frames["bars"].query("symbol == 'AAA' and date == '2024-01-30'").sort_values("ts")
        assert day == pytest.approx((src["open"].iloc[0], src["high"].max(), src["low"].min(), src["close"].iloc[-1],
                                     src["volume"].sum(), 3))
        rejection = conn.execute(text("SELECT limit_hit FROM dw.fact_live_rejection WHERE order_id = :o"),
                                 {"o": f"{dataset}-o2"}).scalar_one()
        assert rejection == "max_position"
        # each backtest run's strategy and parameters, as the run wrote them
        run = conn.execute(text("SELECT family, strategy, params, is_baseline FROM dw.dim_strategy WHERE name = 'lstm'")).one()
        assert run == ("lstm", "threshold", '{"long_threshold": 0.55}', False)
        refused = conn.execute(text(
            "SELECT r.limit_hit, r.quantity FROM dw.fact_backtest_rejection r JOIN dw.dim_strategy s USING (strategy_key) "
            "JOIN dw.dim_dataset d USING (dataset_key) WHERE d.name = :n AND s.name = 'always_up'"), {"n": dataset}).one()
        assert refused == ("max_position_notional", 25.0)
        model = conn.execute(text("SELECT oos_rows, oos_accuracy FROM dw.dim_model m JOIN dw.dim_dataset d USING "
                                  "(dataset_key) WHERE d.name = :n AND family = 'always_up'"), {"n": dataset}).one()
        assert model.oos_rows == 18 and model.oos_accuracy == pytest.approx(8 / 17)  # p_up 0.55: right on the ups

    _load_all(settings, loader)  # a re-run changes nothing
    assert _counts(loader, dataset) == first

    # a new backtest of one strategy replaces only that strategy's rows
    trades = frames["backtest_trades"][1].iloc[:2]
    write_frame(T.BACKTEST_TRADES, settings, trades.assign(strategy="lstm"), mode="overwrite")
    write_frame(T.BACKTEST_TRADES, settings, frames["backtest_trades"][0], mode="append")
    L.load(settings, loader, L.BACKTEST_SPECS, [L.Slice(dataset, "strategy", "lstm")])
    after = _counts(loader, dataset)
    assert after["fact_backtest_trade"] == 4 + 2 and after["fact_backtest_round_trip"] == 2 + 0
    assert _reconcile_all(settings, loader) == []
    loader.dispose()


@pytest.mark.parametrize("drift", ["added", "renamed", "retyped"])
def test_a_drifted_source_schema_fails_naming_table_and_column_and_keeps_the_warehouse(services, tmp_path, drift) -> None:
    settings = small_settings(tmp_path / "lake")
    frames = fill_lake(settings)
    loader = db.engine(services, "loader")
    _load_all(settings, loader, ["backtests"])
    before = _counts(loader, settings.data.dataset)
    trades = pd.concat(frames["backtest_trades"], ignore_index=True)
    schema = arrow_schema(T.BACKTEST_TRADES)
    if drift == "added":
        trades["venue"], schema = "paper", schema.append(pa.field("venue", pa.string()))
        column = "venue"
    elif drift == "renamed":
        trades = trades.rename(columns={"price": "fill_price"})
        schema = pa.schema([pa.field("fill_price", f.type) if f.name == "price" else f for f in schema])
        column = "price"
    else:
        trades["quantity"] = trades["quantity"].astype(str)
        schema = pa.schema([pa.field("quantity", pa.string()) if f.name == "quantity" else f for f in schema])
        column = "quantity"
    write_frame(T.BACKTEST_TRADES, settings, trades, schema=schema)
    with pytest.raises(L.LoadError, match=rf"gold/backtest_trades .*column '{column}'"):
        _load_all(settings, loader, ["backtests"])
    assert _counts(loader, settings.data.dataset) == before
    loader.dispose()


def test_a_missing_source_partition_fails_and_the_month_stays_loaded(services, tmp_path) -> None:
    settings = small_settings(tmp_path / "lake")
    frames = fill_lake(settings)
    loader = db.engine(services, "loader")
    _load_all(settings, loader, ["bars"])
    before = _counts(loader, settings.data.dataset)
    write_frame(T.SILVER_BARS, settings, frames["bars"].query("date < '2024-02-01'"))  # February's partition is gone
    with pytest.raises(L.LoadError, match=r"silver/bars: partition month=2024-02 .* is missing.*holds 2 rows"):
        L.load(settings, loader, L.RESEARCH_MONTHLY, [L.Slice(settings.data.dataset, "month", "2024-02")])
    assert _counts(loader, settings.data.dataset) == before
    loader.dispose()


def test_copy_turns_nan_and_inf_into_null(services, tmp_path) -> None:
    settings = small_settings(tmp_path / "lake")
    fill_lake(settings)
    loader = db.engine(services, "loader")
    _load_all(settings, loader, ["backtests"])
    with loader.connect() as conn:
        value = conn.execute(text(
            "SELECT value FROM dw.fact_backtest_metric m JOIN dw.dim_dataset d USING (dataset_key) "
            "WHERE d.name = :n AND metric = 'profit_factor' LIMIT 1"), {"n": settings.data.dataset}).scalar_one()
    assert value is None
    loader.dispose()


def test_warehouse_benchmark_short_version(services, shared_data, tmp_path) -> None:
    """The benchmark's short run: both loads measured against a plain COPY of the same rows, reconciled."""
    import json

    from benchmarks import warehouse_load

    assert warehouse_load.main(["--short", "--out", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "warehouse_load_short.json").read_text())["figures"]
    for part in ("bars", "predictions"):
        assert figures[part]["reconciled"], figures[part]["differences"]
        assert figures[part]["rows"] == figures[part]["plain_copy"]["rows"] > 0
        assert figures[part]["rows_per_second"] > 0 and figures[part]["ratio_to_plain_copy"] > 0
    assert figures["data"]["symbols"] == 30


def test_the_live_load_takes_new_dates_and_the_newest_again_not_the_finished_ones(services, tmp_path) -> None:
    settings = small_settings(tmp_path / "lake")
    fill_lake(settings)
    write_frame(T.LIVE_EQUITY, settings, pd.DataFrame({
        "ts": [pd.Timestamp("2024-01-31 20:00", tz="UTC")], "cash": 100_000.0, "equity": 100_000.0,
        "peak_equity": 100_000.0, "gross_exposure": 0.0, "realized_pnl": 0.0, "fees": 0.0, "date": "2024-01-31"}),
          mode="append")
    loader = db.engine(services, "loader")
    assert [p.value for p in L.live_slices(settings, loader)] == ["2024-01-31", "2024-02-01"]  # nothing loaded yet
    L.load(settings, loader, L.LIVE_SPECS, L.live_slices(settings, loader))
    assert [p.value for p in L.live_slices(settings, loader)] == ["2024-02-01"]  # the newest may still grow
    write_frame(T.LIVE_EQUITY, settings, pd.DataFrame({
        "ts": [pd.Timestamp("2024-02-02 15:00", tz="UTC")], "cash": 100_005.0, "equity": 100_005.0,
        "peak_equity": 100_005.0, "gross_exposure": 0.0, "realized_pnl": 6.0, "fees": 1.0, "date": "2024-02-02"}),
          mode="append")
    assert [p.value for p in L.live_slices(settings, loader)] == ["2024-02-01", "2024-02-02"]
    L.load(settings, loader, L.LIVE_SPECS, L.live_slices(settings, loader))
    assert [p.value for p in L.live_slices(settings, loader)] == ["2024-02-02"]
    assert _counts(loader, settings.data.dataset)["fact_live_equity"] == 4
    assert L.reconcile(settings, loader, L.LIVE_SPECS, L.slices(settings, L.LIVE_SPECS)) == []
    # a fresh paper run replays 2024-01-31 with another result: that finished date is loaded again
    frame = DeltaTable(T.LIVE_EQUITY.path(settings)).to_pandas()
    write_frame(T.LIVE_EQUITY, settings, frame.assign(equity=frame["equity"].where(frame["date"] != "2024-01-31",
                                                                                     99_000.0)), mode="overwrite")
    assert [p.value for p in L.live_slices(settings, loader)] == ["2024-01-31", "2024-02-02"]
    L.load(settings, loader, L.LIVE_SPECS, L.live_slices(settings, loader))
    assert L.reconcile(settings, loader, L.LIVE_SPECS, L.slices(settings, L.LIVE_SPECS)) == []
    loader.dispose()
