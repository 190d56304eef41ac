"""Platform commands: serve, admin (direct database access) and the requester's everyday
work over the HTTP API (projects, items, export), through the SDK."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.table import Table

from crowdloop.cli.base import cli, console, spinner, stdout_console
from crowdloop.cli.checks import writable_file
from crowdloop.errors import CrowdloopError, InvalidParameterError
from crowdloop.ports import server_socket

if TYPE_CHECKING:
    from crowdloop.client import Client

if TYPE_CHECKING:
    from sqlalchemy import Engine


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--database-url", help="SQLAlchemy URL (default: CROWDLOOP_DATABASE_URL, else sqlite:///crowdloop.db).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="App processes sharing the database.")  # fmt: skip
def serve_command(host: str, port: int, database_url: str | None, workers: int) -> None:
    """Run the HTTP API (OpenAPI at /openapi.json).

    The first admin signs in with the token set in CROWDLOOP_ADMIN_TOKEN (user "admin"), or
    with one from `crowdloop admin create-user NAME --role admin`.
    """
    import uvicorn

    from crowdloop.config import Settings, uvicorn_log_config
    from crowdloop.crowd.startup import prepare_server
    from crowdloop.monitoring.metrics import prepare_metrics_dir, remove_metrics_dir

    sock = server_socket(host, port)  # held from now on: a port taken during the migrations failed after "serving"
    if database_url:
        os.environ["CROWDLOOP_DATABASE_URL"] = database_url  # the worker processes read Settings from here
    settings = Settings()
    metrics_dir, temporary = prepare_metrics_dir(settings.metrics_dir, workers)
    try:
        if metrics_dir is not None:  # the processes add up their request metrics there (crowdloop.monitoring.metrics)
            os.environ["CROWDLOOP_METRICS_DIR"] = str(metrics_dir)  # the worker processes read Settings from here
            settings = settings.model_copy(update={"metrics_dir": metrics_dir})
        common: dict[str, Any] = {
            "host": host, "port": port, "timeout_keep_alive": KEEP_ALIVE_SECONDS, "access_log": False,
            "log_level": settings.log_level.lower(), "log_config": uvicorn_log_config(settings.log_level),
        }  # fmt: skip
        if workers == 1:
            app = _checked(settings.database_url, lambda: _create_app(settings))  # refuses here, before "serving"
            _say_serving(settings.database_url, host, port, workers)
            _serve_one(uvicorn.Config(app, **common), sock)
            return
        # Every check a process makes at start, made once here: one that failed in each process made
        # uvicorn's supervisor replace them for ever, serving nothing.
        _checked(settings.database_url, lambda: prepare_server(settings).dispose())
        os.environ["CROWDLOOP_AUTO_MIGRATE"] = "false"  # migrated: the processes only check the schema
        _say_serving(settings.database_url, host, port, workers)
        _serve_processes(uvicorn.Config("crowdloop.api.app:create_app", factory=True, workers=workers,
                                        timeout_worker_healthcheck=WORKER_START_SECONDS, **common), sock)  # fmt: skip
    finally:
        sock.close()
        if temporary and metrics_dir is not None:
            remove_metrics_dir(metrics_dir)


def _create_app(settings: Any) -> Any:
    from crowdloop.api.app import create_app

    return create_app(settings)


def _say_serving(url: str, host: str, port: int, workers: int) -> None:
    console.print(f"crowdloop serving {_safe(url)} on http://{host}:{port} ({workers} process(es))", highlight=False)


WORKER_START_SECONDS = 60
"""How long the supervisor waits for an app process to answer its health check. A new process
imports the whole CLI first (6-7 s on a busy 2-core host), and at uvicorn's default of 5 s the
supervisor killed every one before it answered and restarted them for ever, serving nothing.
The supervisor logs at INFO, so a process that dies and is replaced says so in the log."""

KEEP_ALIVE_SECONDS = 30
"""How long the server keeps an idle connection open: longer than clients keep theirs (the SDK's
httpx pool, 5 s), so it is always the client that closes one. At uvicorn's default of 5 s, both
sides timed out together, and a request sent on a connection the server was just closing failed
with "Server disconnected without sending a response" (it stopped a `crowdloop demo` once in a few
runs, where many worker clients each sit idle for a few seconds)."""


def _serve_one(config: Any, sock: Any) -> None:
    """One process on the socket :func:`~crowdloop.ports.server_socket` bound, as ``uvicorn.run`` would
    serve it (exit 3 when the server did not start, Ctrl-C a clean stop)."""
    import uvicorn

    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(3)


def _serve_processes(config: Any, sock: Any) -> None:
    """Several processes on the one listening socket, each accepting from it."""
    from uvicorn.supervisors import Multiprocess

    Multiprocess(config, sockets=[sock]).run()


def _safe(url: str) -> str:
    """The database URL without its password (:func:`crowdloop.storage.db.safe_url`), for messages."""
    from crowdloop.storage.db import safe_url

    return safe_url(url)


T = TypeVar("T")


def _checked(url: str, work: Callable[[], T]) -> T:
    """``work`` on the database at ``url``, its failure to open that database one line (exit 1) that
    names the URL with its password hidden. A URL crowdloop cannot use is refused by ``make_engine``
    (:func:`crowdloop.storage.db.database_url`, exit 2, naming the databases it works with); both
    were SQLAlchemy tracebacks (ArgumentError, NoSuchModuleError, OperationalError), and
    ``mysql://``, ``postgresql+asyncpg://`` and a port that is not a number still were."""
    from sqlalchemy.exc import ArgumentError, OperationalError

    try:
        return work()
    except ArgumentError as error:  # one SQLAlchemy finds only when it builds the engine
        raise InvalidParameterError(
            f"{_safe(url)} is not a database URL crowdloop can use ({error}); "
            "e.g. sqlite:///crowdloop.db or postgresql://user@host/db."
        ) from None
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise CrowdloopError(f"cannot open the database {_safe(url)}: {reason}{_sqlite_folder_hint(url)}.") from None


def _migrated_engine(url: str, auto_migrate: bool = True) -> Engine:
    """An engine on ``url``, migrated to the latest schema (with ``auto_migrate`` false, checked to be
    at it: ``CROWDLOOP_AUTO_MIGRATE=false``), or one line (:func:`_checked`)."""
    from crowdloop.storage.db import make_engine
    from crowdloop.storage.migrate import prepare_schema

    engine = _checked(url, lambda: make_engine(url))
    try:
        _checked(url, lambda: prepare_schema(engine, auto_migrate))
    except BaseException:
        engine.dispose()
        raise
    return engine


@cli.command("migrate")
@click.option("--database-url", help="SQLAlchemy URL (default: CROWDLOOP_DATABASE_URL, else sqlite:///crowdloop.db).")
def migrate_command(database_url: str | None) -> None:
    """Upgrade the database's schema to this crowdloop's, and say from which revision to which.

    `crowdloop serve` does it at start unless CROWDLOOP_AUTO_MIGRATE=false: then run this first
    (once, whatever the number of servers), e.g. as a deployment step.
    """
    from crowdloop.config import Settings
    from crowdloop.storage.db import make_engine
    from crowdloop.storage.migrate import upgrade

    url = database_url or Settings().database_url
    engine = _checked(url, lambda: make_engine(url))
    try:
        before, after = _checked(url, lambda: upgrade(engine))
    finally:
        engine.dispose()
    if before == after:
        console.print(f"{_safe(url)} is at revision {after}, this crowdloop's: nothing to do.", highlight=False)
    else:
        console.print(f"migrated {_safe(url)} from revision {before or 'none (empty)'} to {after}.", highlight=False)


def _sqlite_folder_hint(url: str) -> str:
    """Why SQLite cannot open a file, when its folder is missing: ``sqlite:///tmp/x.db`` is a path
    relative to the current folder (three slashes), a common slip for ``sqlite:////tmp/x.db``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return ""
    folder = Path(parsed.database).parent
    if folder.is_dir():
        return ""
    hint = f"; its folder {folder} does not exist"
    if not Path(parsed.database).is_absolute():
        hint += (
            f" (the path is relative to {Path.cwd()}: an absolute one takes four slashes, sqlite:////{parsed.database})"
        )
    return hint


@cli.group("admin")
def admin_group() -> None:
    """Administration directly on the database (CROWDLOOP_DATABASE_URL)."""


@admin_group.command("create-user")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "requester", "worker", "device"]), required=True)
@click.option("--database-url")
def create_user_command(name: str, role: str, database_url: str | None) -> None:
    """Create a user and print their token (shown once; only its hash is stored)."""
    from crowdloop.config import Settings
    from crowdloop.crowd import auth
    from crowdloop.storage.db import session_factory, unit_of_work

    settings = Settings(database_url=database_url) if database_url else Settings()
    _refuse_missing_sqlite_file(settings.database_url)
    engine = _migrated_engine(settings.database_url, settings.auto_migrate)
    with unit_of_work(session_factory(engine)) as session:
        created = auth.create_user_with_token(session, name, role)
        user_id = created.user.id
    console.print(f"created {role} {name!r} (id {user_id}); token:")
    click.echo(created.token)


@admin_group.command("token")
@click.argument("name")
@click.option("--database-url")
def token_command(name: str, database_url: str | None) -> None:
    """Issue another token for an existing user who lost theirs.

    Revoke the lost one first (DELETE /api/v1/users/{id}/tokens, Client.revoke_tokens): it revokes
    every token the user holds, so this prints the one that then works.
    """
    from crowdloop.config import Settings
    from crowdloop.crowd import auth
    from crowdloop.storage.db import session_factory, unit_of_work

    settings = Settings(database_url=database_url) if database_url else Settings()
    _refuse_missing_sqlite_file(settings.database_url)
    engine = _migrated_engine(settings.database_url, settings.auto_migrate)
    with unit_of_work(session_factory(engine)) as session:
        issued = auth.issue_token_by_name(session, name)
    click.echo(issued.token)


def _refuse_missing_sqlite_file(url: str) -> None:
    """Admin commands work on a database that exists: on a mistyped SQLite path they made and
    migrated a new file, then answered "no user named ..." or created the user in it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from crowdloop.errors import InvalidInputError, NotFoundError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return  # not a URL (or a port that is not a number): make_engine says so
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or "uri" in parsed.query:
        return
    if not path or path == ":memory:":
        raise InvalidInputError(f"{url} is an empty in-memory database; give the SQLite file the server uses.")
    if not Path(path).is_file():
        raise NotFoundError(
            f"no SQLite database at {Path(path).absolute()}; `crowdloop serve` with this database URL creates it."
        )


def _client(url: str | None, token: str | None) -> Client:
    from crowdloop.client import Client
    from crowdloop.config import Settings

    settings = Settings()
    secret = token or (settings.api_token.get_secret_value() if settings.api_token else None)
    if not secret:
        raise click.UsageError("this command needs an API token: --token or CROWDLOOP_API_TOKEN.")
    try:
        return Client(url or settings.api_url, secret)
    except InvalidParameterError as error:  # say where the URL came from when it was not given here
        raise InvalidParameterError(error.detail if url else f"{error.detail} (from CROWDLOOP_API_URL)") from None


def _api_options(func: Any) -> Any:
    func = click.option("--token", help="API token (default: CROWDLOOP_API_TOKEN).")(func)
    return click.option("--url", help="Server URL (default: CROWDLOOP_API_URL).")(func)


def _json_option(what: str) -> Callable[[Any], Any]:
    """``--json``, as ``models list`` has it: the API's answer on stdout instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} on stdout.")


@cli.group("projects")
def projects_group() -> None:
    """Create, list, start, pause and follow projects (over the API)."""


def _overlap(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    """``min-max`` (or one number, both) as two ints: ``abc`` was a ValueError traceback."""
    low, _, high = value.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise click.BadParameter(
            f"expected min-max answers per item, e.g. 1-3 (or one number); got {value!r}."
        ) from None


@projects_group.command("create")
@click.option("--name", required=True)
@click.option("--labels", required=True, help="Comma-separated label set.")
@click.option("--instructions", default="")
@click.option("--overlap", default="1-3", show_default=True, callback=_overlap, help="min-max answers per item.")
@click.option("--confidence-target", default=0.95, show_default=True, type=float)
@click.option("--gold-share", default=0.0, show_default=True, type=float)
@click.option("--price", default=0.0, show_default=True, type=float)
@click.option("--budget", type=float)
@click.option("--method", help="Aggregation method.  [default: the server's CROWDLOOP_DEFAULT_METHOD]")
@click.option(
    "--fields", help="Comma-separated fields of its items; an import row with another is rejected.  "
    "[default: those of the first import]"
)  # fmt: skip
@_json_option("the project as one JSON object (its id: `... --json | jq .id`)")
@_api_options
def create_project_command(url: str | None, token: str | None, as_json: bool, **spec: Any) -> None:
    """Create a project (draft)."""
    low, high = spec.pop("overlap")
    method = spec.pop("method")
    fields = spec.pop("fields")
    body = {**spec, "labels": [s.strip() for s in spec["labels"].split(",")], "aggregation_method": method}
    body["fields"] = [name.strip() for name in fields.split(",")] if fields else None
    body |= {"min_overlap": low, "max_overlap": high}
    with _client(url, token) as client:
        project = client.create_project(**{k: v for k, v in body.items() if v is not None})
    _print_record(project, as_json)


@projects_group.command("list")
@_json_option("the projects, whole, as a JSON list")
@_api_options
def list_projects_command(as_json: bool, url: str | None, token: str | None) -> None:
    """The projects the token may see (a requester: their own), with status and labels."""
    with _client(url, token) as client:
        projects = client.projects()
    _print_rows(projects, ["id", "name", "status", "labels", "price"], as_json)


@projects_group.command("status")
@click.argument("project_id", type=int)
@_json_option("the status as one JSON object")
@_api_options
def status_command(project_id: int, as_json: bool, url: str | None, token: str | None) -> None:
    """Progress, answers, labels and money of a project."""
    with _client(url, token) as client:
        status = client.status(project_id)
    _print_record(status, as_json)


@projects_group.command("start")
@click.argument("project_id", type=int)
@_api_options
def start_command(project_id: int, url: str | None, token: str | None) -> None:
    """Open the project to workers (status active): a new one, a paused one, or a finished one again."""
    with _client(url, token) as client:
        project = client.start(project_id)
        status = client.status(project_id)
    _print_record(project)
    warning = _idle_warning(status)
    if warning:
        click.echo(f"warning: {warning}", err=True)


def _idle_warning(status: dict[str, Any]) -> str | None:
    """Why workers would find nothing in a project just opened, said at once rather than left for the
    requester to learn from idle workers."""
    regular = status["items"] - status["gold_items"]
    if regular == 0:
        return "the project has no items: import items so workers have work."
    if status["items_done"] >= regular:
        return "every item is done: workers get work again only from items you import."
    return None


@projects_group.command("pause")
@click.argument("project_id", type=int)
@_api_options
def pause_command(project_id: int, url: str | None, token: str | None) -> None:
    """Stop handing out tasks; answers to leases already held are still taken."""
    with _client(url, token) as client:
        _print_record(client.pause(project_id))


@projects_group.command("grant")
@click.argument("project_id", type=int)
@click.argument("user_id", type=int)
@_api_options
def grant_command(project_id: int, user_id: int, url: str | None, token: str | None) -> None:
    """Let a worker into a project closed to all, or a device read its models and report back."""
    with _client(url, token) as client:
        client.grant_access(project_id, user_id)
    click.echo(f"user {user_id} may now see project {project_id}.")


@projects_group.command("aggregate")
@click.argument("project_id", type=int)
@_api_options
def aggregate_project_command(project_id: int, url: str | None, token: str | None) -> None:
    """Aggregate the project's answers now."""
    with _client(url, token) as client:
        _print_record(client.aggregate(project_id))


@cli.group("items")
def items_group() -> None:
    """Import items and gold, and correct gold labels (over the API)."""


@items_group.command("import")
@click.argument("project_id", type=int)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_json_option("the whole report (every rejected row and near duplicate) as one JSON object")
@_api_options
def import_command(project_id: int, file: Path, as_json: bool, url: str | None, token: str | None) -> None:
    """Import FILE (CSV/TSV: columns are item fields, plus optional id (or task), gold_label,
    gold_explanation, priority; JSON Lines: {"data": {...}, ...}; Label Studio .json) and print the report."""
    with _client(url, token) as client, spinner(f"importing {file.name} into project {project_id}"):
        report = client.upload_items(project_id, file)  # 50,000 rows: some 16 s of silence without the spinner
    rejected = report["rejected"]
    nothing = bool(rejected) and not (report["created"] or report["gold_added"] or report["duplicates"])
    if as_json:
        click.echo(json.dumps(report))
    else:
        near = report.pop("near_duplicates")
        _print_record({**report, "rejected": len(rejected), "near_duplicates": len(near)})
        for row in rejected[:20]:
            console.print(f"  row {row['row']}: {row['reason']}", highlight=False, soft_wrap=True)
        for pair in near[:20]:
            like = _near_name(pair["similar_row"], pair["similar_external_id"], pair["similar_item_id"])
            console.print(
                f"  {_near_name(pair['row'], pair['external_id'], pair['item_id'])} is like {like} "
                f"(similarity {pair['similarity']:.2f})",
                highlight=False,
                soft_wrap=True,
            )
    if nothing:  # a script must see that the import did nothing
        console.print(f"error: nothing was imported: every row of {file.name} was rejected.", highlight=False)
        raise SystemExit(2)


@items_group.command("gold")
@click.argument("project_id", type=int)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 200))
@_api_options
def gold_report_command(project_id: int, limit: int, url: str | None, token: str | None) -> None:
    """The answered gold items the crowd misses most, with their votes: where a gold label may be wrong."""
    with _client(url, token) as client:
        rows = client.gold_report(project_id, limit)
    if not rows:
        console.print("no gold item has an answer yet.")
        return
    for row in rows:
        row["miss_rate"] = f"{row['miss_rate']:.0%}"
    _print_rows(rows, ["item_id", "external_id", "gold_label", "answers", "missed", "miss_rate", "votes"])


@items_group.command("correct-gold")
@click.argument("project_id", type=int)
@click.argument("item_id", type=int)
@click.argument("label")
@click.option("--explanation", help='What workers who miss it are shown (default: keep the one it has; "" clears it).')
@_api_options
def correct_gold_command(
    project_id: int, item_id: int, label: str, explanation: str | None, url: str | None, token: str | None
) -> None:
    """Give gold item ITEM_ID the right LABEL: the gold answers the wrong one judged are judged again."""
    with _client(url, token) as client:
        result = client.correct_gold(project_id, item_id, label, explanation)
    _print_rejudged(result, "no worker's gold answers changed.")


@items_group.command("remove-gold")
@click.argument("project_id", type=int)
@click.argument("item_id", type=int)
@_api_options
def remove_gold_command(project_id: int, item_id: int, url: str | None, token: str | None) -> None:
    """Make gold item ITEM_ID a regular item again (one too ambiguous to judge workers by): its
    gold answers leave the workers' gold tallies, and the crowd labels it from now on."""
    with _client(url, token) as client:
        result = client.remove_gold(project_id, item_id)
    _print_rejudged(result, "no worker's gold answers were counted on it.")


def _print_rejudged(result: dict[str, Any], when_none: str) -> None:
    """A gold change's result, then the gold tallies of the workers it moved."""
    workers = result.pop("workers")
    _print_record(result)
    if workers:
        _print_rows(workers, ["worker_id", "name", "gold_answers", "gold_correct", "gold_accuracy", "banned"])
    else:
        console.print(when_none)


@cli.command("export")
@click.argument("project_id", type=int)
@click.option("--what", type=click.Choice(["labels", "answers", "label-studio"]), default="labels", show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), help="Of labels and answers.  [default: csv]"
)
@click.option(
    "-o", "--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), required=True,
    callback=writable_file, help="The file (replaced if it exists, once the download is whole); - = stdout.",
)  # fmt: skip
@_api_options
def export_command(project_id: int, what: str, fmt: str | None, out: Path, url: str | None, token: str | None) -> None:
    """Download labels, answers or Label Studio JSON of a project (streamed to OUT, in the format
    its suffix names: .csv, .jsonl or .parquet; CSV otherwise)."""
    if what == "label-studio" and fmt is not None:
        raise click.UsageError("--what label-studio is always JSON; --format is for labels and answers.")
    fmt = _export_format(fmt, out) if what != "label-studio" else "csv"
    if str(out) == "-":  # as `aggregate -o -`; a file named "-" is -o ./-
        stdout = sys.stdout.buffer  # click 8.5 deprecates get_binary_stream
        if fmt == "parquet" and stdout.isatty():
            raise click.UsageError("Parquet is binary: send -o - into a pipe or a file, or give -o FILE.")
        with _client(url, token) as client:
            client.export(project_id, what, fmt, stdout)
        stdout.flush()
        return
    with _client(url, token) as client:
        client.export(project_id, what, fmt, out)
    console.print(f"wrote {out} ({out.stat().st_size:,} bytes)")


_EXPORT_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}


def _export_format(fmt: str | None, out: Path) -> str:
    """``--format``, else the one ``out``'s suffix names (as ``aggregate --out`` does), else CSV:
    ``-o labels.parquet`` wrote CSV into a file named .parquet. The two must not disagree."""
    named = _EXPORT_SUFFIXES.get(out.suffix.lower())
    if fmt is not None and named is not None and fmt != named:
        raise click.UsageError(f"--format {fmt} but {out} ends in {out.suffix}: give one or make them agree.")
    return fmt or named or "csv"


def _near_name(row: int | None, external_id: str | None, item_id: int) -> str:
    """An item of a near-duplicate pair as the file names it: its row and id; an earlier item by its id."""
    named = "" if external_id is None else f" (id {external_id})"
    return f"item {item_id}{named}" if row is None else f"row {row}{named}"


def _print_record(record: dict[str, Any], as_json: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(record))
        return
    table = Table(show_header=False)
    for key, value in record.items():
        table.add_row(str(key), _cell(value))
    stdout_console().print(table)


def _cell(value: Any) -> str:
    """A value as a table shows it: lists and objects as JSON, the same in every command, and a
    fraction to four places (a gold accuracy printed as 0.46938775510204084); ``--json`` keeps all."""
    if isinstance(value, float):
        return str(round(value, 4))
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _print_rows(rows: list[dict[str, Any]], columns: list[str], as_json: bool = False) -> None:
    if as_json:  # whole rows, not only the columns the table shows
        click.echo(json.dumps(rows))
        return
    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    stdout_console().print(table)
