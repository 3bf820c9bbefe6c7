"""The Tableau files: documents parse with tableaudocumentapi, every field a sheet uses exists,
every physical field is a warehouse column, and the .hyper extract equals the warehouse."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lxml import etree

from config import Settings
from tableau import documents as D
from warehouse.schema import SCHEMA, Base


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
            assert left.split(".")[1] == right.split(".")[1] and left.split(".")[1].endswith("_key]")


def _fields(source) -> set[str]:
    return {c.get("name") for c in source.findall("column")}


def test_every_field_a_sheet_or_calculation_uses_exists(settings, built) -> None:
    from tableaudocumentapi import Workbook

    for name in ("quantlake.twb", "quantlake_extract.twb"):
        path = built / name
        book = Workbook(str(path))
        assert book.worksheets == [s.name for s in D.SHEETS]
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
            shelves = " / ".join(filter(None, [ws.findtext(".//rows"), ws.findtext(".//cols")]))
            used = set(re.findall(r"\[[^\]]+\]\.\[[^\]]+\]", shelves))
            used |= {e.get("column") for e in ws.iter("color")} | {f.get("column") for f in ws.iter("filter")}
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
