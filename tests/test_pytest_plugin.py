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
