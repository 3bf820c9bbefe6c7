"""``python -m streaming.api``: serve the API, and manage its keys.

    python -m streaming.api serve                               the API on api.host:api.port
    python -m streaming.api keys create --scope read [--scope trade] [--name NAME] [--expires-days N]
    python -m streaming.api keys list
    python -m streaming.api keys revoke KEY_ID
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys

from config import load_settings
from config.cli import guarded


def serve(settings) -> int:
    """Run the API under uvicorn until SIGTERM / Ctrl-C."""
    import uvicorn

    from streaming import metrics
    from streaming.api.app import create_app

    metrics.keep_only("api")
    cfg = settings.platform.api
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "mlflow", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=cfg.host, port=cfg.port, log_level="warning",
                                           access_log=False, ws_ping_interval=20, ws_ping_timeout=20))

    def stop(signum, frame):  # a clean shutdown, and exit code 0 (uvicorn's own handler re-raises the signal)
        server.should_exit = True

    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"API on http://{cfg.host}:{cfg.port} (docs /docs, page /, metrics /metrics)", flush=True)
    server.run()
    print("API stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streaming.api", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="the API on api.host:api.port")
    keys = sub.add_parser("keys", help="create, list or revoke API keys")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="a new key (printed once)")
    create.add_argument("--scope", action="append", required=True, choices=["read", "trade", "admin"])
    create.add_argument("--name", default="cli")
    create.add_argument("--expires-days", type=float)
    keys_sub.add_parser("list")
    revoke = keys_sub.add_parser("revoke")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)

    def body() -> int:
        from streaming.api import keys as K

        settings = load_settings()
        if args.command == "serve":
            return serve(settings)
        if args.action == "create":
            key = K.create_key(settings, args.scope, args.name, args.expires_days)
            print(key)
            print(f"scopes {', '.join(sorted(K.granted(args.scope)))}; store it now: only its hash is kept",
                  file=sys.stderr)
            return 0
        if args.action == "list":
            for row in K.list_keys(settings):
                state = "revoked" if row["revoked_at"] else ("expires " + row["expires_at"].isoformat()
                                                             if row["expires_at"] else "active")
                print(f"{row['key_id']}  {row['name']:20s} {','.join(row['scopes']):18s} "
                      f"created {row['created_at']:%Y-%m-%d %H:%M}  {state}")
            return 0
        if not K.revoke_key(settings, args.key_id):
            raise SystemExit(f"no active key {args.key_id}")
        print(f"revoked {args.key_id}")
        return 0

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
