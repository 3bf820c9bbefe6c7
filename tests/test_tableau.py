"""The Tableau files: valid against Tableau's published workbook schema, written as Desktop writes
them (one test per convention), every field a sheet uses exists, every physical field is a
warehouse column, the .hyper extract equals the warehouse, and each sheet's marks, computed on
the warehouse and the extract, match figures computed independently from the lake's frames."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from config import Settings
from tableau import documents as D
from warehouse.schema import SCHEMA, Base

USER = "{http://www.tableausoftware.com/xml/user}"


@pytest.fixture(scope="module")
def built(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tableau")
    D.build(settings, out)
    return out


def test_each_data_source_connects_to_the_configured_warehouse_as_the_reporting_role(settings, built) -> None:
    from tableaudocumentapi import Datasource

    pg = settings.platform.postgres
    files = sorted(built.glob("*.tds"))
    assert {p.stem for p in files} == {s.name for s in D.stars(settings)}
    for path in files:
        source = Datasource.from_file(str(path))
        (conn,) = source.connections
        assert (conn.dbclass, conn.server, conn.port, conn.dbname, conn.username) == \
            ("postgres", pg.host, str(pg.port), pg.database, settings.platform.warehouse.reporting_role), path.name
        assert all("password" not in c.attrib for c in etree.parse(str(path)).iter("connection"))  # Tableau asks
        assert source.fields, path.name


def test_every_physical_field_is_a_warehouse_column_and_joins_use_the_keys(settings, built) -> None:
    columns = {(t.name, c.name) for t in Base.metadata.sorted_tables for c in t.columns}
    for path in built.glob("*.tds"):
        root = etree.parse(str(path)).getroot()
        for record in root.iter("metadata-record"):
            parent = record.findtext("parent-name").strip("[]")
            assert (parent, record.findtext("remote-name")) in columns, (path.name, parent, record.findtext("remote-name"))
        for relation in root.iter("relation"):
            if relation.get("type") == "table":
                assert relation.get("table") == f"[{SCHEMA}].[{relation.get('name')}]"
        for clause in root.iter("clause"):
            left, right = (e.get("op") for e in clause.iter("expression") if e.get("op") != "=")
            assert left.split(".")[1] == right.split(".")[1]
            assert left.split(".")[1].endswith("_key]") or left.split(".")[1] == "[order_id]"  # a fill's order


def _fields(source) -> set[str]:
    return {c.get("name") for c in source.findall("column")}


def test_every_field_a_sheet_or_calculation_uses_exists(settings, built) -> None:
    from tableaudocumentapi import Workbook

    for name in ("quantlake.twb", "quantlake_extract.twb"):
        path = built / name
        book = Workbook(str(path))
        assert book.worksheets == [s.name for s in D.sheets(settings)]
        assert {d.name for d in book.datasources} == {s.name for s in D.stars(settings)}
        root = etree.parse(str(path)).getroot()
        sources = {d.get("name"): d for d in root.find("datasources")}
        for ws in root.iter("worksheet"):
            deps = ws.find(".//datasource-dependencies")
            source = sources[deps.get("datasource")]
            declared = _fields(source)
            instances = set()
            for inst in deps.findall("column-instance"):
                assert inst.get("column") in declared, (ws.get("name"), inst.get("column"))
                instances.add(f"[{deps.get('datasource')}].{inst.get('name')}")
            shelves = " ".join(filter(None, [ws.findtext(".//rows"), ws.findtext(".//cols")]))
            used = set(re.findall(r"\[[^\]]+\]\.\[[^\]]+\]", shelves))
            used |= {e.get("column") for e in ws.iter("color")} | {e.get("column") for e in ws.iter("text")}
            used |= {f.get("column") for f in ws.iter("filter")}
            assert used and used <= instances, (ws.get("name"), used - instances)
        for source in sources.values():
            declared = _fields(source)
            for calc in source.iter("calculation"):
                for ref in re.findall(r"\[[^\]]+\]", calc.get("formula")):
                    assert ref in declared, (source.get("name"), calc.get("formula"), ref)
        if name == "quantlake_extract.twb":
            connections = {c.get("class") for c in root.iter("connection")} - {"federated"}
            assert connections == {"hyper"} and D.HYPER_FILE in path.read_text()


@pytest.mark.services
def test_the_extract_reopens_with_the_warehouse_s_row_counts_and_sums(services, tmp_path) -> None:
    from tableau.hyper import build_extract, extract_figures
    from tests.warehousekit import fill_lake, small_settings
    from warehouse import db
    from warehouse import load as L
    from warehouse.report import numeric_columns, numeric_sums, tables

    small = small_settings(tmp_path / "lake")
    fill_lake(small)
    for group in L.GROUPS.values():
        L.load(small, db.engine(services, "loader"), group, L.slices(small, group))
    reporting = db.engine(services, "reporting")
    path = tmp_path / "out" / D.HYPER_FILE
    counts = build_extract(reporting, path, tmp_path / "hyper-logs")
    assert set(counts) == set(tables()) and counts["fact_live_order"] >= 3
    numeric = {t: numeric_columns(t) for t in tables()}
    found = extract_figures(path, tmp_path / "hyper-logs", numeric)
    for table in tables():
        assert found[table] == pytest.approx(numeric_sums(reporting, table), rel=1e-9), table
    reporting.dispose()


# ---------------------------------------------------------------- the schema and Desktop's conventions


def test_every_document_validates_against_tableau_s_schema_but_for_the_documented_gaps(settings, built,
                                                                                      tableau_schema) -> None:
    from tableau.validate import KNOWN_GAPS, schema_errors, schema_version

    assert set(KNOWN_GAPS) == {"explain-data"}  # each gap by name, with its reason in tableau/validate.py
    documents = sorted(built.glob("*.tds")) + sorted(built.glob("*.twb"))
    assert len(documents) == len(D.stars(settings)) + 2
    for path in documents:
        errors = schema_errors(path, tableau_schema)
        assert [str(e) for e in errors if e.gap is None] == [], path.name
        assert {e.gap for e in errors} <= set(KNOWN_GAPS), path.name
    for name in ("quantlake.twb", "quantlake_extract.twb"):
        root = etree.parse(str(built / name)).getroot()
        assert root.get("version") == root.get("original-version") == schema_version(tableau_schema) == "26.1"


def test_a_real_defect_is_reported_and_not_taken_for_a_gap(built, tableau_schema, tmp_path) -> None:
    from tableau.validate import defects

    root = etree.parse(str(built / "quantlake.twb")).getroot()
    root.find("worksheets/worksheet/simple-id").getparent().remove(root.find("worksheets/worksheet/simple-id"))
    broken = tmp_path / "broken.twb"
    etree.ElementTree(root).write(str(broken))
    found = defects(broken, tableau_schema)
    assert len(found) == 1 and "simple-id" in found[0].message


def _book(built: Path) -> etree._Element:
    return etree.parse(str(built / "quantlake.twb")).getroot()


def _worksheet(root, name: str):
    return next(ws for ws in root.iter("worksheet") if ws.get("name") == name)


def test_shelves_nest_dimensions_with_a_slash_and_add_measures_right_nested(built) -> None:
    root = _book(built)
    table = _worksheet(root, "Monte Carlo fan").find("table")
    assert table.findtext("rows") == ("([montecarlo_fan].[sum:q05:qk] + ([montecarlo_fan].[sum:q50:qk] + "
                                      "[montecarlo_fan].[sum:q95:qk]))")
    table = _worksheet(root, "Backtest risk (VaR)").find("table")
    assert table.findtext("cols") == "([backtest_metrics].[none:metric:nk] / [backtest_metrics].[sum:value:qk])"
    table = _worksheet(root, "Strategies compared").find("table")
    assert table.findtext("rows") == "([backtest_metrics].[none:strategy:nk] / [backtest_metrics].[none:family:nk])"
    for ws in root.iter("worksheet"):
        for shelf in ("rows", "cols"):
            expression = ws.find("table").findtext(shelf) or ""
            parts = re.split(r" / ", expression.strip("()")) if " / " in expression else [expression]
            for dimension in parts[:-1]:  # every operand of "/" but the last is one dimension
                assert re.fullmatch(r"\(?\[[^\]]+\]\.\[(none|tdy|tmn):[^\]]+\]", dimension), (ws.get("name"), expression)
            for measure in re.findall(r"\[[^\]]+\]\.\[(\w+):[^\]]+\]", parts[-1]) if "+" in parts[-1] else []:
                assert measure in ("sum", "avg", "usr", "max", "min"), (ws.get("name"), expression)


AGGREGATE = re.compile(r"^\s*(SUM|AVG|MIN|MAX|COUNT|COUNTD|CORR|COVAR|MEDIAN|STDEV|VAR|ATTR)\(", re.I)


def test_the_user_derivation_only_on_aggregate_calculations(settings, built) -> None:
    root = _book(built)
    formulas = {(d.get("name"), c.get("name")): c.find("calculation").get("formula")
                for d in root.find("datasources") for c in d.findall("column") if c.find("calculation") is not None}
    seen = set()
    for ws in root.iter("worksheet"):
        deps = ws.find(".//datasource-dependencies")
        for inst in deps.findall("column-instance"):
            formula = formulas.get((deps.get("datasource"), inst.get("column")))
            if formula is None:
                assert inst.get("derivation") != "User", (ws.get("name"), inst.get("name"))
                continue
            seen.add(inst.get("derivation") == "User")
            assert (inst.get("derivation") == "User") == bool(AGGREGATE.match(formula)), (ws.get("name"), formula)
            assert inst.get("name").startswith("[usr:") == (inst.get("derivation") == "User")
    assert seen == {True, False}  # both kinds are on sheets


def test_every_filter_names_its_members_and_is_sliced(settings, built) -> None:
    root = _book(built)
    for ws in root.iter("worksheet"):
        view = ws.find("table/view")
        sliced = [c.text for c in view.findall("slices/column")]
        filters = view.findall("filter")
        assert [f.get("column") for f in filters] == sliced, ws.get("name")
        for f in filters:
            level = f.get("column").split("].", 1)[1]
            members = [g for g in f.iter("groupfilter") if g.get("function") == "member"]
            assert members and all(g.get("level") == level for g in members), (ws.get("name"), level)
            top = f.find("groupfilter")
            assert top.get(f"{USER}ui-enumeration") == "inclusive" and top.get(f"{USER}ui-marker") == "enumerate"
        # every sheet keeps the configured dataset; none adds up every dataset of the warehouse
        assert any(g.get("member") == f'"{settings.data.dataset}"' for g in view.iter("groupfilter")), ws.get("name")

    def members(sheet: str, field: str) -> list[str]:
        view = _worksheet(root, sheet).find("table/view")
        f = next(f for f in view.findall("filter") if f":{field}:" in f.get("column"))
        return [g.get("member") for g in f.iter("groupfilter") if g.get("function") == "member"]

    assert members("Live positions and P&L", "is_latest") == ["true"]
    assert members("Backtest risk (VaR)", "metric") == [f'"{m}"' for m in D.VAR_METRICS]
    assert members("Strategies compared", "scope") == ['"all"']


def test_dependencies_carry_every_column_their_calculations_read(built) -> None:
    root = _book(built)
    for ws in root.iter("worksheet"):
        deps = ws.find(".//datasource-dependencies")
        declared = {c.get("name") for c in deps.findall("column")}
        for calc in deps.iter("calculation"):
            for name in D.referenced(calc.get("formula")):
                assert f"[{name}]" in declared, (ws.get("name"), calc.get("formula"), name)
        assert {i.get("column") for i in deps.findall("column-instance")} <= declared
    deps = _worksheet(root, "Slippage by symbol").find(".//datasource-dependencies")
    assert {"[quantity]", "[price]", "[cost]", "[decision_close]"} <= {c.get("name") for c in deps.findall("column")}
    deps = _worksheet(root, "Model accuracy and IC").find(".//datasource-dependencies")
    assert {"[hit]", "[expected_return]", "[fwd_return]"} <= {c.get("name") for c in deps.findall("column")}


def test_each_dashboard_tiles_its_sheets_inside_one_root_layout_zone(built) -> None:
    root = _book(built)
    boards = root.findall("dashboards/dashboard")
    assert [b.get("name") for b in boards] == list(D.DASHBOARDS)
    placed = set()
    for board in boards:
        (top,) = board.find("zones").findall("zone")
        assert top.get("type-v2") == "layout-basic"
        assert (top.get("x"), top.get("y"), top.get("w"), top.get("h")) == ("0", "0", "100000", "100000")
        inner = top.findall("zone")
        assert [z.get("name") for z in inner] == list(D.DASHBOARDS[board.get("name")])
        ids = [z.get("id") for z in board.iter("zone")]
        assert len(ids) == len(set(ids))
        for z in inner:
            x, y, w, h = (int(z.get(k)) for k in "xywh")
            assert 0 <= x and 0 <= y and x + w <= 100000 and y + h <= 100000
        area = sum(int(z.get("w")) * int(z.get("h")) for z in inner)
        assert area == pytest.approx(100000 * 100000, rel=0.01)  # tiled: no gap, no overlap
        placed |= {z.get("name") for z in inner}
    assert placed == {ws.get("name") for ws in root.iter("worksheet")}
    windows = root.find("windows")
    assert all(w.find("cards") is not None or w.find("viewpoints") is not None for w in windows)
    assert all(w.find("simple-id") is not None for w in windows)


def test_metadata_records_carry_type_codes_and_a_default_aggregation(settings, built) -> None:
    types = {(t.name, c.name): c for t in Base.metadata.sorted_tables for c in t.columns}
    codes = {"small_integer": 2, "integer": 3, "big_integer": 20, "double": 5, "boolean": 11, "date": 133,
             "datetime": 135, "string": 129}  # OLE DB: DBTYPE_I2, I4, I8, R8, BOOL, DBDATE, DBTIMESTAMP, STR
    for path in built.glob("*.tds"):
        for record in etree.parse(str(path)).getroot().iter("metadata-record"):
            column = types[(record.findtext("parent-name").strip("[]"), record.findtext("remote-name"))]
            assert int(record.findtext("remote-type")) == codes[column.type.__visit_name__], \
                (path.name, column.name)
            assert record.findtext("aggregation") == D.DEFAULT_AGGREGATION[record.findtext("local-type")]


def test_publishing_builds_one_overwrite_per_data_source_then_the_extract_workbook(built) -> None:
    import tableauserverclient as tsc

    from config.errors import UserError
    from tableau.build import publish_requests

    requests = publish_requests(tsc, "project-1", built)
    assert [r.endpoint for r in requests] == ["datasources"] * len(list(built.glob("*.tds"))) + ["workbooks"]
    assert all(r.mode == tsc.Server.PublishMode.Overwrite and r.item.project_id == "project-1" for r in requests)
    assert requests[-1].path.name == "quantlake_extract.twb" and requests[-1].item.name == "quantlake"
    assert {r.item.name for r in requests[:-1]} == {p.stem for p in built.glob("*.tds")}
    with pytest.raises(UserError, match="tableau build"):
        publish_requests(tsc, "project-1", built / "nothing-here")


# ---------------------------------------------------------------- each sheet's marks


@pytest.mark.services
def test_each_sheet_draws_the_independently_computed_figures_on_warehouse_and_extract(services, tmp_path) -> None:
    import numpy as np
    import pandas as pd

    from tableau.build import write_previews
    from tableau.sheets import check_sheets, problems
    from tableau.hyper import build_extract
    from tests.warehousekit import fill_lake, small_settings
    from warehouse import db
    from warehouse import load as L

    small = small_settings(tmp_path / "lake")
    frames = fill_lake(small)
    for group in L.GROUPS.values():
        L.load(small, db.engine(services, "loader"), group, L.slices(small, group))
    reporting = db.engine(services, "reporting")
    extract = tmp_path / "out" / D.HYPER_FILE
    build_extract(reporting, extract, tmp_path / "hyper-logs")
    checks = {c.sheet.name: c for c in check_sheets(small, reporting, extract, tmp_path / "hyper-logs")}
    assert set(checks) == {s.name for s in D.sheets(small)}
    assert problems(list(checks.values()), live=True) == []  # every sheet draws, on both, the same marks
    rows = {name: c.rows for name, c in checks.items()}

    equity = pd.concat(frames["backtest_equity"])
    last = equity.sort_values("ts").groupby("strategy").tail(1).set_index("strategy")["equity"]
    drawn = rows["Equity vs benchmark"]
    final = drawn[drawn["tdy:date:qk"] == drawn["tdy:date:qk"].max()].set_index("none:name:nk")
    assert final["sum:equity:qk"].to_dict() == pytest.approx(last.to_dict())
    assert final["avg:benchmark_equity:qk"].tolist() == pytest.approx([last["always_up"]] * 2)  # always-up's

    preds = frames["predictions"].dropna(subset=["direction"])
    hit = ((preds["p_up"] > 0.5) == (preds["direction"] == 1.0)).astype(float)
    month = pd.to_datetime(preds["date"]).dt.to_period("M").dt.to_timestamp()
    expected = hit.groupby([month, preds["model"]]).mean()
    drawn = rows["Model accuracy and IC"].set_index(["tmn:date:qk", "none:family:nk"])["usr:accuracy:qk"]
    assert drawn.sort_index().tolist() == pytest.approx(expected.sort_index().tolist())
    assert rows["Model accuracy and IC"]["tmn:date:qk"].nunique() == 2  # January and February

    fan = pd.concat(frames["montecarlo_fan"])
    drawn = rows["Monte Carlo fan"]
    assert len(drawn) == len(fan)
    for q in ("q05", "q50", "q95"):
        assert drawn[f"sum:{q}:qk"].tolist() == pytest.approx(fan.sort_values(["step", "strategy"])[q].tolist())

    var = rows["Backtest risk (VaR)"]
    assert set(var["none:metric:nk"]) == {"var_historical"} and var["sum:value:qk"].tolist() == [0.01, 0.01]
    compared = rows["Strategies compared"]
    assert set(compared["none:metric:nk"]) == {"sharpe"} and compared["sum:value:qk"].tolist() == [1.2, 1.2]

    trades = pd.concat(frames["backtest_trades"])
    slip = 1e4 * (np.sign(trades["quantity"]) * (trades["price"] - trades["decision_close"])
                  + trades["cost"] / trades["quantity"].abs()) / trades["decision_close"]
    expected = slip.groupby(trades["symbol"]).mean()
    drawn = rows["Slippage by symbol"].groupby("none:symbol:nk")["avg:slippage_bps:qk"].mean()
    assert drawn.to_dict() == pytest.approx(expected.to_dict())

    fills = frames["fills"].merge(frames["orders"][["order_id", "price"]], on="order_id", suffixes=("", "_decided"))
    sign = np.where(fills["side"].str.upper() == "BUY", 1.0, -1.0)
    slip = 1e4 * (sign * (fills["price"] - fills["price_decided"]) + fills["fee"] / fills["qty"]) / fills["price_decided"]
    drawn = rows["Live fills vs decision"].set_index("none:symbol:nk")["avg:slippage_bps:qk"]
    assert drawn.to_dict() == pytest.approx(slip.groupby(fills["symbol"]).mean().to_dict())
    assert drawn["AAA"] == pytest.approx((25.0 + 1e4 * 0.15 / 101) / 2)  # bought 0.20 above, sold 0.10 above

    latest = rows["Live positions and P&L"].set_index("none:symbol:nk")
    assert latest.loc["AAA", "sum:qty:qk"] == 0.0 and latest.loc["AAA", "sum:total_pnl:qk"] == 6.0
    assert rows["Live equity and P&L"]["sum:equity:qk"].tolist() == [100_000.5, 100_005.0]
    quality = rows["Data quality"].set_index("none:reason:nk")["sum:rows:qk"]
    assert quality["price_spike"] == 2 and quality["negative_volume"] == 1

    previews = write_previews(small, list(checks.values()), tmp_path / "previews")
    assert len(previews) == len(checks) and all(p.stat().st_size > 5_000 for p in previews)
    reporting.dispose()


def test_an_empty_sheet_is_a_problem_unless_empty_is_what_its_data_means(settings) -> None:
    import pandas as pd

    from tableau.sheets import SheetCheck, problems

    by_name = {s.name: s for s in D.sheets(settings)}

    def empty(name: str) -> SheetCheck:
        sheet = by_name[name]
        return SheetCheck(sheet, pd.DataFrame(), None, sheet.source in D.LIVE_SOURCES)

    research, live, quality = empty("Equity vs benchmark"), empty("Live equity and P&L"), empty("Data quality")
    assert problems([research, live, quality]) == ["Equity vs benchmark: no marks on the warehouse"]
    assert problems([live, quality], live=True) == ["Live equity and P&L: no marks on the warehouse"]
    assert "no live run loaded yet" in live.line() and "nothing quarantined" in quality.line()
