"""The vendor's own examples run against the local server, changed only where they point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from rembg_async.server import Account, LocalServer, ServerConfig

EXAMPLES = Path(__file__).parent.parent / "examples" / "images"
VENDOR_KEY = "YOUR_API_KEY_HERE"  # the placeholder of the vendor's examples is a real key here
REMBG_JS = "@remove-background-ai/rembg.js@1.3.1"

# The vendor's "Python Requests" example, verbatim but for its URL and image path.
REQUESTS_EXAMPLE = """
import requests
# Endpoint URL for the background-removal API
url = "https://api.rembg.com/rmbg"
# Required API key header
headers = {
"x-api-key": "YOUR_API_KEY_HERE"
}
# The image file to process (opened in binary mode)
files = {
"image": open("/path/to/image.jpg", "rb")
}
# Optional form fields supported by your backend.
# Adjust values as needed; any of these can be omitted.
data = {
"format": "webp", # Output format: "webp" (default) or "png"
"w": 800, # Target width (maintains aspect ratio unless exact_resize is true)
"h": 600, # Target height
"exact_resize": "false", # "true" forces exact w×h, may distort
"mask": "false", # "true" returns only the alpha mask
"bg_color": "#ffffffff", # Optional solid background color (RGBA hex)
"angle": 0, # Rotation angle in degrees
"expand": "true", # Add padding so rotated images aren’t cropped
}
# Send the POST request with headers, file, and extra form data
response = requests.post(url, headers=headers, files=files, data=data)
# Handle the response
if response.status_code == 200:
# Save the processed image to disk
    with open("output.webp", "wb") as f:
        f.write(response.content)
    print("Background removed successfully → saved as output.webp")
else:
# Print error details if the request failed
    print("Error:", response.status_code, response.text)
"""

# rembg.js has its URL built in; an axios interceptor sends its request to the local server.
REMBG_JS_SCRIPT = r"""
const axios = require('axios');
const { rembg } = require('@remove-background-ai/rembg.js');
axios.interceptors.request.use((config) => {
  config.url = config.url.replace('https://api.rembg.com', process.env.REMBG_URL);
  return config;
});
const events = { upload: [], download: [] };
const record = (kind) => (event) => events[kind].push({ loaded: event.loaded, total: event.total });
(async () => {
  const asFile = await rembg({
    apiKey: process.env.REMBG_KEY, inputImage: process.argv[2],
    options: { format: 'png', w: 200 },
    onUploadProgress: record('upload'), onDownloadProgress: record('download'),
  });
  const asBase64 = await rembg({
    apiKey: process.env.REMBG_KEY,
    inputImage: { base64: require('fs').readFileSync(process.argv[2]).toString('base64') },
    options: { returnBase64: true, returnMask: true, angle: 90, bg_color: undefined },
    onUploadProgress: () => {}, onDownloadProgress: () => {},
  });
  let failure = null;
  try {
    await rembg({ apiKey: 'wrong', inputImage: process.argv[2],
                  onUploadProgress: () => {}, onDownloadProgress: () => {} });
  } catch (error) { failure = error.message; }
  const base64 = asBase64.base64Image.slice(0, 40);
  console.log(JSON.stringify({ path: asFile.outputImagePath, base64, events, failure }));
  // After an error answer rembg.js leaves a handle open that keeps Node alive: leave explicitly.
  process.exit(0);
})().catch((error) => { console.error(error); process.exit(1); });
"""


@pytest.fixture
def vendor_server(rembg_server_factory) -> LocalServer:
    """A server that knows the vendor examples' placeholder key."""
    return rembg_server_factory(ServerConfig(accounts=[Account(api_key=VENDOR_KEY)]))


def test_curl_example(vendor_server: LocalServer, tmp_path: Path) -> None:
    """The vendor's full curl example, every optional field included, gives an 800×600 WEBP."""
    if shutil.which("curl") is None:
        pytest.fail("curl is needed for this test (apt-get install curl)")
    output = tmp_path / "out.webp"
    command = [
        "curl", "--silent", "--show-error", "--fail-with-body",
        "-X", "POST", f"{vendor_server.url}/rmbg",
        "-H", f"x-api-key: {VENDOR_KEY}",
        "-F", f"image=@{EXAMPLES / 'mug.jpg'}",
        "-F", "format=webp", "-F", "w=800", "-F", "h=600", "-F", "exact_resize=false",
        "-F", "mask=false", "-F", "bg_color=#ffffffff", "-F", "angle=0", "-F", "expand=true",
        "-o", str(output),
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=60)
    with Image.open(output) as image:
        assert (image.format, image.size) == ("WEBP", (800, 600))


def test_python_requests_example(vendor_server: LocalServer, tmp_path: Path) -> None:
    """The vendor's requests example runs as published and saves output.webp."""
    script = REQUESTS_EXAMPLE.replace("https://api.rembg.com", vendor_server.url)
    script = script.replace("/path/to/image.jpg", str(EXAMPLES / "orange.jpg"))
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Background removed successfully" in result.stdout
    with Image.open(tmp_path / "output.webp") as image:
        assert (image.format, image.size) == ("WEBP", (800, 600))


@pytest.fixture(scope="session")
def rembg_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the official rembg.js client installed from the npm registry."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("node and npm are needed to run the official rembg.js client")
    folder = tmp_path_factory.mktemp("rembg-js")
    install = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"]
    subprocess.run([*install, str(folder), REMBG_JS], check=True, timeout=300, capture_output=True)
    (folder / "run.js").write_text(REMBG_JS_SCRIPT)
    return folder


@pytest.mark.node
def test_official_rembg_js_client(vendor_server: LocalServer, rembg_js: Path) -> None:
    """rembg.js removes a background through the local server: file, base64, progress, errors."""
    result = subprocess.run(
        ["node", "run.js", str(EXAMPLES / "bottle.jpg")],
        cwd=rembg_js, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ["PATH"], "REMBG_URL": vendor_server.url, "REMBG_KEY": VENDOR_KEY},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    output = Path(report["path"])
    try:
        with Image.open(output) as image:
            assert (image.format, image.size) == ("PNG", (200, 150))
    finally:
        output.unlink()
    assert report["base64"].startswith("data:image/png;base64,")  # rembg.js's fixed prefix
    assert report["events"]["upload"][-1]["loaded"] == report["events"]["upload"][-1]["total"]
    assert report["events"]["download"]
    assert report["failure"] == '❌ 401 {"error": "invalid api key", "status": 401}'
