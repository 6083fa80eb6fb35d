"""Spreads the images over the servers: one worker thread per server, each with one job in flight.

Workers take the next image from a shared queue when their server is free, so fast servers do more.
A server that stops answering puts its unfinished image back at the front of the queue for the others
and gets nothing more. An image is written to the manifest only by the worker that fetched its picture,
so nothing is lost or recorded twice. Both backends (this one and the Ray cluster's, ray_cluster.py) run an
image with ``run_on_server``, which tells how it ended as an ``ImageOutcome``, and settle it with
``Work.record``; ``Work`` is the rest they share: the queue, the claims on inputs in the output folder, the
manifest and the bar.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from .claims import Claims
from .client import JobFailed, JobInterrupted, Result, ServerClient, ServerGone
from .graph import Parameters, build_graph, found_region, probe_graph
from .masks import AUTO_ALPHA, SIBLING, InputMask
from .results import Manifest, resume_key, write_output

JOIN_POLL_S = 0.2  # the main thread wakes up this often, so Ctrl-C is seen at once
CLAIM_POLL_S = 1.0  # how often inputs claimed by another run into the same folder are looked at again


@dataclass
class Job:
    path: Path
    sha256: str
    seed: int
    mask: InputMask | None = None  # `run --mask`: where its mask comes from; None: the plain graph

    @property
    def mask_key(self) -> str | None:
        """The mask's part of the input's identity for resume (None without a mask, as every manifest line
        before masks)."""
        return self.mask.key if self.mask is not None else None


@dataclass(frozen=True)
class Upload:
    """What is sent to a server for one input: its bytes and its mask file's, as they were hashed when the run
    was planned."""

    image: bytes
    mask: bytes | None = None


@dataclass(frozen=True)
class ImageOutcome:
    """How one image ended on a server, the same from either backend: done (``result``, the picture, made by
    ``server``), failed (``error``, for the user), or stopped by Ctrl-C (neither). A Ray actor returns it to
    the driver, so it holds data only, nothing of the actor's."""

    job: Job  # the input as planned: its file, content hash and seed
    result: Result | None = None
    server: str = ""  # where the picture was made, as the manifest names it
    error: str | None = None


@dataclass
class Summary:
    done: int = 0
    failed: int = 0
    elsewhere: int = 0  # done by another run into the same folder while this one ran
    interrupted: bool = False


def say(message: str, error: bool = False) -> None:
    # tqdm.write keeps the message from tearing the progress bars.
    tqdm.write(message, file=sys.stderr if error else sys.stdout)


class Work:
    """The jobs of one run and what becomes of them, for either backend; thread-safe.

    ``next_job`` hands out a job only once this run has claimed its input in the output folder and the
    manifest does not hold it yet; inputs another live run has claimed wait until that run has done them
    (they count as done elsewhere) or let them go (failed there, or died: then they run here).
    """

    def __init__(self, jobs: list[Job], parameters: Parameters, out_dir: Path) -> None:
        self.pending = deque(jobs)
        self.held: list[Job] = []  # claimed by another run
        self.parameters = parameters
        self.out_dir = out_dir
        self.manifest = Manifest(out_dir)
        self.claims = Claims(out_dir)
        self.summary = Summary()
        self.in_flight = 0
        self.lock = threading.Condition()
        self._held_since = 0.0
        self.overall = tqdm(total=len(jobs), desc="images", unit="image", position=0, disable=None)

    def key(self, job: Job) -> str:
        return resume_key(job.sha256, job.seed, self.parameters.as_dict(), job.mask_key)

    def next_job(self) -> Job | None:
        """A job claimed for this run, or None when none can start now (see ``finished``)."""
        with self.lock:
            if not self.pending and self.held and time.monotonic() - self._held_since > CLAIM_POLL_S:
                self.pending.extend(self.held)
                self.held.clear()
            while self.pending:
                job = self.pending.popleft()
                key = self.key(job)
                if key in self.manifest.done_keys():
                    self._done_elsewhere(job)
                elif not self.claims.claim(key):
                    if not self.held:
                        self._held_since = time.monotonic()
                    self.held.append(job)
                elif key in self.manifest.done_keys():  # done and released by the other run just before
                    self.claims.release(key)
                    self._done_elsewhere(job)
                else:
                    self.in_flight += 1
                    return job
            return None

    def finished(self) -> bool:
        with self.lock:
            return not (self.pending or self.held or self.in_flight)

    def _done_elsewhere(self, job: Job) -> None:
        self.summary.elsewhere += 1
        self.overall.update(1)
        say(f"done elsewhere {job.path}: another run into {self.out_dir} has it in the manifest")

    def read(self, job: Job) -> Upload | None:
        """The input's bytes (and its mask file's) as they were hashed when the run was planned; None when a
        file cannot be read or has changed since, and then the image has failed."""
        files = [(job.path, job.sha256)]
        if job.mask is not None and job.mask.file is not None:
            files.append((job.mask.file, job.mask.sha256))
        contents = []
        for path, sha256 in files:
            try:
                data = path.read_bytes()
            except OSError as error:
                self.record(ImageOutcome(job, error=str(error)))
                return None
            if hashlib.sha256(data).hexdigest() != sha256:
                message = f"{path.name} changed while the batch ran; run again to include it"
                self.record(ImageOutcome(job, error=message))
                return None
            contents.append(data)
        return Upload(*contents)

    def record(self, outcome: ImageOutcome) -> None:
        """Settles an image as its outcome says, whichever backend ran it: its picture and then its manifest
        line, a failure, or (stopped) neither."""
        job = outcome.job
        if outcome.result is not None:
            self._record_done(job, outcome.result, outcome.server)
            return
        if outcome.error is None:
            say(f"stopped {job.path}")
        else:
            with self.lock:
                self.summary.failed += 1
            self.overall.update(1)
            say(f"FAILED {job.path}: {outcome.error}", error=True)
        self.settle(job)

    def _record_done(self, job: Job, result: Result, server: str) -> None:
        """Writes the picture and then its manifest line; a picture that cannot be written fails the image."""
        try:
            output = write_output(self.out_dir, job.path.stem, Path(result.server_filename).suffix, result.data)
            self.manifest.append(
                {
                    "input": str(job.path),
                    "sha256": job.sha256,
                    "seed": job.seed,
                    "parameters": self.parameters.as_dict(),
                    **_mask_fields(job),
                    "output": output.name,
                    "server": server,
                    "prompt_id": result.prompt_id,
                    "timings": result.timings,
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
            )
        except OSError as error:
            self.record(ImageOutcome(job, error=str(error)))
            return
        with self.lock:
            self.summary.done += 1
        self.overall.update(1)
        say(f"done {job.path} -> {output} ({server}, {result.timings['total_s']:.1f} s)")
        self.settle(job)

    def settle(self, job: Job, requeue: bool = False) -> None:
        """The job is no longer in flight here: done, failed, stopped, or (``requeue``) back in the queue."""
        with self.lock:
            self.in_flight -= 1
            if requeue:
                self.pending.appendleft(job)
            else:
                self.claims.release(self.key(job))
            self.lock.notify_all()

    def close(self, stopped: bool) -> None:
        """Ends the run: without ``stopped``, the jobs no server took count as failed; every claim goes."""
        if not stopped:
            with self.lock:
                left = [*self.pending, *self.held]
                self.pending.clear()
                self.held.clear()
                self.in_flight += len(left)  # each is settled as a failure below
            for job in left:
                self.record(ImageOutcome(job, error="no server left to run it"))
        self.claims.close()
        self.overall.close()


def _mask_fields(job: Job) -> dict[str, str]:
    """A manifest line's mask: its part of the resume key (Manifest reads it back), and the mask file's path."""
    if job.mask is None:
        return {}  # as every line before masks
    fields = {"mask": job.mask_key}
    if job.mask.file is not None:
        fields["mask_file"] = str(job.mask.file)
    return fields


class Batch:
    def __init__(
        self,
        jobs: list[Job],
        servers: list[str],
        parameters: Parameters,
        template: dict,
        out_dir: Path,
        job_timeout: float,
    ) -> None:
        self.work = Work(jobs, parameters, out_dir)
        self.servers = servers
        self.parameters = parameters
        self.template = template
        self.job_timeout = job_timeout
        self.stop = threading.Event()
        self._workers_left = 0

    def run(self) -> Summary:
        """Runs every job; Ctrl-C stops the jobs in flight on their servers and ends the run."""
        workers = [
            threading.Thread(target=self._work, args=(slot, url), name=f"img2img {url}", daemon=True)
            for slot, url in enumerate(self.servers)
        ]
        self._workers_left = len(workers)
        for worker in workers:
            worker.start()
        try:
            self._wait_for_workers()
        except KeyboardInterrupt:
            say("img2img: Ctrl-C: stopping the jobs in flight on their servers (Ctrl-C again quits at once)")
            self.stop.set()
            try:
                self._wait_for_workers()
            except KeyboardInterrupt:
                say("img2img: not waiting for the servers; the manifest holds every finished image", error=True)
        finally:
            self.work.close(stopped=self.stop.is_set())
        self.work.summary.interrupted = self.stop.is_set()
        return self.work.summary

    def _wait_for_workers(self) -> None:
        # Not Thread.join: Python 3.11 marks a thread as finished when Ctrl-C interrupts a join on it
        # (its bpo-45274 handling releases the running thread's lock), and the wait would end at once.
        while self._workers_left:
            time.sleep(JOIN_POLL_S)

    def _take(self) -> Job | None:
        """The next job, or None when there is none left for this worker."""
        work = self.work
        with work.lock:
            # Waits while other workers hold jobs that may come back if their server dies, and while another
            # run into the same folder holds inputs that may come back if it fails them or dies.
            while not self.stop.is_set():
                job = work.next_job()
                if job is not None:
                    return job
                if not work.pending and not work.held and work.in_flight == 0:
                    return None
                work.lock.wait(JOIN_POLL_S)
            return None

    def _work(self, slot: int, url: str) -> None:
        client = ServerClient(url, self.stop, self.job_timeout)
        bar = tqdm(total=1, desc=url, unit="step", position=slot + 1, leave=False, disable=None)
        try:
            client.connect()
            while (job := self._take()) is not None:
                self._run(client, job, bar)
        except ServerGone as error:
            say(f"img2img: server {url} is gone ({error}); it gets no more images", error=True)
        finally:
            client.close()
            bar.close()
            with self.work.lock:
                self._workers_left -= 1
                self.work.lock.notify_all()

    def _run(self, client: ServerClient, job: Job, bar: tqdm) -> None:
        bar.reset(total=1)
        bar.set_description(job.path.name)

        def progress(value: int, maximum: int) -> None:
            bar.total, bar.n = maximum, value
            bar.refresh()

        upload = self.work.read(job)
        if upload is None:
            return
        try:
            outcome = run_on_server(client, upload, job, self.template, self.parameters, client.url, progress)
        except ServerGone:
            say(f"img2img: {job.path} goes back to the queue for the other servers", error=True)
            self.work.settle(job, requeue=True)
            raise
        self.work.record(outcome)


def run_on_server(
    client: ServerClient,
    upload: Upload,
    job: Job,
    template: dict,
    parameters: Parameters,
    server: str,
    progress: Callable[[int, int], None],
) -> ImageOutcome:
    """One image through one server (upload, the graph, the progress, the picture's bytes) and how it ended.
    The worker threads here and the Ray actors (ray_cluster.py) both call it. A server that is gone is no
    outcome of the image and raises ServerGone: a thread puts the image back in the queue for the other
    servers, an actor ends so that Ray restarts it with a new server and runs the image again."""
    try:
        result = client.run(
            upload.image,
            job.path.name,
            lambda image: graph_for(client, upload, job, template, parameters, image),
            progress,
        )
    except ServerGone:
        raise
    except JobInterrupted:
        return ImageOutcome(job)
    except (JobFailed, OSError) as error:
        return ImageOutcome(job, error=str(error))
    except Exception as error:  # a surprise answer fails the image, not its worker, and strands nothing in flight
        return ImageOutcome(job, error=f"{type(error).__name__}: {error}")
    return ImageOutcome(job, result=result, server=server)


def graph_for(
    client: ServerClient, upload: Upload, job: Job, template: dict, parameters: Parameters, image: str
) -> tuple[dict, str]:
    """The job's graph for its uploaded input ``image``: the mask file uploaded beside it, or the input's
    transparency, or (no mask, or ``auto`` where the server's loader finds the input opaque) the plain graph."""
    mask = job.mask
    if mask is None:
        return build_graph(template, parameters, job.seed, image)
    if mask.source == SIBLING:
        mask_file = client.upload(upload.mask, mask.file.name)
        return build_graph(template, parameters, job.seed, image, mask_file=mask_file)
    if mask.source == AUTO_ALPHA:
        # Its header allows transparency, but many RGBA files are opaque: only the loader's MASK tells.
        probe, crop = probe_graph(template, parameters, image)
        if not found_region(client.outputs(probe), crop):
            return build_graph(template, parameters, job.seed, image)
    return build_graph(template, parameters, job.seed, image, alpha_mask=True)
