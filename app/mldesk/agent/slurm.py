"""The agent's ``slurm`` runtime: an execution becomes one Slurm batch job.

Standard library only, Python >= 3.8 (shipped to the login node with the agent).

The supervising agent on the login node writes ``job.sh`` (a POSIX shell script that
execs ``job.py``, the job driver) into the execution's folder and submits it with
``sbatch --parsable`` from the login node's own environment. On the compute node the
driver runs ``python main.py ARGV`` as a child in the workspace, forwards SIGTERM
(and SIGINT, SIGUSR1/2) to it and, when it ends, writes its exit code atomically to
``exit_code.json``. The agent meanwhile

* follows the job's ``slurm.out`` / ``slurm.err`` by byte offset into the execution's
  ``log.bin`` (so the app's follow/resume path is the one of every SSH run),
* polls ``squeue`` for the job's state: pending is ``queued`` with Slurm's reason,
* stops it on request: ``scancel --batch --signal=TERM JOB`` (the driver passes SIGTERM
  on to the program and its children; a pending job is simply cancelled); after mldesk's
  grace a ``kill`` file makes the driver SIGKILL them; if the job is still there
  KILL_FALLBACK seconds later, ``scancel JOB``. (A plain ``scancel`` leaves the job
  COMPLETING and Slurm refuses further signals until its KillWait is over.)
* reads the end from ``exit_code.json``, else ``scontrol show job``, else ``sacct``,
  else reports it unknown.

The work folder must be on a file system the compute nodes share: the workspace, the
output files and the exit-code file are all written there by the job.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import time

from mldesk.agent.fsutil import read_json, unlink_quiet, write_json

JOB_SCRIPT = "job.sh"
JOB_DRIVER = "job.py"
JOB_OUT = "slurm.out"
JOB_ERR = "slurm.err"
EXIT_FILE = "exit_code.json"

POLL = 0.1  # how often the output files and the exit-code file are looked at
SQUEUE_EVERY = 1.0  # how often squeue is asked
EXIT_FILE_WAIT = 5.0  # after Slurm says the job ended: wait this long for its exit-code file
PARTIAL_FLUSH = 0.5  # a partial line (progress bar) is stored after this many seconds
READ_CHUNK = 1 << 20

ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING",
          "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD")
WHY = {
    "TIMEOUT": "it reached its time limit",
    "NODE_FAIL": "its node failed",
    "OUT_OF_MEMORY": "it ran out of memory",
    "PREEMPTED": "it was preempted",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "it reached its deadline",
    "CANCELLED": "it was cancelled (scancel)",
}

# The job driver. Arguments: the execution folder. Reads spec.json there. SIGTERM (and
# SIGINT, SIGUSR1/2) are passed on to the program and everything it started; a file
# "kill" in the execution folder makes it SIGKILL them all (mldesk's stop after the
# grace period: Slurm itself treats SIGKILL as a cancel that waits for KillWait).
DRIVER = r'''import json, os, signal, subprocess, sys, time
exec_dir = os.path.realpath(sys.argv[1])  # (an array task's: a link to its trial's folder)
with open(os.path.join(exec_dir, "spec.json")) as f:
    spec = json.load(f)
os.chdir(os.path.join(exec_dir, "workspace"))
env = dict(os.environ)
env.update(spec.get("env") or {})  # this execution's own (an array's tasks share the submitter's)
venv = os.path.join(os.getcwd(), ".venv", "bin", "python")
python = venv if os.path.exists(venv) else (spec.get("python") or "python3")
me = os.getpid()


def descendants():
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name, "rb") as f:
                    data = f.read()
                ppid = int(data[data.rfind(b")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(name))
    out, todo = [], [me]
    while todo:
        for pid in children.get(todo.pop(), []):
            out.append(pid)
            todo.append(pid)
    return out


def signal_all(signum):
    for pid in descendants():
        try:
            os.kill(pid, signum)
        except OSError:
            pass


code = None
try:
    child = subprocess.Popen([python, "main.py"] + list(spec["argv"]), stdin=subprocess.DEVNULL, env=env)
except OSError as exc:
    sys.stderr.write("mldesk: cannot start %s on %s: %s\n" % (python, os.uname()[1], exc))
    sys.stderr.flush()
    code = 127
if code is None:
    for name in ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2"):
        signal.signal(getattr(signal, name), lambda signum, frame: signal_all(signum))
    kill_path = os.path.join(exec_dir, "kill")
    while code is None:
        try:
            code = child.wait(0.1)
        except subprocess.TimeoutExpired:
            if os.path.exists(kill_path):
                signal_all(signal.SIGKILL)
    code = 128 - code if code < 0 else code
path = os.path.join(exec_dir, "exit_code.json")
tmp = path + ".tmp-%d" % os.getpid()
with open(tmp, "w") as f:
    json.dump({"exit_code": code, "at": time.time(), "node": os.uname()[1]}, f)
    f.flush()
    os.fsync(f.fileno())
os.replace(tmp, path)
sys.exit(min(code, 255))
'''
KILL_FILE = "kill"
KILL_FALLBACK = 10.0  # after the kill file: plain scancel if the job is still there


# A sweep's trials as one job array: WORKDIR/arrays/<sweep>/ is where they meet.
ARRAYS = "arrays"
TASKS = "tasks"  # tasks/<i>: a link to trial i's execution folder, made when it is ready
GONE = "gone"  # gone/<i>: trial i was stopped before the submission
ARRAY_JOB = "job.json"  # {job, tasks} once submitted ({error} when sbatch refused it)
ARRAY_QUIET = 15.0  # submit what is ready when no trial came or went for this long
ARRAY_POLL = 0.2


class SlurmError(Exception):
    pass


class Withdrawn(Exception):
    """A stop came before the job (array) was submitted."""


def run(args, env=None, timeout=60):
    """(returncode, stdout, stderr) of a Slurm command; rc 127 when it is not found."""
    try:
        r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, env=env, timeout=timeout)
    except FileNotFoundError:
        return 127, "", "%s: command not found" % args[0]
    except subprocess.TimeoutExpired:
        return 124, "", "%s did not answer within %d s" % (args[0], timeout)
    return r.returncode, r.stdout, r.stderr


def last_line(text, default=""):
    lines = [l.strip() for l in (text or "").strip().splitlines() if l.strip()]
    return lines[-1] if lines else default


def job_env(spec):
    env = dict(os.environ)
    slurm = spec.get("slurm") or {}
    env.update(slurm.get("env") or {})
    env.update(spec.get("env") or {})
    return env


def sbatch_argv(spec, exec_dir, workspace, array=None):
    """``array``: (the array's folder, its task ids, K or 0): one job array whose task
    i runs in ``<array folder>/tasks/i``, a link to that trial's execution folder."""
    slurm = spec.get("slurm") or {}
    if array is None:
        name, out_dir, script = spec["exec_id"], exec_dir, os.path.join(exec_dir, JOB_SCRIPT)
        argv = ["sbatch", "--parsable", "--job-name=mldesk-" + name, "--chdir=" + workspace]
    else:
        folder, tasks, parallel = array
        out_dir, script = os.path.join(folder, TASKS, "%a"), os.path.join(folder, JOB_SCRIPT)
        argv = ["sbatch", "--parsable", "--job-name=mldesk-" + os.path.basename(folder), "--chdir=" + folder,
                "--array=%s%s" % (",".join(str(t) for t in tasks), "%%%d" % parallel if parallel else "")]
    argv += ["--output=" + os.path.join(out_dir, JOB_OUT), "--error=" + os.path.join(out_dir, JOB_ERR),
             "--open-mode=append", "--no-requeue"]
    if slurm.get("partition"):
        argv.append("--partition=" + str(slurm["partition"]))
    if slurm.get("time"):
        argv.append("--time=" + str(slurm["time"]))
    if slurm.get("cpus"):
        argv.append("--cpus-per-task=%d" % int(slurm["cpus"]))
    if slurm.get("mem"):
        argv.append("--mem=" + str(slurm["mem"]))
    if slurm.get("gpus"):
        argv.append("--gres=gpu:%d" % int(slurm["gpus"]))
    argv += [str(a) for a in slurm.get("sbatch_args") or []]
    argv.append(script)
    return argv


def write_job_files(spec, exec_dir, array_folder=None):
    """``job.py`` and ``job.sh`` in the execution's folder or, for a job array, in the
    array's folder (its script runs the driver on ``tasks/$SLURM_ARRAY_TASK_ID``)."""
    folder = array_folder or exec_dir
    driver = os.path.join(folder, JOB_DRIVER)
    with open(driver, "w") as f:
        f.write(DRIVER)
    python = spec.get("python") or "python3"
    script = os.path.join(folder, JOB_SCRIPT)
    if array_folder is None:
        what, target = "execution %s" % spec["exec_id"], shlex.quote(exec_dir)
    else:
        what = "sweep %s, one array task per trial" % os.path.basename(array_folder)
        target = '%s/"$SLURM_ARRAY_TASK_ID"' % shlex.quote(os.path.join(array_folder, TASKS))
    with open(script, "w") as f:
        f.write("#!/bin/sh\n# mldesk %s: run python main.py in the workspace, keep its exit code\n"
                "exec %s %s %s\n" % (what, shlex.quote(python), shlex.quote(driver), target))
    os.chmod(script, 0o755)


def submit(spec, exec_dir, workspace, array=None):
    """Submit the job (or, with ``array``, the job array, see ``sbatch_argv``); returns
    its id (a string)."""
    write_job_files(spec, exec_dir)
    for name in (JOB_OUT, JOB_ERR):  # the job appends; start both empty so offsets begin at 0
        open(os.path.join(exec_dir, name), "ab").close()
    return _sbatch(sbatch_argv(spec, exec_dir, workspace, array), spec)


def _sbatch(argv, spec):
    rc, out, err = run(argv, env=job_env(spec), timeout=120)
    if rc == 127:
        raise SlurmError("sbatch was not found on the login node (not on the PATH of an SSH session "
                         "there); is Slurm installed on that host, or does its PATH need setting in the "
                         "host profile's environment?")
    if rc != 0:
        raise SlurmError("sbatch refused the job: %s" % last_line(err or out, "exit code %d" % rc))
    job = last_line(out).split(";")[0]
    if not job.isdigit() and not job.replace("_", "").isdigit():
        raise SlurmError("sbatch answered something unexpected: %r" % out[:200])
    return job


def squeue_state(job, env=None):
    """(STATE, reason) while Slurm lists the job; (None, why) when it no longer does;
    ("?", why) when squeue could not say (slurmctld unreachable, a timeout): ask again."""
    # (-r: a pending array task on a line of its own, asked for as ARRAYJOB_TASK)
    rc, out, err = run(["squeue", "-h", "-r", "-j", job, "-t", "all", "-o", "%T|%r"], env=env, timeout=60)
    line = last_line(out)
    if rc == 0 and "|" in line:
        state, reason = line.split("|", 1)
        return state.strip(), reason.strip()
    if (rc == 0 and not line) or "Invalid job id" in err:
        return None, last_line(err, "not listed")
    return "?", last_line(err or out, "squeue exit code %d" % rc)


def _exit_code(text):
    """Slurm's ``ExitCode=A:S``: the exit status, or 128+S when a signal ended it."""
    try:
        a, s = text.split(":", 1)
        a, s = int(a), int(s)
    except ValueError:
        return None
    return 128 + s if s else a


def scontrol_end(job, env=None):
    """{state, exit_code, reason} from ``scontrol show job``; None when it no longer knows."""
    rc, out, _ = run(["scontrol", "show", "job", "-o", job], env=env, timeout=60)
    if rc != 0 or "JobState=" not in out:
        return None
    fields = {}
    for token in out.split():
        if "=" in token:
            k, v = token.split("=", 1)
            fields.setdefault(k, v)
    return {"state": fields.get("JobState"), "exit_code": _exit_code(fields.get("ExitCode", "")),
            "reason": fields.get("Reason"), "source": "scontrol"}


def sacct_end(job, env=None):
    rc, out, _ = run(["sacct", "-n", "-P", "-X", "-j", job, "-o", "State,ExitCode"], env=env, timeout=60)
    line = last_line(out)
    if rc != 0 or "|" not in line:
        return None
    state, code = line.split("|", 1)
    return {"state": state.split()[0] if state.strip() else None, "exit_code": _exit_code(code),
            "reason": None, "source": "sacct"}


def read_exit_file(exec_dir):
    try:
        with open(os.path.join(exec_dir, EXIT_FILE)) as f:
            return int(json.load(f)["exit_code"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class FileTail(object):
    """Follows one output file by byte offset; complete lines are written at once, a
    partial line after PARTIAL_FLUSH seconds (or at the end)."""

    def __init__(self, path, stream, sink, offset=0):
        self.path = path
        self.stream = stream
        self.sink = sink
        self.offset = offset
        self.pending = b""
        self.since = 0.0
        self.fd = None

    def poll(self, final=False):
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                return False
        got = False
        while True:
            data = os.pread(self.fd, READ_CHUNK, self.offset)
            if not data:
                break
            got = True
            self.offset += len(data)
            data = self.pending + data
            cut = data.rfind(b"\n") + 1
            if cut:
                self.sink(self.stream, data[:cut])
            if not self.pending or cut:
                self.since = time.monotonic()
            self.pending = data[cut:]
        if self.pending and (final or time.monotonic() - self.since >= PARTIAL_FLUSH):
            self.sink(self.stream, self.pending)
            self.pending = b""
        return got

    def has_new(self):
        try:
            return os.stat(self.path).st_size > self.offset
        except OSError:
            return False

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class ArrayRendezvous(object):
    """Where the trials of one sweep (``spec["slurm_array"]``: id, index, size,
    parallel) meet on the login node to be submitted as ONE job array,
    ``--array=<ready indices>%K``. Each trial's supervising agent links its execution
    folder as ``tasks/<index>`` and waits; under the folder's lock, the first one to
    see every trial ready (or gone: stopped first), or nothing change for
    ``ARRAY_QUIET`` seconds, submits the array of the ready ones and writes
    ``job.json``; each then follows its task ``<job>_<index>``. A trial that comes
    after the submission (a slow one, a re-upload) is submitted alone; a stop while
    waiting withdraws the trial. A new agent (the old one died) just joins again."""

    def __init__(self, workdir, spec, exec_dir):
        arr = spec["slurm_array"]
        sweep = str(arr["id"])
        if not sweep or not all(c.isalnum() or c in "-_" for c in sweep):
            raise SlurmError("invalid sweep id %r" % sweep)
        self.spec = spec
        self.exec_dir = exec_dir
        self.index = int(arr["index"])
        self.size = int(arr["size"])
        self.parallel = int(arr.get("parallel") or 0)
        self.quiet = float(arr.get("quiet") or ARRAY_QUIET)
        self.folder = os.path.join(workdir, ARRAYS, sweep)
        self.link = os.path.join(self.folder, TASKS, str(self.index))
        self.gone = os.path.join(self.folder, GONE, str(self.index))

    @contextlib.contextmanager
    def locked(self):
        import fcntl

        for sub in (TASKS, GONE):
            os.makedirs(os.path.join(self.folder, sub), exist_ok=True)
        fd = os.open(os.path.join(self.folder, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def submitted(self):
        return read_json(os.path.join(self.folder, ARRAY_JOB))

    def _listed(self, sub):
        return sorted(int(n) for n in os.listdir(os.path.join(self.folder, sub)) if n.isdigit())

    def _quiet_for(self):
        return time.time() - max(os.stat(os.path.join(self.folder, sub)).st_mtime for sub in (TASKS, GONE))

    def join(self, save, stop_requested):
        """The job id of this trial's task (``JOB_INDEX``), or None when it came too
        late and must be submitted alone; raises Withdrawn on a stop."""
        said = None
        while True:
            with self.locked():
                sub = self.submitted()
                if sub is not None:
                    if sub.get("error"):
                        raise SlurmError(sub["error"])
                    if self.index in sub.get("tasks", ()) and os.path.realpath(self.link) == \
                            os.path.realpath(self.exec_dir):
                        return "%s_%d" % (sub["job"], self.index)
                    return None
                if stop_requested():
                    unlink_quiet(self.link)
                    open(self.gone, "w").close()
                    raise Withdrawn()
                if os.path.realpath(self.link) != os.path.realpath(self.exec_dir):
                    unlink_quiet(self.link)
                    os.symlink(self.exec_dir, self.link)
                ready, gone = self._listed(TASKS), self._listed(GONE)
                if len(ready) + len(gone) >= self.size or self._quiet_for() >= self.quiet:
                    return self._submit(ready)
            waiting = "waiting for the sweep's other trials, to submit them as one job array (%d of %d ready)" % (
                len(ready), self.size - len(gone))
            if waiting != said:
                said = waiting
                save(state="queued", reason=waiting, array_wait=True)
            time.sleep(ARRAY_POLL)

    def _submit(self, ready):
        write_job_files(self.spec, self.exec_dir, self.folder)
        for i in ready:  # each task appends to its trial's files: they start empty
            for name in (JOB_OUT, JOB_ERR):
                open(os.path.join(self.folder, TASKS, str(i), name), "ab").close()
        try:
            job = _sbatch(sbatch_argv(self.spec, self.exec_dir, None, (self.folder, ready, self.parallel)),
                          self.spec)
        except SlurmError as exc:
            write_json(os.path.join(self.folder, ARRAY_JOB), {"error": str(exc), "at": time.time()})
            raise
        write_json(os.path.join(self.folder, ARRAY_JOB), {"job": job, "tasks": ready, "at": time.time()})
        return "%s_%d" % (job, self.index)

    def leave(self, status):
        """This trial's folder goes (cleanup, a new upload): its link goes, and its
        task is cancelled when it may still run; the last one out removes the folder."""
        if not os.path.isdir(self.folder):
            return
        with self.locked():
            sub = self.submitted() or {}
            if sub.get("job") and self.index in sub.get("tasks", ()) and \
                    (status or {}).get("state") not in ("exited", "failed", "stopped"):
                cancel("%s_%d" % (sub["job"], self.index), job_env(self.spec), kill=True)
            if os.path.realpath(self.link) == os.path.realpath(self.exec_dir):
                unlink_quiet(self.link)
            if sub and not os.listdir(os.path.join(self.folder, TASKS)):
                import shutil

                shutil.rmtree(self.folder, ignore_errors=True)


def leave_array(workdir, spec, status):
    if spec and spec.get("slurm_array"):
        try:
            ArrayRendezvous(workdir, spec, os.path.join(workdir, "executions", spec["exec_id"])).leave(status)
        except (OSError, SlurmError, KeyError, ValueError):
            pass


class SlurmJob(object):
    """Drives one execution's job from the supervising agent. ``save(**status)``
    records the agent's status; ``stop_requested()`` returns the stop request or None;
    ``sink(stream, data)`` appends to log.bin."""

    def __init__(self, spec, exec_dir, workspace, save, stop_requested, sink, streams, workdir=None):
        self.spec = spec
        self.workdir = workdir or os.path.dirname(os.path.dirname(exec_dir))
        self.exec_dir = exec_dir
        self.workspace = workspace
        self.save = save
        self.stop_requested = stop_requested
        self.env = job_env(spec)
        out_stream, err_stream = streams
        self.tails = [FileTail(os.path.join(exec_dir, JOB_OUT), out_stream, sink),
                      FileTail(os.path.join(exec_dir, JOB_ERR), err_stream, sink)]
        self.job = None
        self.state = None
        self.reason = None
        self.status_error = None

    def submit(self):
        """Submit the job, or join the sweep's job array (``spec["slurm_array"]``); raises
        Withdrawn when a stop came first."""
        job = None
        if self.spec.get("slurm_array"):
            for name in (JOB_OUT, JOB_ERR):
                open(os.path.join(self.exec_dir, name), "ab").close()
            job = ArrayRendezvous(self.workdir, self.spec, self.exec_dir).join(self.save, self.stop_requested)
        if job is None:
            job = submit(self.spec, self.exec_dir, self.workspace)
        self.job = job
        self.state, self.reason = "queued", None
        self.save(state="queued", slurm_job=self.job, reason=None, array_wait=False, submitted_at=time.time())
        return self.job

    def take_over(self, status, out_offset, err_offset):
        """Follow a job an earlier (dead) agent submitted, from these byte offsets."""
        self.job = str(status["slurm_job"])
        self.state, self.reason = status.get("state"), status.get("reason")
        self.tails[0].offset, self.tails[1].offset = out_offset, err_offset

    def _track(self, sstate, reason):
        if sstate == "PENDING":
            state, reason = "queued", reason if reason and reason != "None" else None
        else:
            state, reason = "running", None
        if (state, reason) != (self.state, self.reason):
            self.state, self.reason = state, reason
            extra = {"started_at": time.time()} if state == "running" else {}
            self.save(state=state, reason=reason, slurm_state=sstate, **extra)

    def _squeue_trouble(self, why):
        """squeue failed (slurmctld down or unreachable): the job is not over because of
        that; note it in the status (once) and keep asking."""
        if self.status_error != why:
            self.status_error = why
            self.save(slurm_error=why)

    def _drain(self):
        for t in self.tails:
            t.poll(final=True)
            t.close()

    def follow(self):
        """Follow the job to its end; returns the program's exit code (raises SlurmError
        when the job ended some other way)."""
        job = self.job
        stop_at = grace = None
        killed = fallback = False
        next_squeue = 0.0
        ended_at = None
        try:
            while True:
                if self.state == "queued" and any(t.has_new() for t in self.tails):
                    self._track("RUNNING", None)  # it writes output: it runs (before squeue says so)
                for t in self.tails:
                    t.poll()
                code = read_exit_file(self.exec_dir)
                if code is not None:
                    self._drain()
                    return code
                now = time.monotonic()
                if stop_at is None:
                    req = self.stop_requested()
                    if req:
                        stop_at, grace = now, float(req.get("grace", 10))
                        if self.state == "queued" or not terminate(job, self.env):
                            cancel(job, self.env)
                            killed = True  # Slurm ends it (SIGKILL after its KillWait)
                elif not killed and now - stop_at >= grace:
                    kill(self.exec_dir)
                    killed = True
                elif killed and now - stop_at >= grace + KILL_FALLBACK and not fallback:
                    cancel(job, self.env)  # the driver did not act (node gone?): Slurm's way
                    fallback = True
                if ended_at is not None:
                    # (the file may reach a shared file system after Slurm's record of the end)
                    if now - ended_at >= EXIT_FILE_WAIT or killed or (stop_at is not None and self.state == "queued"):
                        self._drain()
                        return self._ended_without_file(stop_at is not None)
                elif now >= next_squeue:
                    next_squeue = now + SQUEUE_EVERY
                    sstate, reason = squeue_state(job, self.env)
                    if sstate == "?":
                        self._squeue_trouble(reason)
                    elif sstate is None or sstate not in ACTIVE:
                        ended_at = now
                    else:
                        self._track(sstate, reason)
                time.sleep(POLL)
        finally:
            for t in self.tails:
                t.close()

    def _ended_without_file(self, stopping):
        job = self.job
        end = scontrol_end(job, self.env) or sacct_end(job, self.env)
        if end is None:
            raise SlurmError("how Slurm job %s ended is unknown: it left no exit-code file in %s, "
                             "scontrol no longer knows it and sacct has no record of it (is "
                             "accounting off?)" % (job, self.exec_dir))
        self.save(slurm_state=end["state"])
        if stopping:
            return end["exit_code"] if end["exit_code"] is not None else 143
        state = end["state"] or "?"
        why = WHY.get(state)
        if why:
            raise SlurmError("Slurm job %s ended %s: %s%s" % (
                job, state, why, " (%s)" % end["reason"] if end.get("reason") not in (None, "None") else ""))
        raise SlurmError(
            "Slurm job %s ended %s (exit code %s, %s) without writing its exit code into %s: is the "
            "work folder on a file system the compute nodes share? (see %s)" % (
                job, state, end["exit_code"], end.get("reason") or "no reason given", self.exec_dir,
                os.path.join(self.exec_dir, JOB_ERR)))


def terminate(job, env=None):
    """SIGTERM to the job driver only (``--batch``), which passes it on to the program
    and everything it started; the job ends when the program does. True when sent.
    (A plain ``scancel`` would also TERM them all, but leaves the job COMPLETING, and
    Slurm then refuses any signal until its KillWait is over; ``--signal=KILL`` is a
    plain cancel too.)"""
    return run(["scancel", "--batch", "--signal=TERM", job], env=env)[0] == 0


def kill(exec_dir):
    """Ask the job driver to SIGKILL the program and everything it started."""
    with open(os.path.join(exec_dir, KILL_FILE), "w") as f:
        f.write("%f\n" % time.time())


def cancel(job, env=None, kill=False):
    """End the job the Slurm way: ``scancel`` (SIGTERM to all its processes, SIGKILL
    after Slurm's KillWait; a pending job just leaves the queue); ``kill``: now."""
    if kill:
        return run(["scancel", "--signal=KILL", job], env=env)
    return run(["scancel", job], env=env)


def cluster_info(env=None):
    """What ``mldesk hosts test`` shows: sinfo partitions and a few config values."""
    info = {}
    rc, out, err = run(["sinfo", "-h", "-o", "%P|%a|%D|%T|%G|%l"], env=env, timeout=60)
    if rc == 127:
        return {"error": "sinfo was not found on the login node: is Slurm installed there?"}
    if rc != 0:
        return {"error": "sinfo failed: %s" % last_line(err or out, "exit code %d" % rc)}
    parts = []
    for line in out.splitlines():
        f = line.split("|")
        if len(f) >= 6:
            name = f[0].rstrip("*")
            parts.append({"name": name, "default": f[0].endswith("*"), "avail": f[1], "nodes": f[2],
                          "state": f[3], "gres": f[4], "timelimit": f[5]})
    info["partitions"] = parts
    rc, out, _ = run(["scontrol", "show", "config"], env=env, timeout=60)
    config = {}
    if rc == 0:
        for line in out.splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                k = k.strip()
                if k in ("KillWait", "MinJobAge", "AccountingStorageType", "SLURM_VERSION", "ClusterName",
                         "SelectType", "JobAcctGatherType"):
                    config[k] = v.strip()
    info["config"] = config
    return info


def check_shared(workdir, slurm, env=None, timeout=60.0):
    """Run a tiny job that writes a token into ``workdir``; {ok, error?, job?}. A job
    that cannot start within ``timeout`` (a busy cluster) leaves the question open."""
    import uuid

    token = uuid.uuid4().hex
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, ".slurm-check-" + token)
    argv = ["sbatch", "--parsable", "--job-name=mldesk-check", "--output=/dev/null", "--error=/dev/null",
            "--no-requeue", "--chdir=/"]
    if slurm.get("partition"):
        argv.append("--partition=" + str(slurm["partition"]))
    argv += ["--time=1"] + [str(a) for a in slurm.get("sbatch_args") or []]
    argv += ["--wrap", "echo %s > %s" % (token, shlex.quote(path))]
    rc, out, err = run(argv, env=env, timeout=60)
    if rc == 127:
        return {"ok": False, "error": "sbatch was not found on the login node"}
    if rc != 0:
        return {"ok": False, "error": "sbatch refused a test job: %s" % last_line(err or out, "exit %d" % rc)}
    job = last_line(out).split(";")[0]
    deadline = time.monotonic() + timeout
    state = reason = None
    try:
        while time.monotonic() < deadline:
            try:
                with open(path) as f:
                    if f.read().strip() == token:
                        return {"ok": True, "job": job}
            except OSError:
                pass
            state, reason = squeue_state(job, env)
            if state is not None and state != "?" and state not in ACTIVE:
                time.sleep(EXIT_FILE_WAIT / 5)
                if os.path.exists(path):
                    continue
                return {"ok": False, "job": job,
                        "error": "a test job (%s, %s) could not write into the work folder %s: it is not "
                                 "on a file system the compute nodes share" % (job, state, workdir)}
            time.sleep(0.2)
        return {"ok": None, "job": job,
                "error": "the test job %s did not run within %d s (%s%s): sharing of the work folder "
                         "is unchecked" % (job, timeout, state or "?", ", " + reason if reason else "")}
    finally:
        run(["scancel", job], env=env)
        try:
            os.unlink(path)
        except OSError:
            pass
