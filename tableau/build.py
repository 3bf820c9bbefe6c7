"""Building the Tableau files into the state folder, and publishing them when a server is set."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from config import Settings
from config.errors import UserError
from tableau.documents import HYPER_FILE, build
from tableau.hyper import build_extract
from warehouse import db


@dataclass
class BuildOutcome:
    documents: list[Path]
    extract: Path | None = None
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def build_all(settings: Settings, extract: bool = True) -> BuildOutcome:
    """The .tds files and both workbooks, then (``extract``) the .hyper file from the warehouse,
    read as the reporting role."""
    out = settings.platform.tableau_dir
    outcome = BuildOutcome(build(settings, out))
    if extract:
        started = time.monotonic()
        outcome.extract = out / HYPER_FILE
        outcome.rows = build_extract(db.engine(settings, "reporting"), outcome.extract, _hyper_logs(settings))
        outcome.seconds = time.monotonic() - started
    return outcome


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


def publish(settings: Settings) -> list[str]:
    """Publish the data sources and the extract workbook with ``tableauserverclient``.

    Raises:
        UserError: no server configured, no token secret, or the client library missing.
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
    out = settings.platform.tableau_dir
    server = tsc.Server(cfg.server_url, use_server_version=True)
    lines = []
    with server.auth.sign_in(tsc.PersonalAccessTokenAuth(cfg.token_name, secret, site_id=cfg.site)):
        project = next((p for p in tsc.Pager(server.projects) if p.name == cfg.project), None)
        if project is None:
            raise UserError(f"no project {cfg.project!r} on {cfg.server_url} (warehouse.tableau.project)")
        for path in sorted(out.glob("*.tds")):
            item = server.datasources.publish(tsc.DatasourceItem(project.id), str(path), "Overwrite")
            lines.append(f"published data source {item.name} ({path.name})")
        item = server.workbooks.publish(tsc.WorkbookItem(project.id), str(out / "quantlake_extract.twb"), "Overwrite")
        lines.append(f"published workbook {item.name}")
    return lines
