"""Every Python block of the README and of the docs runs as written, against the local server."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import Account, LocalServer, ServerConfig
from tests._moto import Moto, start_moto
from tests._valkey import start_valkey

ROOT = Path(__file__).parent.parent
IMAGES = ROOT / "examples" / "images"
#: The Redis the snippets name (never reached: the test puts its own Valkey's URL instead).
REDIS_IN_DOCS = "redis://cache:6379/0"
#: The bucket the snippets name: made in a real moto S3 on a loopback port, which the
#: environment points s3fs at (AWS_ENDPOINT_URL), with photos/mug.jpg and photos/orange.jpg.
BUCKET_IN_DOCS = "my-bucket"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)

# Runs a block as a notebook or `python -m asyncio` does: top-level await allowed.
RUNNER = """
import __main__, ast, asyncio, inspect, sys, types
source = open(sys.argv[1]).read()
code = compile(source, "snippet.py", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = __main__.__dict__  # as a script's: what it defines can be pickled, e.g. for processes
if code.co_flags & inspect.CO_COROUTINE:
    asyncio.run(types.FunctionType(code, namespace)())
else:
    exec(code, namespace)
"""


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def python_blocks() -> list[tuple[str, str]]:
    """Every ```python block of the README and the docs: (its id, its code)."""
    blocks = []
    for document in DOCUMENTS:
        for number, code in enumerate(BLOCK.findall(document.read_text()), 1):
            blocks.append((f"{document.relative_to(ROOT)}#{number}", code))
    return blocks


def readme_blocks() -> list[str]:
    """The README's ```python blocks, in order."""
    return BLOCK.findall((ROOT / "README.md").read_text())


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    """A local server with the account the snippets' REMBG_API_KEY names."""
    with LocalServer(ServerConfig(accounts=(Account(api_key=TEST_API_KEY),))) as running:
        yield running


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real Valkey on a loopback port, for the snippets that name ``redis://cache:6379/0``."""
    valkey = start_valkey()
    yield valkey.url
    valkey.close()


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    """A real S3 (moto) on a loopback port, for the snippets that name ``s3://my-bucket``."""
    server = start_moto()
    yield server
    server.close()


def point_s3_at(moto: Moto, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every S3 call of the snippet to ``moto``, and give it the snippets' bucket."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = moto.client()
    if BUCKET_IN_DOCS not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET_IN_DOCS)
    for name in ("mug.jpg", "orange.jpg"):
        client.put_object(
            Bucket=BUCKET_IN_DOCS, Key=f"photos/{name}", Body=(IMAGES / name).read_bytes()
        )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with the files the snippets name: cat.jpg, input.png, photos/*.jpg."""
    shutil.copy(IMAGES / "bottle.jpg", tmp_path / "cat.jpg")
    shutil.copy(IMAGES / "orange-small.png", tmp_path / "input.png")
    (tmp_path / "photos").mkdir()
    for name in ("mug.jpg", "orange.jpg"):
        shutil.copy(IMAGES / name, tmp_path / "photos" / name)
    (tmp_path / "runner.py").write_text(RUNNER)
    return tmp_path


def test_the_readme_has_its_python_blocks() -> None:
    """The extraction finds the README's snippets (so the test below cannot pass empty)."""
    blocks = readme_blocks()
    assert len(blocks) >= 6
    assert any("asyncio.run(main())" in block for block in blocks)


@pytest.mark.parametrize(("where", "block"), python_blocks(), ids=[i for i, _ in python_blocks()])
def test_snippet_runs(
    where: str,
    block: str,
    server: LocalServer,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """The Python block at `where` runs to the end without an error (or its tests pass);
    the Redis the snippets name is a real one on a loopback port."""
    if re.search(r"^import ray$", block, re.MULTILINE) and not _ray_here():
        pytest.skip("Ray is not in the test extra (hundreds of MB): `nox -s ray` runs this one")
    monkeypatch.setenv("REMBG_API_KEY", TEST_API_KEY)
    monkeypatch.setenv("REMBG_BASE_URL", server.url)
    if REDIS_IN_DOCS in block:
        block = block.replace(REDIS_IN_DOCS, request.getfixturevalue("redis_url"))
    if f"s3://{BUCKET_IN_DOCS}" in block:
        point_s3_at(request.getfixturevalue("moto"), monkeypatch)
    (workdir / "snippet.py").write_text(block)
    if re.search(r"^(async )?def test_", block, re.MULTILINE):  # tests for a user's suite
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "snippet.py"]
        command += ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"]
    else:
        command = [sys.executable, "-W", "error", "runner.py", "snippet.py"]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"


def _ray_here() -> bool:
    """Whether Ray is installed; `nox -s ray` sets REMBG_ASYNC_REQUIRE_RAY so it cannot skip."""
    return importlib.util.find_spec("ray") is not None or "REMBG_ASYNC_REQUIRE_RAY" in os.environ
