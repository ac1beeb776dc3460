"""The Docker side of a runner: the container's hardening and config, ``docker run``'s
options, the runs themselves (the Engine API, attached and byte-exact; the ``docker``
CLI where that client cannot reach the daemon), stop, remove, and the container's
init process for the resource sampler.

Standard library only, Python >= 3.8. ``runner.Supervisor`` runs a container through
``ContainerRuns`` (its spec, paths, status and stop watch are the supervisor's).
"""

from __future__ import annotations

import os
import socket
import threading
import time

from mldesk.agent import dockerapi, logstore
from mldesk.agent.errors import AgentError

# Container hardening, defined once (SPEC 10): tini as PID 1, no capabilities, no
# privilege gain, a private /tmp. The network is the execution's (spec "network").
CONTAINER_WORKDIR = "/workspace"
CONTAINER_TMPFS = {"/tmp": "rw,exec,nosuid,size=1g"}
CONTAINER_CAP_DROP = ["ALL"]
CONTAINER_SECURITY_OPT = ["no-new-privileges"]
CONTAINER_LABEL = "mldesk.execution"


def docker(*args, **kw):
    import subprocess

    return subprocess.run(["docker"] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, **kw)


def docker_run_args(spec, workspace):
    """``docker run`` options for one execution (hardening above, bind mount, env,
    user, GPUs), without the image and command."""
    if ":" in workspace:
        raise AgentError("the work folder %s holds ':', which docker -v cannot take; "
                         "choose another work folder" % workspace)
    cmd = ["--init"]
    for cap in CONTAINER_CAP_DROP:
        cmd += ["--cap-drop", cap]
    for opt in CONTAINER_SECURITY_OPT:
        cmd += ["--security-opt", opt]
    for path, opts in sorted(CONTAINER_TMPFS.items()):
        cmd += ["--tmpfs", "%s:%s" % (path, opts)]
    cmd += ["--network", spec.get("network") or "bridge",
            "-v", workspace + ":" + CONTAINER_WORKDIR,
            # inputs are read-only to the program (SPEC 10a)
            "-v", os.path.join(workspace, "inputs") + ":" + CONTAINER_WORKDIR + "/inputs:ro",
            "-w", CONTAINER_WORKDIR,
            "--label", "%s=%s" % (CONTAINER_LABEL, spec["exec_id"]), "--name", spec["container_name"]]
    for k, v in sorted(container_env(spec).items()):
        cmd += ["-e", "%s=%s" % (k, v)]
    if os.getuid() != 0:
        cmd += ["--user", "%d:%d" % (os.getuid(), os.getgid())]
    gpu_ids = spec.get("gpu_ids")
    if gpu_ids:  # exactly the execution's GPUs (a device request with device ids)
        cmd += ["--gpus", '"device=%s"' % ",".join(str(int(g)) for g in gpu_ids)]
    elif spec.get("gpus") and gpu_ids is None:  # no GPU queue in between: all of them
        cmd += ["--gpus", "all"]
    return cmd


def container_env(spec):
    """The container's environment: the execution's, without CUDA_VISIBLE_DEVICES (the
    container sees only its GPUs, numbered from 0: NVIDIA's runtime sets
    NVIDIA_VISIBLE_DEVICES; the host's CUDA numbering would hide them)."""
    return dict((k, v) for k, v in (spec.get("env") or {}).items() if k != "CUDA_VISIBLE_DEVICES")


def wants_gpus(spec):
    """Does the container ask Docker for GPUs (``gpu_ids``, or all with ``gpus``)?"""
    return bool(spec.get("gpu_ids") or (spec.get("gpus") and spec.get("gpu_ids") is None))


def container_config(spec, workspace):
    """The Engine API's container config for one execution: the same hardening,
    mount, env, user and GPUs (device requests) as ``docker_run_args``."""
    if ":" in workspace:
        raise AgentError("the work folder %s holds ':', which a Docker bind mount cannot take; "
                         "choose another work folder" % workspace)
    host = {
        "Init": True, "CapDrop": list(CONTAINER_CAP_DROP), "SecurityOpt": list(CONTAINER_SECURITY_OPT),
        "Tmpfs": dict(CONTAINER_TMPFS), "NetworkMode": spec.get("network") or "bridge",
        # inputs are read-only to the program (SPEC 10a)
        "Binds": [workspace + ":" + CONTAINER_WORKDIR,
                  os.path.join(workspace, "inputs") + ":" + CONTAINER_WORKDIR + "/inputs:ro"],
        # the runner's own log is the byte-exact record (attached from the start); a
        # daemon-side copy (json-file: not byte-exact) would only halve the throughput
        "LogConfig": {"Type": "none", "Config": {}},
    }
    gpu_ids = spec.get("gpu_ids")
    if gpu_ids:  # exactly the execution's GPUs
        host["DeviceRequests"] = [{"Driver": "", "Count": 0, "DeviceIDs": [str(int(g)) for g in gpu_ids],
                                   "Capabilities": [["gpu"]]}]
    elif spec.get("gpus") and gpu_ids is None:  # no GPU queue in between: all of them
        host["DeviceRequests"] = [{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]
    config = {
        "Image": spec["image"], "Cmd": ["python", "main.py"] + list(spec["argv"]),
        "WorkingDir": CONTAINER_WORKDIR, "Labels": {CONTAINER_LABEL: spec["exec_id"]},
        "Env": ["%s=%s" % kv for kv in sorted(container_env(spec).items())],
        "AttachStdin": False, "AttachStdout": True, "AttachStderr": True, "Tty": False,
        "OpenStdin": False, "HostConfig": host,
    }
    if os.getuid() != 0:
        config["User"] = "%d:%d" % (os.getuid(), os.getgid())
    return config


def stop_container(name, grace):
    if dockerapi.supported():
        try:
            dockerapi.DockerAPI().stop(name, grace)
            return
        except (dockerapi.DockerError, dockerapi.DockerUnavailable, OSError):
            return
    docker("stop", "-t", str(max(0, int(round(grace)))), name)


def remove_container(name):
    if not name:
        return
    if dockerapi.supported():
        try:
            dockerapi.DockerAPI().remove(name)
            return
        except (dockerapi.DockerError, dockerapi.DockerUnavailable, OSError):
            pass
    import subprocess

    try:
        docker("rm", "-f", name, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        pass


class ContainerRuns(object):
    """The Docker runs of ``runner.Supervisor`` (a mixin: ``spec``, ``p``, ``save``,
    ``done``, ``stopping``, ``stop_requested``, ``watch_stop`` and the sampler are the
    supervisor's)."""

    def run_docker(self, writer):
        spec = self.spec
        cmd = ["run", "-d"] + docker_run_args(spec, self.p.workspace)
        cmd += ["--", spec["image"], "python", "main.py"] + list(spec["argv"])  # never a flag
        r = docker(*cmd, timeout=600)
        if r.returncode != 0:
            text = (r.stderr or r.stdout).strip()
            if wants_gpus(spec) and ("gpu" in text.lower() or "device driver" in text):
                raise AgentError("Docker on the host cannot give the container a GPU (%s); install the "
                                 "NVIDIA Container Toolkit there, or turn GPUs off for this host" % text)
            raise AgentError("Docker on the host could not start the container: %s" % text)
        cid = r.stdout.strip().splitlines()[-1]
        self.save(state="running", container=cid, started_at=time.time())
        self.start_sampler(root=container_root(cid, spec["exec_id"]))
        import subprocess

        logs = subprocess.Popen(["docker", "logs", "-f", cid], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        grace_box = []

        def stop(grace):
            grace_box.append(grace)
            docker("stop", "-t", str(max(0, int(round(grace)))), cid)

        t = threading.Thread(target=self.watch_stop, args=(stop,), daemon=True)
        t.start()
        waited = {}

        def wait():
            r = docker("wait", cid)
            waited["code"] = r.stdout.strip()
            waited["err"] = r.stderr.strip()
            # `docker logs -f` ends with the container; bound it in case it does not
            deadline = time.monotonic() + 5
            while logs.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if logs.poll() is None:
                logs.terminate()

        w = threading.Thread(target=wait, daemon=True)
        w.start()
        try:
            logstore.pump(logs.stdout, logs.stderr, writer.write)
            logs.wait()
            w.join()
        finally:
            self.done.set()
            self.stop_sampler()
        try:
            return int(waited.get("code"))
        except (TypeError, ValueError):
            raise AgentError("lost the container (docker wait: %s)" % (waited.get("err") or "no exit code"))



    # -- Docker through the Engine API: attached, byte-exact, survives a daemon restart
    def run_container(self, writer):
        spec = self.spec
        local = bool(spec.get("env_exact"))
        api = dockerapi.DockerAPI()
        name = spec["container_name"]
        config = container_config(spec, self.p.workspace)
        try:
            try:
                cid = api.create(name, config)
            except dockerapi.DockerError as exc:
                if exc.status != 409:  # 409: the name is taken, by an earlier attempt's (never started)
                    raise
                api.remove(name)
                cid = api.create(name, config)
            sock, rest = api.attach(cid)
        except dockerapi.DockerUnavailable as exc:
            raise AgentError("the Docker daemon does not answer (%s); start it" % exc)
        except dockerapi.DockerError as exc:
            raise AgentError(self._start_error(exc.message, local, wants_gpus(spec)))
        try:
            api.start(cid)
        except (dockerapi.DockerError, dockerapi.DockerUnavailable) as exc:
            sock.close()
            try:
                api.remove(cid)
            except (dockerapi.DockerError, dockerapi.DockerUnavailable):
                pass
            raise AgentError(self._start_error(getattr(exc, "message", str(exc)), local, wants_gpus(spec)))
        self.save(state="running", container=cid, started_at=time.time())
        self.start_sampler(root=container_root(cid, spec["exec_id"], api))

        def stop(grace):
            try:
                api.stop(cid, grace)
            except (dockerapi.DockerError, dockerapi.DockerUnavailable, OSError) as exc:
                writer.message("stopping the container failed: %s" % exc)

        threading.Thread(target=self.watch_stop, args=(stop,), daemon=True).start()
        daemon_lost = False
        try:
            while True:
                pump_attach(sock, rest, writer.write)
                sock.close()
                try:
                    info = api.inspect(cid)
                except dockerapi.DockerUnavailable:
                    daemon_lost = True
                    info = self.wait_for_daemon(api, cid, writer)
                if info is None:
                    raise AgentError("the container is gone (removed, or lost with the Docker daemon)")
                state = info.get("State") or {}
                if not state.get("Running"):
                    code = int(state.get("ExitCode", -1))
                    break
                if daemon_lost:
                    writer.message("the Docker daemon is back and the container still runs; following it again")
                    daemon_lost = False
                else:
                    writer.message("the container's output stream broke off; attached again (output written "
                                   "in between may be missing)")
                try:
                    sock, rest = api.attach(cid)
                except dockerapi.DockerUnavailable:
                    sock, rest = _closed_socket(), b""
        finally:
            self.done.set()
            self.stop_sampler()
        if daemon_lost:
            writer.message("the container ended while the Docker daemon was away (exit code %d)" % code)
            raise AgentError("the Docker daemon stopped while the program ran and the container ended with it "
                             "(exit code %d)" % code, exit_code=code)
        return code

    def wait_for_daemon(self, api, cid, writer):
        """The daemon stopped answering: wait for it (saying so), then inspect the
        container again. A stop request or ``docker_wait`` seconds give up."""
        wait = float(self.spec.get("docker_wait", 600))
        writer.message("the Docker daemon stopped answering; waiting up to %d s for it to come back" % wait)
        self.save(note="waiting for the Docker daemon")
        deadline = time.monotonic() + wait
        try:
            while True:
                if api.ping():
                    try:
                        return api.inspect(cid)
                    except dockerapi.DockerUnavailable:
                        pass
                if self.stopping.is_set() or self.stop_requested():
                    raise AgentError("stopped while the Docker daemon was away; the container's fate is unknown")
                if time.monotonic() > deadline:
                    raise AgentError("the Docker daemon did not come back within %d s; the container's fate "
                                     "is unknown" % wait)
                time.sleep(0.5)
        finally:
            self.save(note=None)

    @staticmethod
    def _start_error(text, local, gpus=True):
        gpu = gpus and ("gpu" in text.lower() or "device driver" in text)
        if local:
            if gpu:
                return ("hardwareType is gpu but Docker cannot give this container a GPU (%s); install the "
                        "NVIDIA Container Toolkit on this host or set hardwareType: cpu" % text)
            return "Docker could not start the container: %s" % text
        if gpu:
            return ("Docker on the host cannot give the container a GPU (%s); install the NVIDIA Container "
                    "Toolkit there, or turn GPUs off for this host" % text)
        return "Docker on the host could not start the container: %s" % text


def container_root(cid, exec_id, api=None):
    """The container's init pid on this machine (checked by the execution id in its
    environment), looked up once and again only when that process is gone: a
    callable for ``resources.Sampler``. ``api``: the Engine API client, else the CLI."""
    import subprocess

    found = {}

    def root():
        pid = found.get("pid")
        if pid and os.path.exists("/proc/%d" % pid):
            return pid
        try:
            if api is not None:
                pid = int(((api.inspect(cid) or {}).get("State") or {}).get("Pid") or 0)
            else:
                pid = int(docker("inspect", "--format", "{{.State.Pid}}", cid, timeout=30).stdout.strip())
        except (dockerapi.DockerError, dockerapi.DockerUnavailable, OSError, ValueError,
                subprocess.TimeoutExpired):
            return None
        if pid and pid_environ_has(pid, "MLDESK_EXECUTION_ID", exec_id):
            found["pid"] = pid
            return pid
        return None

    return root


def pid_environ_has(pid, key, value):
    """Was process ``pid`` started with ``key=value`` in its environment (pid reuse)?"""
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return ("%s=%s" % (key, value)).encode() in f.read().split(b"\0")
    except OSError:
        return False


def _closed_socket():
    a, b = socket.socketpair()
    b.close()
    return a


def pump_attach(sock, data, sink):
    """Copy a container's attach stream (``dockerapi.FRAME_HEAD`` frames: stdout 1,
    stderr 2) into ``sink`` until it ends, batched like a process's pipes
    (``logstore.Batcher``). The bytes are the program's, exactly."""
    unpack_from = dockerapi.FRAME_HEAD.unpack_from
    batch = logstore.Batcher(sink)
    add = batch.add
    buf = data
    eof = False
    chunk = None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    except OSError:
        pass
    while True:
        n = len(buf)
        pos = 0
        now = time.monotonic()
        run = []
        run_stream = 0
        while n - pos >= 8:
            stream, size = unpack_from(buf, pos)
            end = pos + 8 + size
            if end > n:
                break
            if stream != run_stream:
                if run:
                    add(2 if run_stream == 2 else 1, b"".join(run), now)
                    run = []
                run_stream = stream
            run.append(buf[pos + 8:end])
            pos = end
        if run:
            add(2 if run_stream == 2 else 1, b"".join(run), now)
        if pos:
            buf = buf[pos:]
        if eof:
            break
        if 0 < len(chunk or b"") < (1 << 15):
            time.sleep(logstore.STREAM_PAUSE)  # trickling: let it collect (see logstore.pump)
        wait = batch.timeout(time.monotonic())
        sock.settimeout(None if wait is None else max(wait, 0.001))  # (0 would make it non-blocking)
        try:
            chunk = sock.recv(1 << 20)
        except (socket.timeout, BlockingIOError, InterruptedError):
            chunk = None
        except OSError:
            chunk = b""
        if chunk == b"":
            eof = True
        elif chunk:
            buf = buf + chunk if buf else chunk
        batch.tick(time.monotonic())
    batch.close()
