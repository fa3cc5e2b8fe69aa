"""`clipsearch web` as a real process, and who may use the server: loopback, passwords, the token, Host."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client.web.security import binding_password, check_basic, is_loopback, resolve_password
from clipsearch.envconfig import ConfigError
from tests.service.web.conftest import WebStack
from tests.service.web.support import request
from tests.support.e2e import REPO, clipsearch_command

# `clipsearch web` as a process of its own: the system tier.
pytestmark = pytest.mark.system

START_TIMEOUT = 120.0
TOKEN = "tok-3f9a-never-shown"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_binding_beyond_loopback_needs_a_password_the_token_or_insecure() -> None:
    assert binding_password("127.0.0.1", None, TOKEN, False) is None  # loopback: the token stays for gRPC only
    assert binding_password("127.0.0.1", "pw", None, False) == "pw"  # a password set is always asked
    assert binding_password("0.0.0.0", "pw", TOKEN, False) == "pw"
    assert binding_password("0.0.0.0", None, TOKEN, False) == TOKEN
    assert binding_password("0.0.0.0", None, None, True) is None
    with pytest.raises(ConfigError, match="--insecure"):
        binding_password("0.0.0.0", None, None, False)


def test_the_password_comes_from_the_option_then_the_variable_then_its_file(tmp_path: Path) -> None:
    option, variable_file = tmp_path / "option", tmp_path / "variable"
    option.write_text("from-option\n")
    variable_file.write_text(" from-file ")
    env = {"CLIPSEARCH_WEB_PASSWORD": "from-variable", "CLIPSEARCH_WEB_PASSWORD_FILE": str(variable_file)}
    assert resolve_password(env, option, None) == "from-option"
    assert resolve_password(env, None, None) == "from-variable"
    assert resolve_password({"CLIPSEARCH_WEB_PASSWORD_FILE": str(variable_file)}, None, None) == "from-file"
    assert resolve_password({}, None, TOKEN) is None
    with pytest.raises(ConfigError, match="--password-file"):
        resolve_password({}, tmp_path / "missing", None)
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(ConfigError, match="empty"):
        resolve_password({"CLIPSEARCH_WEB_PASSWORD_FILE": str(tmp_path / "empty")}, None, None)


def test_basic_credentials_are_checked_on_the_password_alone() -> None:
    import base64

    def basic(text: str) -> bytes:
        return b"Basic " + base64.b64encode(text.encode())

    assert check_basic(basic("anyone:密码 pw"), "密码 pw")
    assert check_basic(basic(":密码 pw"), "密码 pw")
    assert not check_basic(basic("anyone:wrong"), "密码 pw")
    assert not check_basic(basic("no colon"), "密码 pw")
    assert not check_basic(b"Basic !!!", "密码 pw")
    assert not check_basic(b"Bearer " + "密码 pw".encode(), "密码 pw")
    assert not check_basic(None, "密码 pw")


def test_with_a_password_everything_but_healthz_asks_for_it(
    web_stack: WebStack, web_app_factory: Callable[..., str]
) -> None:
    password = "correct horse 电池"
    url = web_app_factory(password=password)
    item = web_stack.id_of("red.png")
    for target in ("/", "/api/stats", "/api/search?q=cat", f"/media/{item}/thumb", "/openapi.json", "/static/app.js"):
        refused = request(url, "GET", target)
        assert refused.status == 401, target
        assert refused.headers["www-authenticate"].startswith('Basic realm="clipsearch"')
        assert refused.error == "a password is required"
        assert request(url, "GET", target, password="wrong").status == 401
    assert request(url, "GET", "/api/stats", password=password).status == 200
    assert request(url, "GET", f"/media/{item}/thumb", password=password).status == 200
    assert request(url, "GET", "/healthz").json() == {"ok": True}


def test_without_a_password_only_loopback_host_names_are_answered(web_stack: WebStack) -> None:
    port = web_stack.base_url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
        assert request(web_stack.base_url, "GET", "/healthz", headers={"Host": host}).status == 200, host
    for host in (f"evil.example:{port}", "attacker.test", f"192.168.0.2:{port}"):
        reply = request(web_stack.base_url, "GET", "/api/stats", headers={"Host": host})
        assert reply.status == 421 and "localhost" in reply.error, host


def test_every_response_carries_the_security_headers(web_stack: WebStack) -> None:
    for target in ("/", "/api/stats", "/api/nothing"):
        headers = request(web_stack.base_url, "GET", target).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in headers["content-security-policy"]


class WebProcess:
    """`clipsearch web` running; url is what it printed."""

    def __init__(self, args: list[str], env: dict[str, str], command: list[str] | None = None) -> None:
        self.process = subprocess.Popen(
            [*(command or [*clipsearch_command(), "web"]), *args],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.line = self._first_line()
        self.url = self.line.removeprefix("clipsearch web: ").strip().rstrip("/")

    def _first_line(self) -> str:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(START_TIMEOUT):
            self.stop()
            pytest.fail("clipsearch web printed nothing")
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(30)
            stderr = self.process.stderr.read() if self.process.stderr else ""
            pytest.fail(f"clipsearch web exited with {self.process.returncode}: {stderr}")
        return line

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.communicate(timeout=60)  # waits, and closes the pipes
        return self.process.returncode


@pytest.fixture
def web_env(web_stack: WebStack, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPSEARCH_")}
    env.update(
        EMBEDDER_ADDR=web_stack.embedder_address,
        SEARCH_ADDR=web_stack.search_address,
        XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
        PYTHONPATH=str(REPO),
    )
    return env


@pytest.fixture
def started() -> Iterator[Callable[..., WebProcess]]:
    processes: list[WebProcess] = []

    def start(args: list[str], env: dict[str, str], command: list[str] | None = None) -> WebProcess:
        processes.append(WebProcess(args, env, command))
        return processes[-1]

    yield start
    for process in processes:
        process.stop()


def test_clipsearch_web_serves_the_library_and_stops_on_sigterm(
    web_stack: WebStack, web_env: dict[str, str], started: Callable[..., WebProcess]
) -> None:
    web = started(["--port", "0"], web_env)
    assert web.line.startswith("clipsearch web: http://127.0.0.1:") and web.line.endswith("/\n")
    stats = request(web.url, "GET", "/api/stats").json()
    assert stats["services"]["search"]["up"] and stats["items"] == sum(len(i) for i in web_stack.items.values())
    thumb = request(web.url, "GET", f"/media/{web_stack.id_of('黄色的花.png')}/thumb")
    assert thumb.status == 200
    # The cache goes where XDG says.
    assert any(Path(web_env["XDG_CACHE_HOME"], "clipsearch", "web").rglob("*"))
    began = time.monotonic()
    assert web.stop() == 0
    assert time.monotonic() - began < 30


def test_python_m_client_web_and_explicit_addresses_work_too(
    web_stack: WebStack, web_env: dict[str, str], started: Callable[..., WebProcess], tmp_path: Path
) -> None:
    env = {k: v for k, v in web_env.items() if k not in ("EMBEDDER_ADDR", "SEARCH_ADDR")}
    args = ["--port", "0", "--embedder", web_stack.embedder_address, "--search", web_stack.search_address]
    web = started([*args, "--cache-dir", str(tmp_path / "cache")], env, [sys.executable, "-m", "client.web"])
    assert request(web.url, "GET", "/api/search?q=" + "%E8%8A%B1").status == 200
    assert (tmp_path / "cache").is_dir()


def test_listening_beyond_loopback_without_a_password_is_refused_in_one_line(web_env: dict[str, str]) -> None:
    result = subprocess.run(
        [*clipsearch_command(), "web", "--host", "0.0.0.0", "--port", "0"],
        env=web_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--insecure" in lines[0] and "CLIPSEARCH_WEB_PASSWORD" in lines[0]


def test_a_missing_password_file_is_refused_in_one_line(web_env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        [*clipsearch_command(), "web", "--port", "0", "--password-file", str(tmp_path / "nope")],
        env=web_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--password-file" in result.stderr


def test_insecure_listens_beyond_loopback_without_a_password(
    web_env: dict[str, str], started: Callable[..., WebProcess]
) -> None:
    web = started(["--host", "0.0.0.0", "--port", "0", "--insecure"], web_env)
    port = web.url.rsplit(":", 1)[1]
    reply = request(f"http://127.0.0.1:{port}", "GET", "/api/stats", headers={"Host": f"photos.lan:{port}"})
    assert reply.status == 200


def test_beyond_loopback_the_token_is_the_password_and_never_shown(
    web_env: dict[str, str], started: Callable[..., WebProcess], web_stack: WebStack
) -> None:
    env = {**web_env, "CLIPSEARCH_AUTH_TOKEN": TOKEN}
    web = started(["--host", "0.0.0.0", "--port", "0"], env)
    assert TOKEN not in web.line
    base = f"http://127.0.0.1:{web.url.rsplit(':', 1)[1]}"
    assert request(base, "GET", "/api/stats").status == 401
    assert request(base, "GET", "/api/stats", password="not the token").status == 401
    seen = [
        request(base, "GET", target, password=TOKEN)
        for target in ("/", "/api/stats", "/openapi.json", "/api/search?q=cat", "/static/app.js")
    ]
    assert all(reply.status == 200 for reply in seen[:4])
    for reply in seen:
        assert TOKEN.encode() not in reply.body
        assert all(TOKEN not in value for value in reply.headers.values())


def test_the_web_process_loads_neither_torch_nor_redis(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from client.web import WebSettings, create_app\n"
        "import client.web.server\n"
        "import client.cli.web\n"
        f"create_app(WebSettings(cache_dir=Path({str(tmp_path)!r})))\n"
        "heavy = [m for m in ('torch', 'transformers', 'redis', 'search_service', 'embedder_service') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
