"""The wheel, installed alone in fresh virtual environments, with and without the extras.

Slow-ish by nature (two venvs; pip's cache makes the second run quick) and it needs the package
index, as installing the package does.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import read_terminal

from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer

ROOT = Path(__file__).parent.parent
IMAGE = ROOT / "examples" / "images" / "bottle.jpg"


def sh(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command of the test venvs with a clean environment; never raises on failure."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REMBG_")}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd
    )


def checked(*args: str | Path, cwd: Path | None = None) -> str:
    """Run a command that must succeed; its stdout."""
    result = sh(*args, cwd=cwd)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel, the way pip builds it for an install."""
    out = tmp_path_factory.mktemp("wheel")
    checked(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", out, ROOT)
    (built,) = out.glob("rembg_async-*.whl")
    return built


def make_venv(path: Path, *requirements: str) -> Path:
    """A fresh venv at ``path`` with ``requirements`` installed; its bin directory."""
    venv.create(path, with_pip=True)
    checked(path / "bin" / "python", "-m", "pip", "install", "-q", *requirements)
    return path / "bin"


@pytest.fixture(scope="module")
def plain(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install rembg-async`: no extras."""
    return make_venv(tmp_path_factory.mktemp("plain") / "venv", str(wheel))


@pytest.fixture(scope="module")
def server_extra(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install 'rembg-async[server]'`, with pytest for the plugin."""
    return make_venv(tmp_path_factory.mktemp("server") / "venv", f"{wheel}[server]", "pytest")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    """A local server of this environment for the plain install's CLI to talk to."""
    from rembg_async.server import Account, ServerConfig

    with LocalServer(ServerConfig(accounts=(Account(api_key=TEST_API_KEY),))) as running:
        yield running


def test_plain_install_cli_works_end_to_end(
    plain: Path, server: LocalServer, tmp_path: Path
) -> None:
    """The plain install's `rembg-async remove`, piped, does the work and its summary: exit 0."""
    out = tmp_path / "out"
    result = sh(
        plain / "rembg-async", "remove", IMAGE, "-o", out, "--format", "png",
        "--api-key", TEST_API_KEY, "--base-url", server.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
    assert (out / "bottle.png").stat().st_size > 0
    assert "Traceback" not in result.stderr
    assert "rembg-async[cli]" not in result.stderr  # piped: no bars to offer
    assert "made 1, skipped 0, failed 0" in result.stderr  # the plain summary


#: Prints the distributions installed in a venv, and those rembg-async needs (its requirements
#: and theirs, markers evaluated), with pip's own copy of `packaging` (the venv has no other).
CLOSURE = """
import importlib.metadata as m, json, re
from pip._vendor.packaging.requirements import Requirement
key = lambda name: re.sub(r"[-_.]+", "-", name).lower()
installed = {key(d.metadata["Name"]): d for d in m.distributions()}
needed, todo, direct = set(), ["rembg-async"], None
while todo:
    name = todo.pop()
    if name in needed:
        continue
    needed.add(name)
    wanted = [Requirement(r) for r in installed[name].requires or ()]
    wanted = [key(r.name) for r in wanted if not r.marker or r.marker.evaluate({"extra": ""})]
    direct = sorted(wanted) if direct is None else direct
    todo += wanted
print(json.dumps([sorted(installed), sorted(needed), direct]))
"""


def test_wheel_ships_the_weights_and_no_other_top_level(wheel: Path) -> None:
    """The wheel carries u2netp.onnx with its licence notice, and installs no top-level name
    but ours (the old weights' wheel put a `rembg` package there, shadowing danielgatis's)."""
    names = zipfile.ZipFile(wheel).namelist()
    assert "rembg_async/server/_weights/u2netp.onnx" in names
    assert "rembg_async/server/_weights/NOTICE" in names
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"rembg_async", "pytest_rembg_async.py"}


def test_plain_install_is_the_small_base(plain: Path) -> None:
    """`pip install rembg-async` installs aiohttp, aiofiles, attrs and what they need, nothing
    else: no rich (the cli extra), numpy, Pillow or onnxruntime."""
    installed, needed, direct = json.loads(checked(plain / "python", "-c", CLOSURE))
    assert direct == ["aiofiles", "aiohttp", "attrs"]
    assert set(installed) - {"pip", "setuptools"} == set(needed)
    assert not {"rich", "pygments", "markdown-it-py", "numpy", "pillow"} & set(installed)


def run_in_terminal(*args: str | Path) -> tuple[int, str]:
    """A command of a test venv with a pseudo-terminal as stdout and stderr: exit code, screen."""
    leader, follower = pty.openpty()
    env = {key: value for key, value in os.environ.items() if not key.startswith("REMBG_")}
    env.pop("PYTHONPATH", None)
    command = [str(arg) for arg in args]
    process = subprocess.Popen(command, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    return read_terminal(leader, process, timeout=120)


def test_plain_install_cli_in_a_terminal(plain: Path, server: LocalServer, tmp_path: Path) -> None:
    """On a terminal, the base install's CLI does the work in plain lines and says once how to
    get the live bars (the cli extra)."""
    out = tmp_path / "out"
    code, screen = run_in_terminal(
        plain / "rembg-async", "remove", IMAGE, ROOT / "examples" / "images" / "mug.jpg",
        "-o", out, "--format", "png", "--api-key", TEST_API_KEY, "--base-url", server.url,
    )  # fmt: skip
    assert code == 0, screen
    assert screen.count("pip install 'rembg-async[cli]'") == 1, screen
    assert screen.count("ok ") == 2, screen
    assert "made 2, skipped 0, failed 0" in screen, screen
    assert "Traceback" not in screen
    assert (out / "bottle.png").stat().st_size > 0
    assert (out / "mug.png").stat().st_size > 0


def test_plain_install_usage_in_plain_lines(plain: Path, server: LocalServer) -> None:
    """`rembg-async usage` on the base install prints the plan and credits as plain lines."""
    result = sh(
        plain / "rembg-async", "usage", "--cycles",
        "--api-key", TEST_API_KEY, "--base-url", server.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("membership: ")
    assert lines[1].startswith("credits: ")
    assert "billing cycles (start, end, api, app):" in lines
    assert "Traceback" not in result.stderr


def test_plain_install_imports_cheaply_and_names_the_server_extra(plain: Path) -> None:
    """`import rembg_async` loads no rich or numpy; the server asks for its extra."""
    checked(
        plain / "python", "-c",
        "import sys, rembg_async; assert not {'rich', 'numpy', 'PIL'} & set(sys.modules)",
    )  # fmt: skip
    result = sh(plain / "python", "-c", "from rembg_async.server import LocalServer")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: rembg_async.server needs 'numpy', which the 'server' extra "
        "installs: pip install 'rembg-async[server]'"
    )


def test_server_extra_runs_the_local_cli(server_extra: Path, tmp_path: Path) -> None:
    """With the `server` extra, `remove --local` works with no key and no network."""
    result = sh(
        server_extra / "rembg-async", "remove", IMAGE, "--local", "-o", tmp_path, "--format", "png"
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bottle.png").stat().st_size > 0
    # No onnxruntime (the model extra): the first line says the threshold runs, and why.
    assert result.stderr.startswith("rembg-async --local: engine: classic"), result.stderr


def test_installed_pytest_plugin_serves_a_users_test(server_extra: Path, tmp_path: Path) -> None:
    """The wheel registers the plugin: a user's test gets `rembg_server` with no conftest."""
    (tmp_path / "test_user.py").write_text(
        "import urllib.request\n\n"
        "def test_usage(rembg_server):\n"
        "    request = urllib.request.Request(\n"
        "        rembg_server.url + '/api/membership-usage',\n"
        "        headers={'x-api-key': rembg_server.api_key},\n"
        "    )\n"
        "    with urllib.request.urlopen(request) as response:\n"
        "        assert response.status == 200\n"
    )
    output = checked(server_extra / "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert "1 passed" in output


def test_plain_install_cli_names_the_server_extra(plain: Path) -> None:
    """Without the `server` extra, `serve` says which extra to install: no traceback."""
    result = sh(plain / "rembg-async", "serve", "--port", "0")
    assert result.returncode != 0
    assert "pip install 'rembg-async[server]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_metadata_has_urls_and_classifiers(plain: Path) -> None:
    """PyPI gets the project URLs, the Python versions and topics, and an absolute-link README."""
    code = (
        "import importlib.metadata as m, json; d = m.metadata('rembg-async'); print(json.dumps("
        "[d.get_all('Project-URL'), d.get_all('Classifier'), d.get_payload()]))"
    )
    urls, classifiers, readme = json.loads(checked(plain / "python", "-c", code))
    labels = {url.split(",")[0] for url in urls}
    assert labels == {"Homepage", "Documentation", "Source", "Issues", "Changelog"}
    assert "Programming Language :: Python :: 3.10" in classifiers
    assert any(classifier.startswith("Topic :: ") for classifier in classifiers)
    relative = re.findall(r"\]\((?!https://)[^)]*\)", readme)
    assert relative == [], relative
