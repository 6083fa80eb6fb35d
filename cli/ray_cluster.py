"""``--ray ADDRESS``: the images as Ray tasks on actors that each own a ComfyUI server.

Each worker is a Ray actor that starts ComfyUI (``--comfyui DIR``, the same tree on every node, run with the
Python of the Ray worker) on a free loopback port of its node and runs images through it with the same
upload, graph, progress and download as a ``--server`` (batch.run_on_server), and returns the same
batch.ImageOutcome. The driver reads the inputs (and their mask files) and sends their bytes, and records
every outcome itself (batch.Work.record: each picture and manifest line), so the output folder and the
manifest exist on the driver's machine only and stay the single record.

A worker whose server dies ends its own process: Ray restarts the actor (a new server; MAX_RESTARTS) and
runs its image again on it (MAX_TASK_RETRIES). A picture is written only when a task returns, so an image
retried after its server died is in the output once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import ray
from ray.exceptions import RayActorError, RayTaskError

from .batch import JOIN_POLL_S, ImageOutcome, Job, Summary, Upload, Work, run_on_server, say
from .client import ServerClient, ServerGone
from .graph import Parameters

MAX_RESTARTS = 8  # per worker, over the whole run: a server may die this often and be replaced
MAX_TASK_RETRIES = 2  # an image whose worker died runs again this often, then fails
STARTUP_S = 600.0  # a ComfyUI start on a cold node loads torch and every custom node
LOG_TAIL = 4000
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In ComfyUI's process before it starts: Linux kills it when the actor's process ends, however it ends."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class NoGpu(Exception):
    """Workers would wait for a GPU that the cluster does not have."""


class ComfyWorker:
    """A Ray actor (made remote in ``start_workers``): one ComfyUI server and one image at a time."""

    def __init__(self, comfyui: str, cpu: bool, job_timeout: float, template: dict, parameters: Parameters) -> None:
        self.template, self.parameters = template, parameters
        self.workdir = Path(tempfile.mkdtemp(prefix="img2img-ray-worker-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folders = {name: self.workdir / name for name in ("input", "output", "user", "temp")}
        for folder in folders.values():
            folder.mkdir()
        command = [sys.executable, "main.py", *(["--cpu"] if cpu else []), "--listen", "127.0.0.1"]
        command += ["--port", str(self.port), "--disable-auto-launch", "--database-url", "sqlite:///:memory:"]
        for name, folder in folders.items():
            command += [f"--{name}-directory", str(folder)]
        self.log_path = self.workdir / "comfyui.log"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=comfyui, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        deadline = time.monotonic() + STARTUP_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI in {comfyui} exited with {self.process.returncode}:\n{self._log()}")
            try:
                urllib.request.urlopen(self.url + "/system_stats", timeout=5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.process.kill()
                    raise RuntimeError(f"ComfyUI did not answer within {STARTUP_S:.0f} s:\n{self._log()}") from None
                time.sleep(0.25)
        self.client = ServerClient(self.url, threading.Event(), job_timeout)
        self.client.connect()

    def _log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL:]

    def describe(self) -> dict:
        return {"url": self.url, "pid": self.process.pid, "node": ray.util.get_node_ip_address()}

    def run(self, upload: Upload, job: Job) -> ImageOutcome:
        """How the image ended, its server named for the manifest; a dead server ends this process."""
        where = f"{self.url} on {ray.util.get_node_ip_address()}"
        try:
            return run_on_server(self.client, upload, job, self.template, self.parameters, where, lambda *_: None)
        except ServerGone as error:
            print(f"img2img worker: ComfyUI at {self.url} is gone ({error}); the actor restarts", file=sys.stderr)
            self.process.kill()
            os._exit(1)  # not an exception: Ray restarts the actor only when its process dies


def connect(address: str, workers: int | None, cpu: bool) -> int:
    """Joins the cluster at ``address`` (``local``: a Ray instance of this machine, for this run) and returns
    the number of workers: ``workers``, else one per GPU Ray reports, else one."""
    package = Path(__file__).parent
    # The command ships itself to the workers: the nodes need Ray and ComfyUI, not this package.
    runtime_env = {"py_modules": [str(package)]}
    if address == "local":
        cpus = max(os.cpu_count() or 1, workers or 1) if cpu else None
        ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=runtime_env, log_to_driver=False)
    else:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if not cpu and not gpus:
        ray.shutdown()
        raise NoGpu(f"Ray at {address} reports no GPU: pass --cpu to run ComfyUI on the CPU")
    if workers:
        return workers
    return gpus if not cpu else 1


class RayBatch:
    """The same jobs as batch.Batch, on Ray workers instead of a list of servers."""

    def __init__(
        self,
        jobs: list[Job],
        workers: int,
        comfyui: Path,
        cpu: bool,
        parameters: Parameters,
        template: dict,
        out_dir: Path,
        job_timeout: float,
    ) -> None:
        self.work = Work(jobs, parameters, out_dir)
        self.count, self.comfyui, self.cpu = workers, comfyui, cpu
        self.parameters, self.template, self.job_timeout = parameters, template, job_timeout

    def run(self) -> Summary:
        resources = {"num_cpus": 1} if self.cpu else {"num_gpus": 1}
        remote = ray.remote(ComfyWorker).options(
            max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES, **resources
        )
        arguments = (str(self.comfyui), self.cpu, self.job_timeout, self.template, self.parameters)
        actors = [remote.remote(*arguments) for _ in range(self.count)]
        stopped = False
        try:
            idle = self._ready(actors)
            self._loop(idle)
        except KeyboardInterrupt:
            say("img2img: Ctrl-C: stopping the workers and their servers")
            stopped = True
        finally:
            for actor in actors:
                ray.kill(actor, no_restart=True)  # its ComfyUI dies with it (_die_with_parent)
            self.work.close(stopped=stopped)
        self.work.summary.interrupted = stopped
        return self.work.summary

    def _ready(self, actors: list) -> list:
        """The workers whose server started, each named with its server; the others are left out."""
        ready = []
        for number, actor in enumerate(actors, 1):
            try:
                where = ray.get(actor.describe.remote())
            except (RayActorError, RayTaskError) as error:
                say(f"img2img: worker {number} did not start: {error}", error=True)
                continue
            say(f"img2img: worker {number}: ComfyUI pid {where['pid']} at {where['url']} on {where['node']}")
            ready.append(actor)
        return ready

    def _loop(self, idle: list) -> None:
        in_flight: dict = {}  # task -> (actor, job)
        while True:
            while idle and (job := self.work.next_job()) is not None:
                upload = self.work.read(job)
                if upload is not None:  # else the image has failed and the worker stays idle
                    actor = idle.pop()
                    in_flight[actor.run.remote(upload, job)] = (actor, job)
            if not in_flight:
                if self.work.finished() or not idle:
                    return  # all done, or no worker left (close() fails the rest)
                time.sleep(JOIN_POLL_S)  # inputs held by another run into the folder
                continue
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=JOIN_POLL_S)
            for task in done:
                actor, job = in_flight.pop(task)
                try:
                    outcome = ray.get(task)
                except RayActorError as error:
                    died = f"its worker died {MAX_TASK_RETRIES + 1} times or for good: {error}"
                    self.work.record(ImageOutcome(job, error=died))
                    continue  # the actor is gone: it gets no more images
                except RayTaskError as error:  # the task raised instead of returning; its worker goes on
                    outcome = ImageOutcome(job, error=str(error))
                idle.append(actor)
                self.work.record(outcome)
