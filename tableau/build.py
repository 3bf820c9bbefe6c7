"""Building the Tableau files into the state folder, and publishing them when a server is set."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from config import Settings
from config.errors import UserError
from tableau.documents import HYPER_FILE, build, captions, stars
from tableau.hyper import build_extract
from tableau.previews import draw, file_name
from tableau.sheets import SheetCheck, check_sheets, problems
from warehouse import db


@dataclass
class BuildOutcome:
    documents: list[Path]
    extract: Path | None = None
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    sheets: list[SheetCheck] = field(default_factory=list)
    previews: list[Path] = field(default_factory=list)


def build_all(settings: Settings, extract: bool = True) -> BuildOutcome:
    """The .tds files and both workbooks, then (``extract``) the .hyper file from the warehouse,
    read as the reporting role, each sheet's marks on both, and a preview of each sheet in
    ``previews/``."""
    out = settings.platform.tableau_dir
    outcome = BuildOutcome(build(settings, out))
    if extract:
        started = time.monotonic()
        outcome.extract = out / HYPER_FILE
        engine = db.engine(settings, "reporting")
        outcome.rows = build_extract(engine, outcome.extract, _hyper_logs(settings))
        outcome.seconds = time.monotonic() - started
        outcome.sheets = check_sheets(settings, engine, outcome.extract, _hyper_logs(settings))
        outcome.previews = write_previews(settings, outcome.sheets, out / "previews")
    return outcome


def write_previews(settings: Settings, checks: list[SheetCheck], folder: Path) -> list[Path]:
    """One PNG per sheet, drawn from its marks on the warehouse."""
    by_name = {s.name: s for s in stars(settings)}
    return [draw(c.sheet, c.rows, captions(by_name[c.sheet.source]), folder / file_name(c.sheet), c.empty_means)
            for c in checks]


def sheet_problems(settings: Settings, live: bool = False) -> list[str]:
    """The sheets that draw nothing on the warehouse (live sheets only when ``live``) or whose
    marks on the built extract differ from the warehouse's; empty when all is well."""
    checks = check_sheets(settings, db.engine(settings, "reporting"), settings.platform.tableau_dir / HYPER_FILE,
                          _hyper_logs(settings))
    return problems(checks, live)


def extract_differences(settings: Settings) -> list[str]:
    """One line per table and figure where the built ``.hyper`` extract differs from the
    warehouse (row count, sum of each numeric column); empty when they agree."""
    from tableau.hyper import extract_figures
    from warehouse.report import numeric_columns, numeric_sums, tables

    engine = db.engine(settings, "reporting")
    numeric = {t: numeric_columns(t) for t in tables()}
    found = extract_figures(settings.platform.tableau_dir / HYPER_FILE, _hyper_logs(settings), numeric)
    return [f"{t}.{k}: extract {found[t][k]!r}, warehouse {v!r}" for t in numeric
            for k, v in numeric_sums(engine, t).items() if abs(found[t][k] - v) > 1e-6 * max(1.0, abs(v))]


def _hyper_logs(settings: Settings) -> Path:
    return settings.platform.state_dir / "logs" / "hyper"


@dataclass(frozen=True)
class PublishRequest:
    """One publish call: ``server.<endpoint>.publish(item, path, mode)``."""

    endpoint: str          # "datasources" or "workbooks"
    item: object           # tsc.DatasourceItem / tsc.WorkbookItem in the target project
    path: Path
    mode: str              # tsc.Server.PublishMode


def publish_requests(tsc, project_id: str, folder: Path) -> list[PublishRequest]:
    """What :func:`publish` sends: every ``.tds`` of ``folder``, then the extract workbook, each
    overwriting the item of the same name in the project ``project_id``.

    Raises:
        UserError: ``folder`` has no built documents (run ``python -m tableau build`` first).
    """
    workbook = folder / "quantlake_extract.twb"
    sources = sorted(folder.glob("*.tds"))
    if not sources or not workbook.exists():
        raise UserError(f"nothing to publish in {folder}: run `python -m tableau build` first")
    mode = tsc.Server.PublishMode.Overwrite
    return [*(PublishRequest("datasources", tsc.DatasourceItem(project_id, name=p.stem), p, mode) for p in sources),
            PublishRequest("workbooks", tsc.WorkbookItem(project_id, name="quantlake", show_tabs=True), workbook, mode)]


def publish(settings: Settings) -> list[str]:
    """Publish the data sources and the extract workbook with ``tableauserverclient``
    (untested here: there is no Tableau Server; :func:`publish_requests` is).

    Raises:
        UserError: no server configured, no token secret, the client library missing, or no
            such project.
    """
    cfg = settings.platform.warehouse.tableau
    secret = os.environ.get("QL_TABLEAU_TOKEN_SECRET")
    if not cfg.server_url or not cfg.token_name or not secret:
        raise UserError("publishing needs config/platform.yaml warehouse.tableau.server_url and token_name, and "
                        "the token's secret in QL_TABLEAU_TOKEN_SECRET")
    try:
        import tableauserverclient as tsc
    except ImportError:
        raise UserError("publishing needs tableauserverclient: .venv/bin/python -m pip install -e '.[publish]'") \
            from None
    server = tsc.Server(cfg.server_url, use_server_version=True)
    lines = []
    with server.auth.sign_in(tsc.PersonalAccessTokenAuth(cfg.token_name, secret, site_id=cfg.site)):
        project = next((p for p in tsc.Pager(server.projects) if p.name == cfg.project), None)
        if project is None:
            raise UserError(f"no project {cfg.project!r} on {cfg.server_url} (warehouse.tableau.project)")
        for request in publish_requests(tsc, project.id, settings.platform.tableau_dir):
            item = getattr(server, request.endpoint).publish(request.item, str(request.path), request.mode)
            lines.append(f"published {request.endpoint[:-1]} {item.name} ({request.path.name})")
    return lines
