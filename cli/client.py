"""One ComfyUI server over HTTP and its websocket: upload, queue, follow, fetch, interrupt."""

from __future__ import annotations

import json
import mimetypes
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import requests
import websocket

HTTP_TIMEOUT = (5.0, 60.0)  # connect, read
WS_POLL_S = 1.0  # how often the follow loop wakes up to check for Ctrl-C and deadlines
QUIET_CHECK_S = 5.0  # websocket silence after which /history is asked, in case a message was lost
STOP_GRACE_S = 60.0  # how long a server may take to stop an interrupted job
CANCEL_REPEAT_S = 2.0  # a job that was pending when cancelled may start running in between
UPLOAD_SUBFOLDER = "img2img-cli"
DETAIL_LIMIT = 400  # "value not in list" errors quote the whole list


class ServerGone(Exception):
    """The server stopped answering: its job goes back to the queue for the other servers."""


class JobFailed(Exception):
    """The server refused or failed this image; the message is for the user."""


class JobInterrupted(Exception):
    """The job was stopped on the user's request (Ctrl-C)."""


@dataclass
class Result:
    data: bytes
    server_filename: str
    prompt_id: str
    timings: dict[str, float]


def websocket_url(url: str, client_id: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws?clientId={client_id}"


def _clip(text: str) -> str:
    return text if len(text) <= DETAIL_LIMIT else text[:DETAIL_LIMIT] + " …"


def describe_refusal(answer: object) -> str:
    """The readable form of a /prompt refusal: per node its class type, input and message."""
    if not isinstance(answer, dict):
        return _clip(str(answer))
    parts = []
    for node_id, node in (answer.get("node_errors") or {}).items():
        for error in node.get("errors", []):
            where = f"{node.get('class_type', '?')} (node {node_id})"
            text = error.get("details") or error.get("message", "")
            input_name = (error.get("extra_info") or {}).get("input_name")
            if input_name:
                where += f", input '{input_name}'"
                text = text.removeprefix(f"{input_name}: ")  # ComfyUI's details often start with it again
            parts.append(f"{where}: {_clip(text)}")
    if not parts:
        error = answer.get("error") or {}
        message = error.get("message", "") if isinstance(error, dict) else str(error)
        details = error.get("details", "") if isinstance(error, dict) else ""
        parts.append(_clip(f"{message}: {details}" if details else message))
    return "; ".join(parts)


def describe_execution_error(error: dict) -> str:
    where = f"{error.get('node_type', '?')} (node {error.get('node_id', '?')})"
    message = _clip(error.get("exception_message", "").strip())
    return f"{where} failed: {error.get('exception_type', 'error')}: {message}"


def upload_name(name: str) -> str:
    # Unique per upload so that concurrent runs (and two inputs of the same name) never collide on a server.
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-80:]
    return f"{uuid.uuid4().hex[:16]}-{safe}"


class ServerClient:
    """Used by one worker thread; ``stop`` is the run-wide Ctrl-C flag."""

    def __init__(self, url: str, stop: threading.Event, job_timeout: float) -> None:
        self.url = url.rstrip("/")
        self.stop = stop
        self.job_timeout = job_timeout
        self.client_id = uuid.uuid4().hex
        self.session = requests.Session()
        self.ws: websocket.WebSocket | None = None

    def connect(self) -> None:
        try:
            self.ws = websocket.create_connection(websocket_url(self.url, self.client_id), timeout=HTTP_TIMEOUT[0])
        except (OSError, websocket.WebSocketException) as error:
            raise ServerGone(f"websocket: {error}") from error
        self.ws.settimeout(WS_POLL_S)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        self.session.close()

    def _request(self, method: str, path: str, **kwargs: object) -> requests.Response:
        try:
            return self.session.request(method, self.url + path, timeout=HTTP_TIMEOUT, **kwargs)
        except requests.RequestException as error:
            raise ServerGone(f"{path}: {error}") from error

    def _json(self, method: str, path: str, **kwargs: object) -> object:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as error:
            # Only a broken server or a proxy in front of it answers these endpoints with something else.
            raise ServerGone(f"{path} answered {response.status_code} without JSON") from error

    def upload(self, data: bytes, name: str) -> str:
        """Uploads into the input folder; returns the name to give Img2ImgLoadImage."""
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        response = self._request(
            "POST",
            "/upload/image",
            files={"image": (upload_name(name), data, mime)},
            data={"type": "input", "subfolder": UPLOAD_SUBFOLDER},
        )
        if response.status_code != 200:
            raise JobFailed(f"/upload/image refused the file ({response.status_code}): {_clip(response.text)}")
        answer = response.json()
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def queue(self, graph: dict) -> str:
        response = self._request("POST", "/prompt", json={"prompt": graph, "client_id": self.client_id})
        try:
            answer = response.json()
        except ValueError:
            answer = response.text
        if response.status_code != 200:
            raise JobFailed(describe_refusal(answer))
        return answer["prompt_id"]

    def cancel(self, prompt_id: str) -> None:
        """Removes the job if it is still pending and interrupts it if it runs; other clients' jobs stay."""
        self._request("POST", "/queue", json={"delete": [prompt_id]})
        self._request("POST", "/interrupt", json={"prompt_id": prompt_id})

    def history(self, prompt_id: str) -> dict | None:
        """The job's /history entry once it has finished, else None."""
        entry = self._json("GET", f"/history/{prompt_id}").get(prompt_id)
        return entry if entry and entry.get("status", {}).get("status_str") in ("success", "error") else None

    def queued(self, prompt_id: str) -> bool:
        answer = self._json("GET", "/queue")
        return any(item[1] == prompt_id for item in answer["queue_running"] + answer["queue_pending"])

    def _message(self) -> dict | None:
        """The next text message, or None after WS_POLL_S without one (binary previews are skipped)."""
        try:
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return None
        except (OSError, websocket.WebSocketException) as error:
            raise ServerGone(f"websocket closed: {error}") from error
        return json.loads(raw) if isinstance(raw, str) and raw else None

    def follow(
        self, prompt_id: str, deadline: float, on_progress: Callable[[int, int], None]
    ) -> tuple[dict | None, float | None]:
        """Waits for the job to end, cancelling it on Ctrl-C or past the deadline.

        Returns its /history entry (None when it was removed while pending) and when it started running.
        """
        cancelled_at = last_cancel = started = None
        last_heard = time.monotonic()
        while True:
            now = time.monotonic()
            if cancelled_at is None and (self.stop.is_set() or now > deadline):
                cancelled_at = last_cancel = now
                self.cancel(prompt_id)
            elif cancelled_at is not None:
                if now - cancelled_at > STOP_GRACE_S:
                    raise JobFailed(f"the server did not stop job {prompt_id} within {STOP_GRACE_S:.0f} s")
                if now - last_cancel > CANCEL_REPEAT_S:
                    last_cancel = now
                    self.cancel(prompt_id)
            message = self._message()
            if message is not None and (message.get("data") or {}).get("prompt_id") == prompt_id:
                last_heard = time.monotonic()
                kind, data = message["type"], message["data"]
                if kind == "execution_start":
                    started = last_heard
                elif kind == "progress":
                    on_progress(data["value"], data["max"])
                elif kind == "executing" and data.get("node") is None:
                    return self.history(prompt_id), started
            elif time.monotonic() - last_heard > (CANCEL_REPEAT_S if cancelled_at else QUIET_CHECK_S):
                last_heard = time.monotonic()
                entry = self.history(prompt_id)
                if entry is not None or (cancelled_at is not None and not self.queued(prompt_id)):
                    return entry, started

    def run(
        self,
        data: bytes,
        name: str,
        make_graph: Callable[[str], tuple[dict, str]],
        on_progress: Callable[[int, int], None],
    ) -> Result:
        """One image from upload to the saved picture's bytes."""
        begun = time.monotonic()
        deadline = begun + self.job_timeout
        # make_graph may upload a mask file and queue a probe of the input too: part of upload_s.
        graph, save_node = make_graph(self.upload(data, name))
        if self.stop.is_set():
            raise JobInterrupted
        uploaded = time.monotonic()
        prompt_id, entry, started = self.execute(graph, deadline, on_progress)
        finished = time.monotonic()
        images = entry["outputs"].get(save_node, {}).get("images") or []
        if len(images) != 1:
            raise JobFailed(f"the save node reported {len(images)} images instead of one")
        image = images[0]
        response = self._request(
            "GET", "/view", params={"filename": image["filename"], "subfolder": image["subfolder"], "type": "output"}
        )
        if response.status_code != 200:
            raise JobFailed(f"/view could not return {image['filename']} ({response.status_code})")
        done = time.monotonic()
        started = started or uploaded
        timings = {
            "upload_s": uploaded - begun,
            "queued_s": started - uploaded,
            "run_s": finished - started,
            "download_s": done - finished,
            "total_s": done - begun,
        }
        return Result(response.content, image["filename"], prompt_id, {k: round(v, 3) for k, v in timings.items()})

    def execute(
        self, graph: dict, deadline: float, on_progress: Callable[[int, int], None]
    ) -> tuple[str, dict, float | None]:
        """Queues the graph and follows it to the end: its prompt id, its successful /history entry and when it
        started running; JobFailed (or JobInterrupted) otherwise."""
        prompt_id = self.queue(graph)
        entry, started = self.follow(prompt_id, deadline, on_progress)
        if entry is None or entry["status"]["status_str"] != "success":
            raise self._failure(prompt_id, entry, timed_out=time.monotonic() > deadline)
        return prompt_id, entry, started

    def outputs(self, graph: dict) -> dict:
        """A small graph's /history outputs (what each node reported), with a --timeout of its own."""
        return self.execute(graph, time.monotonic() + self.job_timeout, lambda value, maximum: None)[1]["outputs"]

    def _failure(self, prompt_id: str, entry: dict | None, timed_out: bool) -> Exception:
        messages = dict(entry["status"].get("messages", [])) if entry else {}
        if "execution_error" in messages:
            return JobFailed(describe_execution_error(messages["execution_error"]))
        if self.stop.is_set():
            return JobInterrupted()
        if timed_out:
            return JobFailed(f"job {prompt_id} ran past the --timeout of {self.job_timeout:g} s and was stopped")
        if "execution_interrupted" in messages:
            return JobFailed(f"job {prompt_id} was interrupted on the server")
        return JobFailed(f"job {prompt_id} vanished from the server's queue")
