"""The command line refuses what cannot work before it starts: a port in use, an option out of
range, a path it cannot write, a database it cannot open. Each is one line and an exit code from
README's table, not a hang, a traceback or an error after minutes of work."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from crowdloop.ports import free_port


def crowdloop(
    *args: str, timeout: float = 120, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "crowdloop", *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=os.environ | (env or {})
    )


def one_line(done: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert done.returncode == code, done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something listens on (and never answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_free_port_is_outside_the_ports_the_kernel_gives_connections_and_never_a_taken_one(monkeypatch):
    """Ports found by binding to 0 were ephemeral ones, which any outgoing connection could take
    before the server bound it; a port something listens on is never returned."""
    from crowdloop import ports
    from crowdloop.errors import CrowdloopError

    port = free_port()
    assert port in ports.server_ports() and port in ports.SERVER_PORTS
    if ports.EPHEMERAL_RANGE.exists():
        low = int(ports.EPHEMERAL_RANGE.read_text().split()[0])
        assert port < low or low - ports.SERVER_PORTS.start < 1000
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # it is free
        sock.listen()
        monkeypatch.setattr(ports, "server_ports", lambda: range(port, port + 1))
        with pytest.raises(CrowdloopError, match=f"no free port among 5 tried in {port}-{port}"):
            free_port(attempts=5)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_port_in_use_says_so_before_serving(taken_port, tmp_path, workers):
    """It printed "crowdloop serving ..." and ended with exit 3 ("not fitted"), or a traceback with --workers 2."""
    done = crowdloop("serve", "--port", str(taken_port), "--workers", workers,
                     "--database-url", f"sqlite:///{tmp_path / 'db.sqlite'}")  # fmt: skip
    one_line(done, 2, f"port {taken_port} is in use on 127.0.0.1")
    assert "crowdloop serving" not in done.stderr


def _held(port: int) -> bool:
    """Whether something holds ``port`` on 127.0.0.1 against another server: one that sets
    ``SO_REUSEADDR``, as most do, can bind a port that is bound and not listened on."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_holds_its_port_while_it_migrates(tmp_path, workers):
    """It checked the port, migrated, then let uvicorn bind: a process that took the port in those
    seconds made it fail after "crowdloop serving". The migrations wait here on a lock this test
    holds on the database, and the port must be held meanwhile; then it serves on it."""
    import sqlite3
    import time

    import httpx

    path, port = tmp_path / "db.sqlite", free_port()
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("CREATE TABLE held (x)")
    lock.execute("BEGIN EXCLUSIVE")  # the migrations wait on it (busy timeout 30 s)
    command = [sys.executable, "-m", "crowdloop", "serve", "--port", str(port), "--workers", workers,
               "--database-url", f"sqlite:///{path}"]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, held_twice = time.monotonic() + 25, False
        while time.monotonic() < deadline and not held_twice and server.poll() is None:
            held_twice = _held(port) and (time.sleep(0.2) or _held(port))  # not ensure_port_free's moment
            time.sleep(0.05)
        assert held_twice, "the port was not held while the migrations waited"
        lock.execute("ROLLBACK")
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and status != 200 and server.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.2)
        assert status == 200, server.poll()
    finally:
        lock.close()
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert f"crowdloop serving sqlite:///{path} on http://127.0.0.1:{port}" in stderr, stderr
    assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize(("option", "value"), [("--port", "99999"), ("--port", "0"), ("--workers", "0")])
def test_serve_refuses_a_port_or_worker_count_out_of_range(option, value):
    """--port 99999 listened nowhere for ever; --workers 0 printed "0 process(es)"."""
    done = crowdloop("serve", option, value, timeout=60)
    assert done.returncode == 2 and f"Invalid value for '{option}'" in done.stderr, done.stderr


class _Healthy(BaseHTTPRequestHandler):
    """Answers every GET with 200, as another crowdloop server's /api/v1/health does."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_demo_on_a_port_another_server_answers_on_says_it_is_in_use(tmp_path: Path) -> None:
    """The demo took the other server's health answer for its child's and failed on its token, exit 4."""
    other = ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    port = other.server_address[1]
    try:
        done = crowdloop("demo", "--port", str(port), "--dir", str(tmp_path / "demo"), "--rounds", "1",
                         "--dataset", "rte", "--trials", "0")  # fmt: skip
    finally:
        other.shutdown()
        other.server_close()
    one_line(done, 2, f"port {port} is in use")


EDGE = ("edge", "run", "--server", "http://127.0.0.1:1", "--token", "t", "--project", "1")


def test_ctrl_c_while_train_waits_says_the_server_goes_on_and_exits_130():
    """It said so and exited 0: a script could not tell the command was interrupted."""
    import signal

    with socket.socket() as server:  # accepts the request and never answers, as a long training
        server.bind(("127.0.0.1", free_port()))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        command = [sys.executable, "-m", "crowdloop", "train", "1", "--url", url, "--token", "t"]
        train = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        server.settimeout(60)
        connection, _ = server.accept()  # the request is sent: the command is waiting for the answer
        with connection:
            train.send_signal(signal.SIGINT)
            _, stderr = train.communicate(timeout=60)
    assert train.returncode == 130, stderr
    assert "stopped waiting. The server goes on training" in stderr and "Traceback" not in stderr


def test_edge_refuses_a_state_folder_another_servers_edge_left(tmp_path):
    """It served that server's kept model, and would have sent this server its feedback."""
    state = tmp_path / "edge"
    state.mkdir()
    (state / "server.json").write_text('{"server": "http://10.0.0.5:8000"}')
    done = crowdloop(*EDGE, "--state-dir", str(state), "--port", str(free_port()), timeout=60)
    one_line(done, 2, f"{state} holds the model and unsent feedback of an edge of http://10.0.0.5:8000, not "
                      "http://127.0.0.1:1: give another --state-dir")  # fmt: skip


@pytest.mark.parametrize(
    ("option", "value"),
    [("--poll-interval", "0"), ("--threshold", "5"), ("--audit-rate", "-3"), ("--port", "99999")],
)
def test_edge_refuses_options_out_of_range(option, value, tmp_path):
    """--poll-interval 0 checked for models in a busy loop (67k log lines in 22 s); the others were taken."""
    done = crowdloop(*EDGE, "--state-dir", str(tmp_path / "edge"), option, value, timeout=60)
    assert done.returncode == 2 and f"Invalid value for '{option}'" in done.stderr, done.stderr


def test_edge_on_a_port_in_use_or_a_state_dir_that_is_a_file(taken_port, tmp_path):
    """Both were tracebacks (OSError from the HTTP server, FileExistsError from mkdir)."""
    done = crowdloop(*EDGE, "--state-dir", str(tmp_path / "edge"), "--port", str(taken_port), timeout=60)
    one_line(done, 2, f"port {taken_port} is in use")
    (tmp_path / "file").write_text("")
    done = crowdloop(*EDGE, "--state-dir", str(tmp_path / "file"), timeout=60)
    one_line(done, 2, "is a file")
    done = crowdloop(*EDGE, "--state-dir", str(tmp_path / "file" / "edge"), timeout=60)
    one_line(done, 2, "is not a folder")


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("notaurl", 2, "notaurl is not a database URL"),
        ("bogus://x", 2, "bogus://x is not a database URL"),
        ("sqlite:////nonexistent/folder/x.db", 1, "cannot open the database sqlite:////nonexistent/folder/x.db"),
        ("postgresql://u:secret@127.0.0.1:1/db", 1, "cannot open the database postgresql://u:***@127.0.0.1:1/db"),
        ("postgresql://u@127.0.0.1:1/db?password=secret&sslpassword=secret", 1,
         "cannot open the database postgresql://u@127.0.0.1:1/db?password=***&sslpassword=***"),
        ("mysql://u@h/db", 2, "mysql://u@h/db is not a database URL crowdloop can use (mysql is not one of its"),
        ("postgresql+asyncpg://u@h/db", 2, "it talks to postgresql through psycopg only"),
        ("postgresql://u:secret@127.0.0.1:notaport/x", 2, "postgresql://u:***@127.0.0.1:notaport/x is not a database "
                                                          "URL crowdloop can use: its port is not a number"),
    ],
)  # fmt: skip
def test_a_database_url_that_cannot_work_is_one_line(url, code, message):
    """Each was a SQLAlchemy traceback (ArgumentError, NoSuchModuleError, OperationalError). The
    admin commands refuse a SQLite file that is not there before they try to open it. ``mysql://``
    and ``postgresql+asyncpg://`` were ModuleNotFoundError tracebacks (and crowdloop's SQL is
    SQLite's and PostgreSQL's only), a port that is not a number a ValueError one, and a password
    in the query was printed in clear."""
    missing_file = url.startswith("sqlite:")
    for command in (["admin", "token", "bob"], ["admin", "create-user", "bob", "--role", "worker"], ["serve"]):
        done = crowdloop(*command, "--database-url", url, timeout=60)
        if missing_file and command[0] == "admin":
            one_line(done, 6, "no SQLite database at /nonexistent/folder/x.db")
        else:
            one_line(done, code, message)
        assert "secret" not in done.stderr


def test_the_supported_databases_are_named_and_a_password_reaches_the_driver():
    done = crowdloop("serve", "--database-url", "mysql://u@h/db", timeout=60)
    assert "SQLite (sqlite:///crowdloop.db" in done.stderr and "PostgreSQL (postgresql://user@host/db" in done.stderr
    from crowdloop.storage.db import make_engine

    # str() of SQLAlchemy's URL hides the password: the engine was made with "***" for it
    assert make_engine("postgresql://u:pw@127.0.0.1/db").url.password == "pw"


def _database(tmp_path: Path, revision: str = "head") -> str:
    """A SQLite database migrated to ``revision``."""
    from crowdloop.storage.db import make_engine
    from support import upgrade_to

    url = f"sqlite:///{tmp_path / 'crowdloop.db'}"
    engine = make_engine(url)
    upgrade_to(engine, revision)
    engine.dispose()
    return url


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_refuses_an_admin_token_it_cannot_give_once_before_serving(tmp_path, workers):
    """With --workers 2 each process died on it as it started and uvicorn replaced them for ever,
    after "crowdloop serving"; with one, it printed "crowdloop serving" first."""
    from crowdloop.crowd.auth import create_user
    from crowdloop.storage.db import make_engine, session_factory, unit_of_work

    url = _database(tmp_path)
    engine = make_engine(url)
    with unit_of_work(session_factory(engine)) as session:
        create_user(session, "admin", "worker")
    engine.dispose()
    done = crowdloop("serve", "--port", str(free_port()), "--workers", workers, "--database-url", url,
                     env={"CROWDLOOP_ADMIN_TOKEN": "admintoken-0123456789abcdef"}, timeout=90)  # fmt: skip
    one_line(done, 7, "CROWDLOOP_ADMIN_TOKEN belongs to, or would go to, user 'admin', who is a worker")
    assert "crowdloop serving" not in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr


def test_with_auto_migrate_off_serve_refuses_an_old_schema_and_migrate_upgrades_it(tmp_path):
    """``CROWDLOOP_AUTO_MIGRATE=false`` was ignored by ``serve``, which always upgraded; and there
    was no command to upgrade with instead."""
    from crowdloop.storage.migrate import head

    newest = head()
    older = f"{int(newest) - 1:04d}"
    url = _database(tmp_path, older)
    off = {"CROWDLOOP_AUTO_MIGRATE": "false"}
    for command in (["serve", "--port", str(free_port())], ["admin", "token", "admin"]):
        done = crowdloop(*command, "--database-url", url, env=off, timeout=90)
        one_line(done, 7, f"the database is at revision {older} and this crowdloop needs revision {newest}")
        assert "`crowdloop migrate --database-url URL` upgrades it" in done.stderr
        assert "crowdloop serving" not in done.stderr
    done = crowdloop("migrate", "--database-url", url, timeout=90)
    assert done.returncode == 0 and f"migrated {url} from revision {older} to {newest}." in done.stderr, done.stderr
    done = crowdloop("migrate", "--database-url", url, timeout=90)
    assert done.returncode == 0 and f"is at revision {newest}, this crowdloop's: nothing to do" in done.stderr
    done = crowdloop("admin", "create-user", "bob", "--role", "worker", "--database-url", url, env=off, timeout=90)
    assert done.returncode == 0, done.stderr  # at head: taken as it is


def test_a_database_a_newer_crowdloop_migrated_is_refused_in_one_line(tmp_path):
    """It was alembic's CommandError traceback ("Can't locate revision identified by '0014'")."""
    from sqlalchemy import create_engine, text

    from crowdloop.storage.migrate import head

    url = _database(tmp_path)
    newer = f"{int(head()) + 1:04d}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :newer"), {"newer": newer})
    engine.dispose()
    message = f"the database is at revision {newer}, newer than this crowdloop (head {head()}): upgrade crowdloop."
    for command in (["serve", "--port", str(free_port())], ["migrate"], ["admin", "token", "admin"]):
        one_line(crowdloop(*command, "--database-url", url, timeout=90), 7, message)
    done = crowdloop("serve", "--port", str(free_port()), "--database-url", url, env={"CROWDLOOP_AUTO_MIGRATE": "0"})
    one_line(done, 7, message)


def test_a_sqlite_url_with_three_slashes_to_a_missing_folder_says_it_is_relative(tmp_path):
    """``sqlite:///tmp/x/cl.db`` is relative to the current folder: the error said only "unable to
    open database file"."""
    done = crowdloop("serve", "--database-url", "sqlite:///tmp/x/cl.db", timeout=60, cwd=tmp_path)
    one_line(done, 1, "its folder tmp/x does not exist (the path is relative to")
    assert "four slashes, sqlite:////tmp/x/cl.db" in done.stderr


def test_overlap_that_is_not_min_max_names_the_option():
    """--overlap abc was a ValueError traceback."""
    done = crowdloop("projects", "create", "--name", "x", "--labels", "a,b", "--overlap", "abc", "--token", "t")
    assert done.returncode == 2, done.stderr
    assert "Invalid value for '--overlap': expected min-max" in done.stderr and "Traceback" not in done.stderr


def test_a_file_or_database_failure_no_command_checked_for_is_one_line():
    """The backstop in main(): an OSError or a SQLAlchemy error raised by any command."""
    script = (
        "import sys, click, sqlalchemy.exc; from crowdloop.cli import cli, main\n"
        "@cli.command('fail')\n@click.argument('kind')\n"
        "def fail(kind):\n"
        "    if kind == 'os': open('/nonexistent/folder/f.txt', 'w')\n"
        "    raise sqlalchemy.exc.OperationalError('SELECT 1', {}, Exception('server closed the connection'))\n"
        "main(sys.argv[1:])"
    )
    for kind, message in (("os", "/nonexistent/folder/f.txt: No such file or directory"),
                          ("db", "the database: (builtins.Exception) server closed the connection")):  # fmt: skip
        done = subprocess.run([sys.executable, "-c", script, "fail", kind], capture_output=True, text=True, timeout=60)
        one_line(done, 1, message)
        assert done.stderr.strip().count("\n") == 0, done.stderr


API = ("--url", "http://127.0.0.1:1", "--token", "t")


def test_an_output_path_that_cannot_be_written_is_refused_before_the_work(tmp_path):
    """export -o and models download -o failed (a traceback) only after the download, demo --report after the
    whole run (~50 s); each now fails at once, naming the path."""
    (tmp_path / "file").write_text("")
    missing = tmp_path / "missing" / "out.csv"
    one_line(crowdloop("export", "1", "-o", str(missing), *API, timeout=60), 2, f"cannot write {missing}")
    assert not missing.parent.exists()
    done = crowdloop("models", "download", "1", "-o", str(tmp_path / "file" / "dl"), *API, timeout=60)
    one_line(done, 2, f"{tmp_path / 'file'} is not a folder")
    report = tmp_path / "file" / "report.html"
    done = crowdloop("demo", "--report", str(report), "--dir", str(tmp_path / "d"))
    one_line(done, 2, f"cannot write {report}: Not a directory")
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs /sys")
def test_a_folder_root_may_not_write_in_is_refused(tmp_path):
    """os.access says root may write in /sys; making a folder there says otherwise."""
    try:
        (Path("/sys") / "crowdloop-probe").mkdir()
    except OSError:
        pass
    else:
        pytest.skip("/sys is writable here")
    done = crowdloop("models", "download", "1", "-o", "/sys/dl", *API, timeout=60)
    one_line(done, 2, "cannot write in /sys")


def test_the_path_checks_leave_nothing_behind_and_accept_folders_the_command_makes(tmp_path):
    from crowdloop.cli.checks import writable_file, writable_file_or_folders, writable_folder

    report = tmp_path / "new" / "deeper" / "report.html"
    assert writable_file_or_folders(None, None, report) == report  # type: ignore[arg-type]
    assert writable_folder(None, None, tmp_path / "a" / "b") == tmp_path / "a" / "b"  # type: ignore[arg-type]
    assert writable_file(None, None, tmp_path / "out.csv") == tmp_path / "out.csv"  # type: ignore[arg-type]
    (tmp_path / "kept.csv").write_text("data")
    writable_file(None, None, tmp_path / "kept.csv")  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.csv"]
    assert (tmp_path / "kept.csv").read_text() == "data"


def test_a_model_download_from_a_server_that_is_not_there_is_one_line(tmp_path):
    """It was httpx's ConnectError traceback: the download streams, outside the client's usual call."""
    port = free_port()  # nobody listens on it
    done = crowdloop("models", "download", "1", "-o", str(tmp_path / "model"), "--url", f"http://127.0.0.1:{port}",
                     "--token", "t", timeout=60)  # fmt: skip
    one_line(done, 8, f"cannot reach the server at http://127.0.0.1:{port}")  # 8: nothing was sent, retry later
    assert not (tmp_path / "model").exists()
