"""An aiohttp web service that proxies uploads to the RemBG API and streams progress to the
browser over Server-Sent Events.

Run: ``python examples/web_service.py`` and open http://127.0.0.1:8080 (it uses the embedded
local server; set REMBG_API_KEY and drop ``LocalServer`` to use the hosted API).

- ``POST /jobs`` with a multipart ``image``: the upload is streamed to a temporary file, a job
  starts, and the answer is ``{"id", "events", "result"}``.
- ``GET /jobs/{id}/events``: ``progress`` events (upload, then download) and a final ``done``
  (or ``failed``) event; a late listener gets the events it missed first.
- ``GET /jobs/{id}/result``: the cut-out.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
from aiohttp import web

from rembg_async import AsyncRembg, ProgressEvent, RembgError, RemoveOptions

CLIENT = web.AppKey("client", AsyncRembg)
JOBS = web.AppKey("jobs", dict)
FOLDER = web.AppKey("folder", Path)

PAGE = """<!doctype html>
<meta charset="utf-8"><title>rembg-async</title>
<h1>Remove a background</h1>
<style>img { max-width: 90vw; background: repeating-conic-gradient(#ddd 0 25%, #fff 0 50%)
  0 0/20px 20px }</style>
<form id="form">
  <input type="file" name="image" accept="image/*" required> <button>Go</button>
</form>
<p>upload <progress id="upload" max="1" value="0"></progress>
   download <progress id="download" max="1" value="0"></progress> <span id="status"></span></p>
<img id="result">
<script>
const byId = (id) => document.getElementById(id);
byId("form").onsubmit = async (submit) => {
  submit.preventDefault();
  const body = new FormData(submit.target);
  const job = await (await fetch("/jobs", {method: "POST", body})).json();
  const events = new EventSource(job.events);
  events.addEventListener("progress", (message) => {
    const event = JSON.parse(message.data);
    byId(event.upload ? "upload" : "download").value = event.progress ?? 0;
  });
  events.addEventListener("done", () => { events.close(); byId("result").src = job.result; });
  events.addEventListener("failed", (message) => {
    events.close();
    byId("status").textContent = JSON.parse(message.data).error;
  });
};
</script>
"""


@attrs.define
class Job:
    """One removal: its events so far (kept, so late listeners can catch up) and its output."""

    output: Path
    events: list[tuple[str, dict[str, object]]] = attrs.field(factory=list)
    changed: asyncio.Event = attrs.field(factory=asyncio.Event)
    finished: bool = False

    def publish(self, name: str, data: dict[str, object]) -> None:
        """Record an event and wake the listeners."""
        self.events.append((name, data))
        self.changed.set()


async def run_job(client: AsyncRembg, job: Job, source: Path) -> None:
    """Remove the background of ``source`` into ``job.output``, publishing every step."""

    def progress(event: ProgressEvent) -> None:
        job.publish("progress", event.to_dict())

    try:
        await client.remove(
            source,
            RemoveOptions(format="png"),
            output_path=job.output,
            on_upload_progress=progress,
            on_download_progress=progress,
        )
    except (RembgError, OSError) as error:
        job.publish("failed", {"error": str(error)})
    else:
        job.publish("done", {})
    finally:
        job.finished = True
        source.unlink(missing_ok=True)


async def create_job(request: web.Request) -> web.Response:
    """Receive the upload (streamed to disk) and start the job."""
    reader = await request.multipart()
    part = await reader.next()
    if part is None or getattr(part, "name", None) != "image":
        raise web.HTTPBadRequest(text="send the image in a multipart field called 'image'")
    job_id = uuid.uuid4().hex
    folder = request.app[FOLDER]
    source = folder / job_id  # no extension: the client judges the type by the content
    with source.open("wb") as file:
        while chunk := await part.read_chunk(256 * 1024):  # type: ignore[union-attr]
            file.write(chunk)
    job = Job(output=folder / f"{job_id}.png")
    request.app[JOBS][job_id] = job
    request.app[JOBS][job_id + ":task"] = asyncio.create_task(
        run_job(request.app[CLIENT], job, source)
    )
    return web.json_response(
        {"id": job_id, "events": f"/jobs/{job_id}/events", "result": f"/jobs/{job_id}/result"}
    )


async def job_events(request: web.Request) -> web.StreamResponse:
    """The job's events as Server-Sent Events, from the first one, until it ends."""
    job = _job(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    sent = 0
    while True:
        job.changed.clear()
        for name, data in job.events[sent:]:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        sent = len(job.events)
        if job.finished and sent == len(job.events):
            break
        await job.changed.wait()
    await response.write_eof()
    return response


async def job_result(request: web.Request) -> web.FileResponse:
    """The finished image."""
    job = _job(request)
    if not job.output.exists():
        raise web.HTTPNotFound(text="not ready, or failed")
    return web.FileResponse(job.output)


async def page(request: web.Request) -> web.Response:
    """The small page that drives it all."""
    return web.Response(text=PAGE, content_type="text/html")


def _job(request: web.Request) -> Job:
    job = request.app[JOBS].get(request.match_info["id"])
    if not isinstance(job, Job):
        raise web.HTTPNotFound(text="no such job")
    return job


def create_app(*, api_key: str | None, base_url: str | None) -> web.Application:
    """The service, talking to the RemBG API at ``base_url`` (None: the hosted one)."""

    async def resources(app: web.Application) -> AsyncIterator[None]:
        with tempfile.TemporaryDirectory(prefix="rembg-web-") as folder:
            app[FOLDER] = Path(folder)
            async with AsyncRembg(api_key, base_url=base_url, max_concurrency=4) as client:
                app[CLIENT] = client
                yield
                tasks = [task for key, task in app[JOBS].items() if key.endswith(":task")]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    app = web.Application()
    app[JOBS] = {}
    app.cleanup_ctx.append(resources)
    app.router.add_get("/", page)
    app.router.add_post("/jobs", create_job)
    app.router.add_get("/jobs/{id}/events", job_events)
    app.router.add_get("/jobs/{id}/result", job_result)
    return app


if __name__ == "__main__":
    from rembg_async.server import Account, LocalServer, ServerConfig

    with LocalServer(ServerConfig(accounts=[Account(api_key="demo")])) as server:
        web.run_app(create_app(api_key="demo", base_url=server.url), host="127.0.0.1", port=8080)
