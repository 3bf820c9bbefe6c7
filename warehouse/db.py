"""Connections to the warehouse, its roles, and ``setup`` (roles, migrations, grants).

Four identities reach the warehouse database:

- the platform's administrator (``postgres.user``, trusted on loopback) runs the migrations
  and creates API keys;
- the loader role (``warehouse.loader_role``) writes the loads;
- the reporting role (``warehouse.reporting_role``) only reads ``dw``: Tableau uses it;
- the API role (``warehouse.api_role``) reads ``dw`` and the API keys (schema ``api``), and
  writes nothing.

The three roles log in with passwords (scram-sha-256; ``python -m infra up`` writes their
``pg_hba.conf`` lines). A password comes from ``QL_WAREHOUSE_<ROLE>_PASSWORD`` when set, else
from ``<state_dir>/secrets/warehouse.json``, which :func:`password` generates once (mode 600;
``.state`` is outside git).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote_plus

from sqlalchemy import Engine, create_engine, text

from config import Settings
from config.secrets import secrets_path, stored_secret
from warehouse.schema import API_SCHEMA, SCHEMA

Role = Literal["admin", "loader", "reporting", "api"]
LOGIN_ROLES = ("loader", "reporting", "api")
ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"


def secrets_file(settings: Settings) -> Path:
    return secrets_path(settings, "warehouse")


def role_name(settings: Settings, role: Role) -> str:
    """The PostgreSQL role behind ``role``."""
    cfg = settings.platform
    return {"admin": cfg.postgres.user, "loader": cfg.warehouse.loader_role,
            "reporting": cfg.warehouse.reporting_role, "api": cfg.warehouse.api_role}[role]


def password(settings: Settings, role: Literal["loader", "reporting", "api"]) -> str:
    """``role``'s password: the environment's, else the generated one kept in the state folder."""
    return stored_secret(settings, "warehouse", role, f"QL_WAREHOUSE_{role.upper()}_PASSWORD")


def url(settings: Settings, role: Role = "loader", driver: str = "postgresql+psycopg2") -> str:
    """SQLAlchemy URL of the warehouse database as ``role``."""
    pg = settings.platform.postgres
    if role == "admin":
        return pg.url(driver=driver)
    user = f"{role_name(settings, role)}:{quote_plus(password(settings, role))}"
    return f"{driver}://{user}@{pg.host}:{pg.port}/{pg.database}"


def engine(settings: Settings, role: Role = "loader") -> Engine:
    """An engine on the warehouse database as ``role`` (pre-ping: survives a database restart)."""
    return create_engine(url(settings, role), pool_pre_ping=True)


def alembic_config(settings: Settings, connection=None):
    """Alembic's configuration for the warehouse, on ``connection`` or the admin URL."""
    from alembic.config import Config

    cfg = Config(str(ALEMBIC_INI))
    cfg.attributes["url"] = url(settings, "admin")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def migrate(settings: Settings, command: str = "upgrade", revision: str = "head") -> None:
    """Run an Alembic command (``upgrade head``, ``downgrade base``, ``current``) as the admin."""
    from alembic import command as alembic

    cfg = alembic_config(settings)
    if command == "current":
        alembic.current(cfg, verbose=False)
    else:
        getattr(alembic, command)(cfg, revision)


def ensure_roles(settings: Settings) -> None:
    """Create (or re-password) the loader, reporting and API roles and grant what each may do."""
    loader, reporting, api = role_name(settings, "loader"), role_name(settings, "reporting"), role_name(settings, "api")
    database = settings.platform.postgres.database
    admin = create_engine(url(settings, "admin"))
    with admin.begin() as conn:
        for role in LOGIN_ROLES:
            name = role_name(settings, role)
            exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).first()
            verb = "ALTER" if exists else "CREATE"
            # a role name is validated by the config schema ([a-z_][a-z0-9_]*); the password is bound
            secret = conn.execute(text("SELECT quote_literal(:p)"), {"p": password(settings, role)}).scalar_one()
            conn.execute(text(f"{verb} ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD {secret}"))
        conn.execute(text(f'GRANT CONNECT ON DATABASE "{database}" TO {loader}, {reporting}, {api}'))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {loader}, {reporting}, {api}"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {api}"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA {API_SCHEMA} TO {api}"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {API_SCHEMA} TO {api}"))
        conn.execute(text(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT SELECT ON TABLES TO {api}"))
        conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {SCHEMA} TO {loader}"))
        conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {loader}"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA {SCHEMA} TO {reporting}"))
        conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        conn.execute(text(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT SELECT, INSERT, UPDATE, DELETE "
                          f"ON TABLES TO {loader}"))
        conn.execute(text(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT USAGE, SELECT ON SEQUENCES TO {loader}"))
        conn.execute(text(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {SCHEMA} GRANT SELECT ON TABLES TO {reporting}"))
    admin.dispose()


def setup(settings: Settings) -> None:
    """Migrate to the newest schema, then the roles and their grants (idempotent)."""
    migrate(settings, "upgrade", "head")
    ensure_roles(settings)
