"""A missing optional dependency names the extra that installs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rembg_async._extras import import_optional, require_extra


def test_missing_module_names_the_extra() -> None:
    """The error says which extra to install, keeps the module's name and is an ImportError."""
    with pytest.raises(ModuleNotFoundError) as caught:
        import_optional("no_such_module_for_rembg", extra="redis", feature="rembg_async.redis")
    assert str(caught.value) == (
        "rembg_async.redis needs 'no_such_module_for_rembg', which the 'redis' extra installs: "
        "pip install 'rembg-async[redis]'"
    )
    assert caught.value.name == "no_such_module_for_rembg"
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_present_modules_pass() -> None:
    """Installed modules are returned (or, for require_extra, accepted) as they are."""
    assert import_optional("json", extra="x", feature="y") is sys.modules["json"]
    require_extra("x", "json", "os", feature="y")


def test_server_without_numpy_says_install_the_server_extra() -> None:
    """`from rembg_async.server import LocalServer` without NumPy asks for the extra."""
    code = (
        "import sys; sys.modules['numpy'] = None\n"  # None in sys.modules: the import fails
        "try:\n"
        "    from rembg_async.server import LocalServer\n"
        "except ModuleNotFoundError as error:\n"
        "    print(error)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install 'rembg-async[server]'" in output
    assert "'numpy'" in output


def test_importing_the_package_loads_no_optional_dependency() -> None:
    """`import rembg_async` stays cheap: no rich (the CLI's), numpy or Pillow (the server's),
    fsspec or s3fs (remote inputs and outputs')."""
    optional = "{'rich', 'numpy', 'PIL', 'fsspec', 's3fs'}"
    code = f"import sys, rembg_async; print(sorted({optional} & set(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


def test_a_remote_url_without_fsspec_names_the_fsspec_extra() -> None:
    """An s3:// input without fsspec installed asks for the `fsspec` extra, before sending."""
    code = (
        "import asyncio, sys; sys.modules['fsspec'] = None\n"
        "from rembg_async import AsyncRembg\n"
        "async def main():\n"
        "    async with AsyncRembg('k', base_url='http://127.0.0.1:9') as client:\n"
        "        await client.remove('s3://bucket/in/cat.jpg')\n"
        "try:\n"
        "    asyncio.run(main())\n"
        "except ModuleNotFoundError as error:\n"
        "    print(error)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == (
        "the remote URL 's3://bucket/in/cat.jpg' needs 'fsspec', which the 'fsspec' extra "
        "installs: pip install 'rembg-async[fsspec]'"
    )
