"""Redis and PostgreSQL (SQLAlchemy 2 style) round trips against the local servers."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
import redis
from sqlalchemy import DateTime, Float, String, create_engine, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from config.secrets import redis_password

pytestmark = pytest.mark.services


def test_redis_roundtrip_and_set_nx(services) -> None:
    cfg = services.platform.redis
    client = redis.Redis(host=cfg.host, port=cfg.port, db=cfg.db, username=cfg.user,
                         password=redis_password(services), decode_responses=True)
    key = f"test:{uuid.uuid4().hex}"
    try:
        client.hset(f"{key}:pos", mapping={"qty": "10", "avg_price": "101.5"})
        assert client.hgetall(f"{key}:pos") == {"qty": "10", "avg_price": "101.5"}
        # idempotent effects: the first SET NX wins, a replay does nothing
        assert client.set(f"{key}:order", "v1", nx=True) is True
        assert client.set(f"{key}:order", "v2", nx=True) is None
        assert client.get(f"{key}:order") == "v1"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == cfg.appendfsync
    finally:
        client.delete(f"{key}:pos", f"{key}:order")
        client.close()


def test_redis_refuses_the_default_user_a_wrong_password_and_admin_commands(services) -> None:
    """ACL users: no anonymous access, no guessing, and the services' user cannot reconfigure
    or stop the server."""
    cfg = services.platform.redis
    anonymous = redis.Redis(host=cfg.host, port=cfg.port, socket_timeout=2)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.ping()
    wrong = redis.Redis(host=cfg.host, port=cfg.port, username=cfg.user, password="guess", socket_timeout=2)
    with pytest.raises(redis.exceptions.AuthenticationError):
        wrong.ping()
    client = redis.Redis(host=cfg.host, port=cfg.port, username=cfg.user, password=redis_password(services))
    assert client.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.config_set("appendonly", "no")
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.acl_list()
    for c in (anonymous, wrong, client):
        c.close()


def test_a_transaction_survives_a_redis_sigkill(services, tmp_path) -> None:
    """A MULTI/EXEC and a plain write, then Redis killed with SIGKILL and started again: both
    are back from the append-only file. (With the default user off, Redis 7 replays the file as
    that user and silently drops every transaction: redis/redis#14541; with appendfsync
    everysec, a plain write it had acknowledged was lost.) A server of the test's own, so the
    tests on the shared one do not see it die."""
    import os
    import signal

    from config import load_settings
    from streaming import live
    from tests.livekit import free_port, private_server

    server, env = private_server("redis", tmp_path, port=free_port())
    server.up()
    client = live.redis_client(load_settings(env=env))
    try:
        key = f"test:{uuid.uuid4().hex}"
        pipe = client.pipeline(transaction=True)
        pipe.set(f"{key}:tx", "committed")
        pipe.hset(f"{key}:hash", mapping={"qty": "3"})
        pipe.execute()
        client.set(f"{key}:plain", "written")
        pid = server.pid()
        os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        assert live.wait_for(lambda: server.pid() is None and server.check() == "nothing listens", 10)
        server.up()
        assert client.get(f"{key}:tx") == "committed" and client.hgetall(f"{key}:hash") == {"qty": "3"}
        assert client.get(f"{key}:plain") == "written"
    finally:
        client.close()
        server.down()


class Base(DeclarativeBase):
    pass


def _fill_model(schema: str):
    class Fill(Base):
        __tablename__ = "fills"
        __table_args__ = {"schema": schema}
        fill_id: Mapped[str] = mapped_column(String(64), primary_key=True)
        symbol: Mapped[str] = mapped_column(String(16))
        qty: Mapped[float] = mapped_column(Float)
        price: Mapped[float] = mapped_column(Float)
        ts: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    return Fill


def test_postgres_sqlalchemy2_roundtrip(services) -> None:
    pg = services.platform.postgres
    engine = create_engine(pg.url(), future=True)
    schema = f"t_{uuid.uuid4().hex[:8]}"
    Fill = _fill_model(schema)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        Base.metadata.create_all(engine)
        now = datetime(2024, 1, 2, 15, 30, tzinfo=timezone.utc)
        with Session(engine) as session, session.begin():
            session.add_all([Fill(fill_id="f1", symbol="AAA", qty=10, price=101.25, ts=now),
                             Fill(fill_id="f2", symbol="BBB", qty=-5, price=50.0, ts=now)])
        with Session(engine) as session:
            rows = session.scalars(select(Fill).where(Fill.qty > 0)).all()
            assert [(r.fill_id, r.symbol, r.price, r.ts) for r in rows] == [("f1", "AAA", 101.25, now)]
        # a failed transaction leaves nothing behind
        with pytest.raises(Exception):
            with Session(engine) as session, session.begin():
                session.add(Fill(fill_id="f3", symbol="CCC", qty=1, price=1.0, ts=now))
                session.flush()
                session.add(Fill(fill_id="f1", symbol="DUP", qty=1, price=1.0, ts=now))
        with Session(engine) as session:
            assert session.scalar(select(Fill).where(Fill.fill_id == "f3")) is None
        with engine.connect() as conn:
            dbs = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
        assert {pg.database, pg.mlflow_database, pg.dagster_database} <= dbs
    finally:
        Base.metadata.remove(Fill.__table__)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()
