"""`byoc`: run the service, the worker, migrations, and manage API keys."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer
from pydantic import ValidationError

from app.config import Settings, get_settings

cli = typer.Typer(help="byoc-relay: NICE CXone Bring Your Own Channel middleware.", no_args_is_help=True)
db_cli = typer.Typer(help="Database migrations.", no_args_is_help=True)
apikey_cli = typer.Typer(help="Admin API keys.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(apikey_cli, name="apikey")


def _settings(**overrides: object) -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            typer.secho(f"configuration error: {where}: {error['msg']}", fg="red", err=True)
        raise typer.Exit(2) from None
    return settings.model_copy(update=overrides) if overrides else settings


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # httpx logs every URL at INFO; URLs can carry end-user ids, which stay out of our logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run the delivery worker here.")
    ] = True,
    demo: Annotated[
        bool, typer.Option(help="Dev only: mount the CXone simulator and set up a demo.")
    ] = False,
) -> None:
    """Run the API (and, unless --no-worker, the delivery worker)."""
    import uvicorn

    from app.main import create_app

    overrides: dict[str, object] = {"worker": worker}
    if demo:
        overrides["simulator"] = True
    settings = _settings(**overrides)
    if not settings.public_url:
        settings = settings.model_copy(update={"public_url": f"http://{host}:{port}"})
    if settings.simulator and settings.env != "dev":
        typer.secho("the CXone simulator runs only with BYOC_ENV=dev", fg="red", err=True)
        raise typer.Exit(2)
    _logging(settings)
    app = create_app(settings)
    if demo:
        from app.demo import schedule_demo_setup

        schedule_demo_setup(app)
    # No access log: paths carry what logs must not (thread ids that are phone numbers, file-link keys).
    uvicorn.run(
        app, host=host, port=port, log_level=settings.log_level.lower(), proxy_headers=True, access_log=False
    )


@cli.command("worker")
def run_worker() -> None:
    """Run only the delivery worker (scale out with several of these against PostgreSQL)."""
    from app.main import build_runtime, check_adapters

    settings = _settings()
    _logging(settings)

    async def main() -> None:
        runtime = build_runtime(settings)
        await check_adapters(runtime)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await runtime.worker.run(stop)
        finally:
            await runtime.close()

    asyncio.run(main())


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from app.migrate import upgrade

    upgrade(_settings().database_url, revision)


@db_cli.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target, e.g. -1 or base.")]) -> None:
    """Revert migrations down to REVISION."""
    from app.migrate import downgrade

    downgrade(_settings().database_url, revision)


@apikey_cli.command("create")
def apikey_create(
    role: Annotated[str, typer.Option(help="admin, operator or viewer.")] = "admin",
    name: Annotated[str, typer.Option(help="Who or what uses this key.")] = "cli",
) -> None:
    """Create an API key and print it. It is shown only this once."""
    from app.db import create_engine, create_sessionmaker, session_scope
    from app.services.api_keys import Role, create_api_key

    try:
        chosen = Role[role]
    except KeyError:
        typer.secho(f"unknown role {role!r}: use admin, operator or viewer", fg="red", err=True)
        raise typer.Exit(2) from None
    settings = _settings()

    async def main() -> str:
        engine = create_engine(settings.database_url)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                _, plaintext = await create_api_key(session, name=name, role=chosen)
        finally:
            await engine.dispose()
        return plaintext

    plaintext = asyncio.run(main())
    print(plaintext)
    typer.secho(f"({chosen.name} key; shown once, store it now)", err=True, fg="yellow")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
