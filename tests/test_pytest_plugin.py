"""The rembg_server fixture is available to any project that installs the package."""

from __future__ import annotations

import pytest


def test_plugin_is_registered_for_other_projects(pytester: pytest.Pytester) -> None:
    """A user's test file, with no conftest of ours, gets a working rembg_server fixture."""
    pytester.makepyfile(
        """
        import io
        import requests
        from PIL import Image

        def test_users_upload(rembg_server):
            image = io.BytesIO()
            Image.new("RGB", (30, 20), "white").save(image, "PNG")
            response = requests.post(
                f"{rembg_server.url}/rmbg",
                headers={"x-api-key": rembg_server.api_key},
                files={"image": ("x.png", image.getvalue())},
                data={"format": "png"},
            )
            assert response.status_code == 200
            assert Image.open(io.BytesIO(response.content)).size == (30, 20)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_loading_the_plugin_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    """A pytest run that uses no fixture of ours imports neither aiohttp nor rembg_async."""
    pytester.makepyfile(
        """
        import sys

        def test_nothing_of_ours_is_imported():
            assert "pytest_rembg_async" in sys.modules  # the plugin is loaded...
            loaded = {name.split(".")[0] for name in sys.modules}
            assert not loaded & {"aiohttp", "rembg_async", "numpy", "PIL"}  # ...and cost nothing
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_fixtures_keep_their_documented_import_path() -> None:
    """rembg_async.pytest_plugin still exports the fixtures and TEST_API_KEY."""
    import pytest_rembg_async
    from rembg_async import pytest_plugin

    assert pytest_plugin.rembg_server is pytest_rembg_async.rembg_server
    assert pytest_plugin.rembg_server_factory is pytest_rembg_async.rembg_server_factory
    assert pytest_plugin.TEST_API_KEY == pytest_rembg_async.TEST_API_KEY
