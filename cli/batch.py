"""Spreads the images over the servers: one worker thread per server, each with one job in flight.

Workers take the next image from a shared queue when their server is free, so fast servers do more.
A server that stops answering puts its unfinished image back at the front of the queue for the others
and gets nothing more. An image is written to the manifest only by the worker that fetched its picture,
so nothing is lost or recorded twice.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from .client import JobFailed, JobInterrupted, ServerClient, ServerGone
from .graph import Parameters, build_graph
from .results import Manifest, write_output

JOIN_POLL_S = 0.2  # the main thread wakes up this often, so Ctrl-C is seen at once


@dataclass
class Job:
    path: Path
    sha256: str
    seed: int


@dataclass
class Summary:
    done: int = 0
    failed: int = 0
    interrupted: bool = False


def say(message: str, error: bool = False) -> None:
    # tqdm.write keeps the message from tearing the progress bars.
    tqdm.write(message, file=sys.stderr if error else sys.stdout)


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
        self.pending = deque(jobs)
        self.servers = servers
        self.parameters = parameters
        self.template = template
        self.out_dir = out_dir
        self.manifest = Manifest(out_dir)
        self.job_timeout = job_timeout
        self.stop = threading.Event()
        self.summary = Summary()
        self._in_flight = 0
        self._workers_left = 0
        self._changed = threading.Condition()
        self._overall = tqdm(total=len(jobs), desc="images", unit="image", position=0, disable=None)

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
            self._overall.close()
        self.summary.interrupted = self.stop.is_set()
        if not self.stop.is_set():
            for job in self.pending:
                self._record_failure(job, "no server left to run it")
        return self.summary

    def _wait_for_workers(self) -> None:
        # Not Thread.join: Python 3.11 marks a thread as finished when Ctrl-C interrupts a join on it
        # (its bpo-45274 handling releases the running thread's lock), and the wait would end at once.
        while self._workers_left:
            time.sleep(JOIN_POLL_S)

    def _take(self) -> Job | None:
        """The next job, or None when there is none left for this worker."""
        with self._changed:
            # Waits only while other workers hold jobs that may come back if their server dies.
            while not self.stop.is_set():
                if self.pending:
                    self._in_flight += 1
                    return self.pending.popleft()
                if self._in_flight == 0:
                    return None
                self._changed.wait(JOIN_POLL_S)
            return None

    def _settle(self, job: Job, requeue: bool = False) -> None:
        with self._changed:
            self._in_flight -= 1
            if requeue:
                self.pending.appendleft(job)
            self._changed.notify_all()

    def _record_failure(self, job: Job, message: str) -> None:
        with self._changed:
            self.summary.failed += 1
        self._overall.update(1)
        say(f"FAILED {job.path}: {message}", error=True)

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
            with self._changed:
                self._workers_left -= 1

    def _run(self, client: ServerClient, job: Job, bar: tqdm) -> None:
        bar.reset(total=1)
        bar.set_description(job.path.name)

        def progress(value: int, maximum: int) -> None:
            bar.total, bar.n = maximum, value
            bar.refresh()

        try:
            data = job.path.read_bytes()
            if hashlib.sha256(data).hexdigest() != job.sha256:
                raise JobFailed("the file changed while the batch ran; run again to include it")
            result = client.run(
                data,
                job.path.name,
                lambda image: build_graph(self.template, self.parameters, job.seed, image),
                progress,
            )
            output = write_output(self.out_dir, job.path.stem, Path(result.server_filename).suffix, result.data)
            self.manifest.append(
                {
                    "input": str(job.path),
                    "sha256": job.sha256,
                    "seed": job.seed,
                    "parameters": self.parameters.as_dict(),
                    "output": output.name,
                    "server": client.url,
                    "prompt_id": result.prompt_id,
                    "timings": result.timings,
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
            )
        except ServerGone:
            say(f"img2img: {job.path} goes back to the queue for the other servers", error=True)
            self._settle(job, requeue=True)
            raise
        except JobInterrupted:
            say(f"stopped {job.path}")
            self._settle(job)
        except (JobFailed, OSError) as error:
            self._record_failure(job, str(error))
            self._settle(job)
        except Exception as error:  # a surprise answer must not strand the job as in flight forever
            self._record_failure(job, f"{type(error).__name__}: {error}")
            self._settle(job)
        else:
            with self._changed:
                self.summary.done += 1
            self._overall.update(1)
            say(f"done {job.path} -> {output} ({client.url}, {result.timings['total_s']:.1f} s)")
            self._settle(job)
