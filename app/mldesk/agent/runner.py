"""The runners: run ``python main.py ARGV`` for one execution (process, Docker or a Slurm job), pump its output into the framed log, keep ``status.json``.

Standard library only, Python >= 3.8. The same code runs every program mldesk starts:
on an SSH host the agent's ``supervise`` command runs it there; on this machine the
local runtimes run it too (``python -m mldesk.agent supervise``, detached), with the
execution's folder under ``MLDESK_HOME/executions/<id>/``. So process-group kill,
stop, pumping and container hardening exist once. The Docker side (hardening, config,
the runs through the Engine API or the CLI) is ``containers``; a Slurm job is ``slurm``.

One execution's files (``Paths``)::

    workspace/      the snapshot + inputs/ + outputs/ (the program's working folder)
    spec.json       what to run (argv, env, runtime, image, ...)
    log.bin         the program's output, logstore format (written by the runner only)
    status.json     state, pids / container / Slurm job, exit code (written atomically)
    resources.jsonl the program's CPU, memory and GPU samples (on a host; locally the
                    supervisor samples, see ``engine.supervisor``)
    stop.json       a stop request (the runner acts on it)
    agent.log       the runner's own stdout/stderr

On a host these lie in ``WORKDIR/executions/<id>/``; locally the workspace is there
too but the other files are in its ``run/`` subfolder (the app's own ``log.bin``
lives beside them).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from mldesk.agent import dockerapi, logstore
from mldesk.agent.containers import ContainerRuns, remove_container, stop_container
from mldesk.agent.errors import AgentError, Withdrawn
from mldesk.agent.fsutil import (
    is_disk_full, kill_group, normalise_exit, pid_alive, proc_start_time, read_json, write_json,
)

FINAL_STATES = ("exited", "failed", "stopped")

# The folder that holds the ``mldesk`` package this agent was imported from (on a host:
# WORKDIR/agent/<hash>; locally: the installed app), so a detached runner finds it too.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



def agent_command(*args):
    """argv that runs another agent command with this Python and this package."""
    if getattr(sys, "frozen", False):  # the packaged app: its launcher dispatches __agent
        return [sys.executable, "__agent"] + [str(a) for a in args]
    # -S: the agent is stdlib only, and site-packages' start-up hooks cost ~30 ms
    return [sys.executable, "-S", "-m", "mldesk.agent"] + [str(a) for a in args]


def agent_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# -- paths --------------------------------------------------------------------------------

def _hexname(text, what):
    if not text or not all(c in "0123456789abcdef" for c in text):
        raise AgentError("invalid %s %r" % (what, text))
    return text


LOCAL_STATE = "run"  # locally: the runner's files in executions/<id>/run/


class Paths(object):
    """An execution's files under ``workdir`` (see the module doc). ``state`` names a
    subfolder of the execution's folder for the runner's files (locally ``run``)."""

    def __init__(self, workdir, exec_id=None, state=None):
        self.workdir = os.path.abspath(os.path.expanduser(workdir))
        self.blobs = os.path.join(self.workdir, "blobs")
        self.input_cache = os.path.join(self.workdir, "cache", "inputs")
        if exec_id is not None:
            if not exec_id or not all(c.isalnum() or c in "-_" for c in exec_id):
                raise AgentError("invalid execution id %r" % exec_id)
            if state not in (None, LOCAL_STATE):
                raise AgentError("invalid state folder %r" % state)
            self.exec_id = exec_id
            self.state = state
            self.exec_dir = os.path.join(self.workdir, "executions", exec_id)
            self.state_dir = os.path.join(self.exec_dir, state) if state else self.exec_dir
            self.workspace = os.path.join(self.exec_dir, "workspace")
            self.log = os.path.join(self.state_dir, "log.bin")
            self.status = os.path.join(self.state_dir, "status.json")
            self.spec = os.path.join(self.state_dir, "spec.json")
            self.stop = os.path.join(self.state_dir, "stop.json")
            self.agent_log = os.path.join(self.state_dir, "agent.log")
            self.resources = os.path.join(self.state_dir, "resources.jsonl")

    def blob(self, sha):
        _hexname(sha, "blob id")
        if len(sha) != 64:
            raise AgentError("invalid blob id %r" % sha)
        return os.path.join(self.blobs, sha[:2], sha)

    def supervise_args(self):
        return ["supervise", self.workdir, self.exec_id] + ([self.state] if self.state else [])



def agent_alive(status):
    status = status or {}
    return pid_alive(status.get("agent_pid"), status.get("agent_start"))


# -- docker (the CLI) ----------------------------------------------------------------------

# -- the execution's life ---------------------------------------------------------------------

def reset_exec(p):
    """Make sure nothing of an earlier attempt of this execution is left: its program
    (or container) and supervising runner are killed, its folder removed."""
    status = read_json(p.status) or {}
    spec = read_json(p.spec) or {}
    if status.get("pgid") and agent_alive(status):
        kill_group(status["pgid"], 0)
    if agent_alive(status):
        try:
            os.kill(status["agent_pid"], signal.SIGKILL)
        except OSError:
            pass
    from mldesk.agent import slurm

    if status.get("slurm_job") and status.get("state") not in FINAL_STATES:
        slurm.cancel(status["slurm_job"], slurm.job_env(spec), kill=True)
    slurm.leave_array(p.workdir, spec, status)  # a sweep's trial leaves its job array's folder
    if spec.get("runtime") == "docker" or status.get("container"):
        remove_container(status.get("container") or spec.get("container_name") or "")
    if os.path.isdir(p.exec_dir):
        import shutil

        shutil.rmtree(p.exec_dir, ignore_errors=True)


def spawn(p, ready=False):
    """Start the supervising runner detached (own session, stdio to ``agent.log``).
    With ``ready`` it waits for a line on its stdin (a pipe, returned open) before
    it reads the spec, so its interpreter starts while the workspace is prepared;
    EOF instead (the caller died or gave up) ends it quietly."""
    import subprocess

    os.makedirs(p.state_dir, exist_ok=True)
    args = p.supervise_args()
    if ready:
        args = args + ([] if p.state else [""]) + ["wait"]
    with open(p.agent_log, "ab") as log:
        return subprocess.Popen(agent_command(*args), stdin=subprocess.PIPE if ready else subprocess.DEVNULL,
                                stdout=log, stderr=log, cwd=p.exec_dir, env=agent_env(),
                                start_new_session=True, close_fds=True)


class Forked(object):
    """A runner forked by ``fork_ready``: the parts of ``subprocess.Popen`` that
    ``start`` uses (``stdin``, ``poll``, ``wait``, ``returncode``)."""

    def __init__(self, pid, stdin, done_fd=None, news_fd=None):
        self.pid = pid
        self.stdin = stdin
        self.returncode = None
        # readable (EOF) once the runner has ended, its final status written: a
        # follower can wait on it instead of sleeping between looks at the status
        self.done_fd = done_fd
        # a byte arrives after each write to the log (drain it): the follower copies
        # new output at once instead of at its next look
        self.news_fd = news_fd

    def _reap(self, flags):
        if self.returncode is None:
            try:
                pid, st = os.waitpid(self.pid, flags)
            except ChildProcessError:
                self.returncode = -1  # reaped elsewhere
                return self.returncode
            if pid == self.pid:  # (os.waitstatus_to_exitcode is 3.9+)
                self.returncode = -os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)
        return self.returncode

    def poll(self):
        return self._reap(os.WNOHANG)

    def wait(self, timeout=None):
        return self._reap(0)


def fork_ready(p):
    """``spawn(p, ready=True)`` without a new interpreter: a forked copy of the calling
    (single-threaded) process becomes the runner, detached like a spawned one (own
    session, stdio to ``agent.log``, no inherited descriptors, so no lock of the
    caller's is held by it), and waits for ``start``'s line on its stdin. Ready in a
    few milliseconds instead of an interpreter's start-up (~40-70 ms). Returns a
    ``Forked``, or None where it cannot be done (no fork, other threads running: a
    forked child could inherit their locks held)."""
    if not hasattr(os, "fork") or threading.active_count() != 1:
        return None
    os.makedirs(p.state_dir, exist_ok=True)
    log = os.open(p.agent_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    import fcntl

    r, w = os.pipe()
    done_r, done_w = os.pipe()
    news_r, news_w = os.pipe()
    for fd in (news_r, news_w):  # never blocks either side
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    pid = os.fork()
    if pid == 0:  # the runner
        code = 1
        try:
            os.setsid()
            os.chdir(p.exec_dir)
            done_hi = fcntl.fcntl(done_w, fcntl.F_DUPFD_CLOEXEC, 256)  # out of the way of 0-4
            news_hi = fcntl.fcntl(news_w, fcntl.F_DUPFD_CLOEXEC, 256)
            os.dup2(r, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.dup2(done_hi, 3, inheritable=False)  # closed when this process ends
            os.dup2(news_hi, 4, inheritable=False)
            os.closerange(5, _max_fd())
            global _NEWS_FD
            _NEWS_FD = 4
            sys.stdin = open(0, "r", closefd=False)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            for sig in (signal.SIGINT, signal.SIGTERM):  # as in a new interpreter
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
            code = supervise(p, wait=True)
        except BaseException:  # noqa: BLE001 - a forked child never returns into its parent's code
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(r)
    os.close(log)
    os.close(done_w)
    os.close(news_w)
    return Forked(pid, os.fdopen(w, "wb"), done_r, news_r)


_NEWS_FD = None  # in a runner forked by fork_ready: poked after each write to the log


def poke(fd):
    """One byte into a non-blocking "there is news" pipe; a full pipe (the reader is
    behind: it will look anyway) or a gone reader is no error. Returns False when
    the reader is gone for good."""
    try:
        os.write(fd, b"!")
    except BlockingIOError:
        pass
    except OSError:
        return False
    return True


def _poking(write, fd):
    box = [fd]

    def poking_write(stream, data, ts=None):
        end = write(stream, data, ts)
        if box[0] is not None and not poke(box[0]):
            box[0] = None
        return end

    return poking_write


def _max_fd():
    try:
        return min(os.sysconf("SC_OPEN_MAX"), 1 << 20)
    except (ValueError, OSError):
        return 65536


def start(p, spec, wait=300.0, proc=None):
    """Write ``spec`` and start the supervising runner for it (or let ``proc``, from
    ``spawn(p, ready=True)``, go on); return the status once the program runs (or
    failed to). A second start of the same execution returns its status."""
    if not os.path.isdir(p.workspace):
        return {"state": "failed", "error": "the workspace %s is missing" % p.workspace}
    status = read_json(p.status)
    if status and (agent_alive(status) or status.get("state") in FINAL_STATES):
        return status  # already started (a second start after a lost answer)
    os.makedirs(p.state_dir, exist_ok=True)
    spec = dict(spec, container_name="mldesk-" + p.exec_id)
    write_json(p.spec, spec)
    if proc is not None and proc.poll() is None:
        try:
            proc.stdin.write(b"go\n")
            proc.stdin.close()
        except OSError:
            proc = None
    else:
        proc = None
    if proc is None:
        proc = spawn(p)
    deadline = time.monotonic() + wait
    pause = 0.002
    while time.monotonic() < deadline:
        status = read_json(p.status)
        if status and status.get("state") != "starting":
            _reap_later(proc)
            return status
        if proc.poll() is not None:
            status = read_json(p.status)
            if status and status.get("state") != "starting":
                return status
            try:
                with open(p.agent_log) as f:
                    tail = f.read()[-2000:].strip().splitlines()
            except OSError:
                tail = []
            return {"state": "failed", "error": "mldesk's runner died at start: %s"
                    % (tail[-1] if tail else "exit code %s" % proc.returncode)}
        time.sleep(pause)
        pause = min(0.01, pause * 1.5)
    return {"state": "failed", "error": "the program did not start within %d s" % wait}


def _reap_later(proc):
    """The runner is our child until it ends: reap it then (no zombie)."""
    threading.Thread(target=proc.wait, daemon=True).start()


def request_stop(p, grace):
    """Ask the runner to stop the program (TERM, KILL after ``grace``); when the
    runner is gone, act here. Returns {ok, agent} or {ok: False, error}."""
    if not os.path.isdir(p.exec_dir):
        return {"ok": False, "error": "no such execution"}
    if not os.path.exists(p.stop):
        write_json(p.stop, {"grace": grace, "at": time.time()})
    status = read_json(p.status) or {}
    if status.get("state") in FINAL_STATES or agent_alive(status):
        return {"ok": True, "agent": agent_alive(status)}
    # the supervising runner is gone: act ourselves
    if status.get("slurm_job"):
        from mldesk.agent import slurm

        slurm.cancel(status["slurm_job"], slurm.job_env(read_json(p.spec) or {}))
    elif status.get("container"):
        stop_container(status["container"], grace)
    elif status.get("pgid"):
        kill_group(status["pgid"], grace)
    return {"ok": True, "agent": False}


def slurm_resumable(status):
    """A Slurm job whose supervising runner died (killed, login node rebooted): the job
    goes on in Slurm, so a new runner can take over following it (or, for a sweep's
    trial still waiting for its job array, join the array's folder again)."""
    return bool(status and (status.get("slurm_job") or status.get("array_wait"))
                and status.get("state") in ("queued", "running") and not agent_alive(status))


def supervise(p, wait=False):
    """The detached runner's life: run the program, write log and status (with
    ``wait``: once a line arrives on stdin; EOF ends it, see ``spawn``). A Slurm job
    whose runner died is taken over (``follow`` starts a new runner for it)."""
    import fcntl

    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup
    if wait:
        if not sys.stdin.buffer.readline().strip():
            return 0
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    # one supervising runner per execution (a Slurm take-over may be asked twice at once)
    lock = os.open(os.path.join(p.state_dir, "supervise.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0
    status = read_json(p.status)
    Supervisor(p, resume=status if slurm_resumable(status) else None).run()
    return 0


class Supervisor(ContainerRuns):
    def __init__(self, p, resume=None):
        self.p = p
        self.spec = read_json(p.spec)
        self.resume = resume  # the status of a Slurm job to take over
        self.status = dict(resume or {"state": "starting", "runtime": self.spec["runtime"]},
                           agent_pid=os.getpid(), agent_start=proc_start_time(os.getpid()))
        self.stopping = threading.Event()
        self.done = threading.Event()
        self.sampler = None

    def start_sampler(self, **root):
        """Resource samples of the program (and its GPUs) every 2 s into resources.jsonl;
        the app pulls them with the ``resources`` command. Not locally (``sample``
        false): there the supervisor samples (``Runtime.sample_root``)."""
        if not self.spec.get("sample", True):
            return
        from mldesk.agent import resources

        try:
            gpus = [int(g) for g in (self.spec.get("gpu_ids") or [])]
            cache = resources.GpuCache(os.path.join(self.p.workdir, "cache", "gpus.json")) if gpus else None
            self.sampler = resources.Sampler(self.p.resources, gpus=gpus, gpu_cache=cache,
                                             interval=float(self.spec.get("sample_interval") or 2.0),
                                             **root).start()
        except Exception:  # noqa: BLE001 - no samples is no reason to fail the program
            self.sampler = None

    def stop_sampler(self):
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None

    def save(self, **kw):
        self.status.update(kw)
        write_json(self.p.status, self.status)

    def stop_requested(self):
        return read_json(self.p.stop)

    def run(self):
        self.save()
        if self.stop_requested() and not self.resume:
            self.save(state="stopped", exit_code=None, finished_at=time.time(),
                      error="stopped before the program started")
            return
        writer = logstore.LogWriter(self.p.log)
        if _NEWS_FD is not None:  # (a forked local runner) its follower wakes on each write
            writer.write = _poking(writer.write, _NEWS_FD)
        try:
            if self.spec["runtime"] == "docker":
                if dockerapi.supported():
                    code = self.run_container(writer)
                else:
                    code = self.run_docker(writer)
            elif self.spec["runtime"] == "slurm":
                code = self.run_slurm(writer)
            else:
                code = self.run_process(writer)
        except Withdrawn as exc:
            writer.close()
            self.save(state="stopped", exit_code=None, reason=None, array_wait=False, finished_at=time.time(),
                      error=str(exc))
            return
        except AgentError as exc:
            writer.close()
            self.save(state="failed", error=str(exc), exit_code=exc.exit_code, finished_at=time.time())
            return
        except Exception as exc:  # noqa: BLE001 - recorded for the app to show
            try:
                writer.close()
            except OSError:
                pass
            if is_disk_full(exc):  # the program was stopped: its output could no longer be recorded
                self.save(state="failed", error="no space left on the device for %s (the program was stopped: "
                          "its output could no longer be recorded)" % (getattr(exc, "filename", None) or self.p.log),
                          no_space=getattr(exc, "filename", None) or self.p.log, finished_at=time.time())
                return
            self.save(state="failed", error="mldesk's agent failed: %s: %s" % (type(exc).__name__, exc),
                      finished_at=time.time())
            raise
        writer.close()
        self.save(state="exited", exit_code=code, finished_at=time.time())

    def watch_stop(self, act):
        while not self.done.wait(0.1):
            req = self.stop_requested()
            if req:
                self.stopping.set()
                act(float(req.get("grace", 10)))
                return

    def run_process(self, writer):
        spec = self.spec
        ws = self.p.workspace
        venv = os.path.join(ws, ".venv", "bin", "python")
        python = venv if os.path.exists(venv) else (spec.get("python") or "python3")
        if spec.get("env_exact"):  # locally: exactly the environment the app chose
            env = dict(spec.get("env") or {})
        else:
            from mldesk.agent.envpolicy import host_env

            env = host_env(os.environ)  # never the rest of the agent's environment (SSH_AUTH_SOCK...)
            env.update(spec.get("env") or {})
        import subprocess

        try:
            proc = subprocess.Popen([python, "main.py"] + list(spec["argv"]), cwd=ws, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise AgentError("could not start %s on the host: %s" % (python, exc.strerror or exc))
        self.save(state="running", pid=proc.pid, pgid=proc.pid, python=python, started_at=time.time())
        self.start_sampler(root_pid=proc.pid)
        t = threading.Thread(target=self.watch_stop,
                             args=(lambda grace: kill_group(proc.pid, grace),), daemon=True)
        t.start()
        try:
            logstore.pump(proc.stdout, proc.stderr, writer.write, proc)
            code = normalise_exit(proc.wait())
        except BaseException:  # its output can no longer be recorded (a full disk): it ends
            kill_group(proc.pid, 0)
            raise
        finally:
            self.done.set()
            self.stop_sampler()
        if spec.get("kill_leftovers"):
            # what the program left running in its group (a tensorboard, workers) ends
            # with it; the group id cannot have been reused while a member was left
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return code

    def run_slurm(self, writer):
        from mldesk.agent import slurm

        job = slurm.SlurmJob(self.spec, self.p.exec_dir, self.p.workspace, self.save,
                             self.stop_requested, writer.write, (logstore.STDOUT, logstore.STDERR),
                             workdir=self.p.workdir)
        try:
            if self.resume and self.resume.get("slurm_job"):
                # what of the job's output files log.bin holds already: exactly its
                # stdout and stderr bytes (the runner writes nothing else there)
                done = {logstore.STDOUT: 0, logstore.STDERR: 0}
                with logstore.LogReader(self.p.log) as reader:
                    for rec in reader.iter_records():
                        if rec.stream in done:
                            done[rec.stream] += len(rec.data)
                job.take_over(self.resume, done[logstore.STDOUT], done[logstore.STDERR])
            else:
                job.submit()
            code = job.follow()
        except slurm.SlurmError as exc:
            raise AgentError(str(exc))
        except slurm.Withdrawn:
            raise Withdrawn()
        finally:
            self.done.set()
        self.status["reason"] = None
        return code
