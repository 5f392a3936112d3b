"""`sentinel-usage`: up, worker, api, migrate, token, oauth-key, demo-agent."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from sentinel_usage.analytics.clickhouse import connect
from sentinel_usage.analytics.migrate import migrate
from sentinel_usage.analytics.migrations.context import MigrationContext
from sentinel_usage.api.auth import SCOPES, issue_token
from sentinel_usage.core.errors import ConfigurationError, DependencyUnavailableError
from sentinel_usage.core.events import EventValidator, ValidationPolicy
from sentinel_usage.core.logging import configure_logging
from sentinel_usage.core.settings import Settings, load_settings, with_local_jwt_secret
from sentinel_usage.ingest.admin import ensure_topics
from sentinel_usage.passes.tokens import generate_key_file


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sentinel-usage", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="embedded all-in-one: broker, topics, migrations, worker, API")
    commands.add_parser("worker", help="the stream worker alone (needs KAFKA_BOOTSTRAP_SERVERS)")
    commands.add_parser("api", help="the API alone (needs KAFKA_BOOTSTRAP_SERVERS)")
    commands.add_parser("migrate", help="apply pending ClickHouse and pass registry migrations")
    key = commands.add_parser("oauth-key", help="add an ES256 key that signs pass tokens")
    key.add_argument("--dir", type=Path, help="default: SENTINEL_OAUTH_KEYS_DIR")
    agent = commands.add_parser(
        "demo-agent", help="exchange a pass's credentials and call the demo API until stopped"
    )
    agent.add_argument("--client-id", default=os.environ.get("SENTINEL_CLIENT_ID"))
    agent.add_argument("--client-secret", default=os.environ.get("SENTINEL_CLIENT_SECRET"))
    agent.add_argument("--url", default=None, help="default: the local API")
    agent.add_argument("--rate", type=float, default=5.0, help="calls per second")
    token = commands.add_parser("token", help="print a bearer token signed with the local secret")
    token.add_argument("--project", action="append", required=True, help="repeatable")
    token.add_argument("--scope", action="append", required=True, choices=SCOPES)
    token.add_argument("--ttl", type=int, default=12 * 3600, help="seconds (default 12 h)")
    token.add_argument("--subject", default="local-user")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
        configure_logging(settings.log_level, settings.log_json)
        if args.command == "token":
            return _token(settings, args)
        if args.command == "migrate":
            applied = _migrate(settings)
            print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
            print(f"pass registry: {asyncio.run(_migrate_registry(settings))}")
            return 0
        if args.command == "demo-agent":
            return _demo_agent(settings, args)
        if args.command == "oauth-key":
            directory = args.dir or settings.signing_keys_dir
            directory.mkdir(parents=True, exist_ok=True)
            print(f"{generate_key_file(directory)}: the newest key signs from the next start")
            return 0
        if args.command == "api":
            return _api(settings)
        if args.command == "worker":
            return _worker(settings)
        return _up(settings)
    except (ConfigurationError, DependencyUnavailableError) as exc:
        print(f"sentinel-usage: {exc}", file=sys.stderr)
        return 2


def _token(settings: Settings, args: argparse.Namespace) -> int:
    settings = with_local_jwt_secret(settings)
    if settings.jwt_secret is None:
        raise ConfigurationError("tokens can only be signed with SENTINEL_JWT_SECRET (HS256)")
    print(
        issue_token(
            settings.jwt_secret.get_secret_value(),
            args.project,
            args.scope,
            ttl_seconds=args.ttl,
            subject=args.subject,
            audience=settings.jwt_audience,
        )
    )
    return 0


def _migrate(settings: Settings) -> list[str]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return migrate(connect(settings.clickhouse_dsn), MigrationContext.from_settings(settings))


def _demo_agent(settings: Settings, args: argparse.Namespace) -> int:
    from sentinel_usage.gateway.agent import DemoAgent

    if not args.client_id or not args.client_secret:
        raise ConfigurationError(
            "give --client-id and --client-secret, or SENTINEL_CLIENT_ID and "
            "SENTINEL_CLIENT_SECRET (the Bash format of a new pass's credentials)"
        )
    url = args.url or f"http://{settings.api_host}:{settings.api_port}"
    agent = DemoAgent(url, args.client_id, args.client_secret, rate=args.rate)
    print(f"calling {url}/demo/v1/... at {args.rate:g}/s; Ctrl-C stops", flush=True)
    try:
        statuses = asyncio.run(agent.run())
    except KeyboardInterrupt:
        return 0
    print(statuses)
    return 0


async def _migrate_registry(settings: Settings) -> str:
    from sentinel_usage.passes.migrate import pending, upgrade
    from sentinel_usage.passes.store import create_engine

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.registry_url)
    try:
        before = await pending(engine)
        await upgrade(engine)
        return "applied " + ", ".join(before) if before else "up to date"
    finally:
        await engine.dispose()


def _prepare(settings: Settings) -> asyncio.AbstractEventLoop:
    """Topics and migrations; returns the loop Faust will then run on."""
    assert settings.kafka_bootstrap_servers is not None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(
        ensure_topics(
            settings.kafka_bootstrap_servers,
            settings.events_topic_partitions,
            settings.kafka_replication_factor,
        )
    )
    _migrate(settings)
    return loop


def _worker(settings: Settings, api_socket: socket.socket | None = None) -> int:
    """The stream worker; with `api_socket` (bound by `up`), the API served from it too."""
    import pyarrow as pa

    from sentinel_usage.api.services import journal_directory
    from sentinel_usage.ingest.durable import replay_journal
    from sentinel_usage.ingest.journal import IngestJournal
    from sentinel_usage.stream.app import create_stream_app
    from sentinel_usage.stream.reconcile import rebuild_lost_windows
    from sentinel_usage.stream.worker import return_freed_memory, run_worker

    if settings.kafka_bootstrap_servers is None:
        raise ConfigurationError("`worker` needs KAFKA_BOOTSTRAP_SERVERS (or use `up`)")
    # Arrow's default pool (mimalloc) keeps what a batch freed for the next; with three
    # batches in flight and chDB's threads, the worker's peak RSS in bench/pipeline_bench.py's
    # stream-only runs was 968-1,013 MB with it and 829-872 MB with glibc's, no slower
    # beyond this machine's noise (the full `make bench`, 1,006 MB, still comes near the
    # 1 GiB target). Buffers made at import stay in the pool that made them.
    pa.set_memory_pool(pa.system_memory_pool())
    return_freed_memory(settings.memory_trim_seconds)
    loop = _prepare(settings)
    journal = None
    if settings.ingest_journal:
        # The embedded broker kept nothing: what was acknowledged goes back in before
        # the worker subscribes, and the rollups are made whole from the raw log
        # before the worker loads windows from them (its changelog is gone too).
        journal = IngestJournal(journal_directory(settings))
        loop.run_until_complete(replay_journal(journal, settings.kafka_bootstrap_servers))
        rebuild_lost_windows(connect(settings.clickhouse_dsn), settings.rollup_tiers)
    validator = EventValidator(ValidationPolicy.from_settings(settings))
    # Two connections: the sink writes a batch's rows and its windows at once (a
    # connection runs one query at a time; chDB runs queries of two side by side).
    app = create_stream_app(
        settings, connect(settings.clickhouse_dsn), validator, connect(settings.clickhouse_dsn)
    )
    settings = settings.model_copy(update={"metrics_port": serve_metrics(settings)})
    if api_socket is not None:
        from sentinel_usage.api.app import create_app
        from sentinel_usage.api.services import build_services
        from sentinel_usage.cli.api_task import attach_api

        api = create_app(build_services(settings, journal))
        attach_api(app, api, api_socket, on_started=lambda port: _print_banner(settings, port))
    run_worker(app, settings.log_level)
    return 0


def _api(settings: Settings) -> int:
    import uvicorn

    from sentinel_usage.api.app import create_app
    from sentinel_usage.api.services import build_services

    settings = with_local_jwt_secret(settings)
    _migrate(settings)
    serve_metrics(settings)
    uvicorn.run(
        create_app(build_services(settings)),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
    )
    return 0


def _up(settings: Settings) -> int:
    from sentinel_usage.cli.tansu import TansuBroker

    settings = with_local_jwt_secret(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # The API's port is taken first: the broker's and the metrics' ports, chosen next,
    # once took it in the moment before uvicorn bound it ("address already in use").
    api_socket = _bind(settings.api_host, settings.api_port)
    broker = None
    if settings.embedded_broker:
        broker = TansuBroker(log_path=settings.data_dir / "tansu.log").start()
        settings = settings.model_copy(
            update={
                "kafka_bootstrap_servers": broker.bootstrap_servers,
                "ingest_journal": True,
                # This broker's offsets start again from 0: they mean nothing next time.
                "broker_epoch": uuid.uuid4().hex,
            }
        )
    try:
        return _worker(settings, api_socket)
    finally:
        api_socket.close()
        if broker is not None:
            broker.stop()


def _bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), as uvicorn would bind it (it listens)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    # only on connections whose socket says IPPROTO_TCP, and accepted sockets take the
    # listener's. With 0, every answer on a kept-alive connection waited ~40 ms for the
    # client's delayed ACK (token exchanges: 180/s at p50 44 ms, against 2 ms alone).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port} ({exc.strerror}): another process has it; "
            "stop it, or set SENTINEL_API_PORT"
        ) from None
    return sock


def serve_metrics(settings: Settings) -> int:
    """The Prometheus listener (its own thread, SENTINEL_METRICS_HOST:PORT); the port."""
    from prometheus_client import start_http_server

    server, _ = start_http_server(settings.metrics_port, addr=settings.metrics_host)
    return int(server.server_port)


def _print_banner(settings: Settings, port: int) -> None:
    base = f"http://{settings.api_host}:{port}"
    lines = [
        "sentinel-usage is up",
        f"  API            {base}   (OpenAPI: {base}/docs)",
        f"  health         {base}/healthz   {base}/readyz",
        f"  pass pages     {base}/ui/projects/demo   (Local sign-in on the page)",
        *(
            [f"  demo API       {base}/demo/v1/items   (behind the gateway: a pass token)"]
            if settings.mode == "local"
            else []
        ),
        f"  metrics        http://{settings.metrics_host}:{settings.metrics_port}/metrics",
        f"  Kafka          {settings.kafka_bootstrap_servers}",
        f"  ClickHouse     {settings.clickhouse_dsn}",
        *_token_lines(settings),
        "Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)


def _token_lines(settings: Settings) -> list[str]:
    """Local mode: a token for project 'demo'. Production prints none: stdout goes to
    log collectors, and a working token there is a leak."""
    if settings.mode != "local" or settings.jwt_secret is None:
        return ["  token          none printed in production: use your identity provider's"]
    token = issue_token(
        settings.jwt_secret.get_secret_value(),
        ["demo"],
        ["usage:read", "usage:export", "events:write"],
        audience=settings.jwt_audience,
    )
    return ["  token (project 'demo', 12 h; more with `sentinel-usage token`):", f"  {token}"]


if __name__ == "__main__":
    sys.exit(main())
