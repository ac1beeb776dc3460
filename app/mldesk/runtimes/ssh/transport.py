"""The SSH transport (paramiko): ``~/.ssh/config`` resolution, host-key checks against
``~/.ssh/known_hosts`` and mldesk's own file, login, keepalive, exec channels.

Connecting (:func:`connect`) resolves the profile through ``~/.ssh/config``
(HostName, Port, User, IdentityFile, IdentitiesOnly, ProxyJump: what the profile sets
itself wins, as on the ``ssh`` command line), opens the TCP connection (directly or
through the jump hosts, each checked like the target), checks the host key, logs in
and turns keepalive on.

Host keys are looked up in ``~/.ssh/known_hosts`` and in mldesk's own file
(``Layout.known_hosts``). A known key that matches: fine. A different key where one of
the same type is known: :class:`HostKeyChanged`, naming both fingerprints; nothing is
ever accepted over it. An unknown key: :class:`HostKeyUnknown`, carrying the SHA256
fingerprint, unless it equals the fingerprint the caller accepted (``--accept-
fingerprint``, or the user said yes to it in a dialog or at a terminal); only then is
it written to mldesk's file. Nothing is accepted silently.
"""

from __future__ import annotations

import base64
import codecs
import getpass
import hashlib
import os
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from mldesk.agent import protocol

from mldesk.core.hosts import (  # noqa: F401 - the errors are re-exported for the SSH runtime
    PREFERRED_CIPHERS, AskHostKey, AskSecret, HostAuthError, HostError, HostKeyChanged,
    HostKeyError, HostKeyUnknown, HostProfile, HostProfileError, HostUnreachable,
    SecretUnavailable, delete_secret, get_secret, keyring_problem, known_hosts_name,
    load_profile, no_keyring_message, normalise_fingerprint, parse_url, passphrase_secret_name,
    password_secret_name, set_secret,
)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint (base64 without padding)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# -- ~/.ssh/config ------------------------------------------------------------------------------

def ssh_dir() -> Path:
    return Path(os.path.expanduser("~")) / ".ssh"


def user_ssh_config_path() -> Path:
    return Path(os.environ.get("MLDESK_SSH_CONFIG") or ssh_dir() / "config")


def user_known_hosts_path() -> Path:
    return Path(os.environ.get("MLDESK_SSH_KNOWN_HOSTS") or ssh_dir() / "known_hosts")


@dataclass
class Endpoint:
    """Where and as whom to connect, after ~/.ssh/config."""

    alias: str
    hostname: str
    port: int
    user: str
    key_files: list[str] = field(default_factory=list)
    explicit_keys: bool = False  # the profile or ssh config named key files
    identities_only: bool = False
    jump: str | None = None

    @property
    def label(self) -> str:
        where = self.hostname if self.port == 22 else f"{self.hostname}:{self.port}"
        return f"{self.user}@{where}"


def resolve(profile: HostProfile, config_path: Path | None = None) -> Endpoint:
    path = config_path or user_ssh_config_path()
    look: dict[str, Any] = {}
    if path.is_file():
        try:
            look = paramiko.SSHConfig.from_path(str(path)).lookup(profile.host)
        except Exception as exc:  # noqa: BLE001 - a config paramiko cannot read
            raise HostProfileError(f"cannot read {path}: {exc}") from None
    hostname = look.get("hostname") or profile.host
    try:
        port = profile.port or int(look.get("port") or 22)
    except ValueError:
        raise HostProfileError(f"{path}: Port {look.get('port')!r} of {profile.host} is not a number") from None
    user = profile.user or look.get("user") or getpass.getuser()
    if profile.key:
        keys, explicit = [os.path.expanduser(profile.key)], True
    else:
        keys = [os.path.expanduser(k) for k in look.get("identityfile") or []]
        explicit = bool(keys)
    jump = profile.jump or look.get("proxyjump")
    if jump and jump.strip().lower() == "none":
        jump = None
    return Endpoint(alias=profile.host, hostname=hostname, port=port, user=user, key_files=keys,
                    explicit_keys=explicit,
                    identities_only=str(look.get("identitiesonly", "no")).lower() == "yes",
                    jump=jump)


# -- known hosts ---------------------------------------------------------------------------------

class KnownHosts:
    """``~/.ssh/known_hosts`` (read only) plus mldesk's own file (read and appended)."""

    def __init__(self, own: Path, user: Path | None = None):
        self.own = Path(own)
        self.user = Path(user) if user is not None else user_known_hosts_path()

    def _files(self) -> list[Path]:
        return [p for p in (self.user, self.own) if p.is_file()]

    def lookup(self, hostname: str, port: int) -> list[tuple[paramiko.PKey, str]]:
        """Every key on record for the host, with the file it is in."""
        out = []
        name = known_hosts_name(hostname, port)
        for path in self._files():
            hk = paramiko.HostKeys()
            try:
                hk.load(str(path))
            except (OSError, UnicodeDecodeError):
                continue
            entry = hk.lookup(name)
            if entry:
                for key_type in entry.keys():
                    out.append((entry[key_type], str(path)))
        return out

    def add(self, hostname: str, port: int, key: paramiko.PKey) -> None:
        self.own.parent.mkdir(parents=True, exist_ok=True)
        line = f"{known_hosts_name(hostname, port)} {key.get_name()} {key.get_base64()}\n"
        fd = os.open(self.own, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def _key_algorithms_for(types: set[str], offered: tuple[str, ...]) -> list[str]:
    """Host key algorithms to offer, those whose key type is on record first."""
    def key_type(alg: str) -> str:
        return "ssh-rsa" if alg.startswith("rsa-sha2-") else alg.replace("-cert-v01@openssh.com", "")

    first = [a for a in offered if key_type(a) in types]
    return first + [a for a in offered if a not in first]


def check_host_key(transport: paramiko.Transport, ep: Endpoint, known: KnownHosts, *,
                   accept_fingerprint: str | None, ask: AskHostKey | None, label: str) -> str:
    """Apply the host-key policy; returns how the key was trusted ("known"/"accepted")."""
    key = transport.get_remote_server_key()
    fp = fingerprint(key)
    accepted = normalise_fingerprint(accept_fingerprint) if accept_fingerprint else None
    records = known.lookup(ep.hostname, ep.port)
    same_type = [(fingerprint(k), where) for k, where in records if k.get_name() == key.get_name()]
    if any(k.get_name() == key.get_name() and k.asbytes() == key.asbytes() for k, _ in records):
        if accepted is not None and accepted != fp:  # the caller vouches for another key
            raise HostKeyUnknown(label, key.get_name(), fp, accepted=accepted)
        return "known"
    if same_type:
        raise HostKeyChanged(label, key.get_name(), fp, same_type)
    if accepted is not None:
        if accepted != fp:
            raise HostKeyUnknown(label, key.get_name(), fp, accepted=accepted)
    elif ask is None or not ask(label, key.get_name(), fp):
        raise HostKeyUnknown(label, key.get_name(), fp,
                             known_types=tuple(sorted({k.get_name() for k, _ in records})))
    known.add(ep.hostname, ep.port, key)
    return "accepted"


# -- sockets ------------------------------------------------------------------------------------

class CountingSocket:
    """A socket wrapper that counts the bytes paramiko sends and receives."""

    def __init__(self, sock):
        self._sock = sock
        self.sent = 0
        self.received = 0

    def send(self, data) -> int:
        n = self._sock.send(data)
        self.sent += n
        return n

    def sendall(self, data) -> None:
        self._sock.sendall(data)
        self.sent += len(data)

    def recv(self, n: int) -> bytes:
        data = self._sock.recv(n)
        self.received += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._sock, name)


def _tcp_connect(hostname: str, port: int, timeout: float, label: str, keepalive: float = 10.0) -> socket.socket:
    where = f"{hostname}:{port}"
    try:
        sock = socket.create_connection((hostname, port), timeout=timeout)
    except socket.timeout:
        raise HostUnreachable(
            f"cannot reach {label}: no answer from {where} within {timeout:g} s (connect timeout); "
            "is the host up and on the network, and is the address right?") from None
    except ConnectionRefusedError:
        raise HostUnreachable(
            f"cannot reach {label}: {where} refused the connection; is sshd running there, "
            "and is the port right?") from None
    except socket.gaierror as exc:
        raise HostUnreachable(f"cannot reach {label}: the host name {hostname} was not found "
                              f"({exc.strerror or exc}); check the address") from None
    except OSError as exc:
        raise HostUnreachable(f"cannot reach {label} ({where}): {exc.strerror or exc}; "
                              "check the address and the network") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if keepalive and hasattr(socket, "TCP_USER_TIMEOUT"):
        # data (our keepalives included) unacknowledged this long: the kernel drops the
        # connection, so a dead link ends every channel instead of hanging it
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int((2 * keepalive + 2) * 1000))
        except OSError:
            pass
    return sock


# -- authentication -------------------------------------------------------------------------------

class _BadPassphrase(Exception):
    pass


def _read_key(path: str, passphrase: str | None = None) -> paramiko.PKey:
    """paramiko.PKey.from_path with its errors sorted out: PasswordRequiredException
    (encrypted, no passphrase), _BadPassphrase, or SSHException (not a key)."""
    try:
        return paramiko.PKey.from_path(path, passphrase.encode() if passphrase is not None else None)
    except paramiko.PasswordRequiredException:
        raise
    except TypeError as exc:  # cryptography: "password was not given / not provided"
        if "password" in str(exc).lower():
            raise paramiko.PasswordRequiredException(str(exc)) from None
        raise paramiko.SSHException(str(exc)) from None
    except (ValueError, paramiko.SSHException) as exc:
        if passphrase is not None:
            raise _BadPassphrase(str(exc)) from None
        raise paramiko.SSHException(str(exc)) from None


def _load_key(path: str, ask: AskSecret | None) -> paramiko.PKey:
    try:
        return _read_key(path)
    except paramiko.PasswordRequiredException:
        pass
    except FileNotFoundError:
        raise HostAuthError(f"the key file {path} does not exist; choose another with --key "
                            "(or in the Hosts dialog)") from None
    except PermissionError:
        raise HostAuthError(f"the key file {path} cannot be read (permission denied)") from None
    except (paramiko.SSHException, UnicodeDecodeError) as exc:
        raise HostAuthError(f"{path} is not a private key mldesk can read ({exc})") from None
    name = passphrase_secret_name(path)
    secret = get_secret(name)
    if secret is not None:
        try:
            return _read_key(path, secret)
        except _BadPassphrase:
            pass  # the stored passphrase is stale: ask again below
    if ask is None:
        where = ("it is not in the OS keyring" if not keyring_problem()
                 else no_keyring_message("key passphrases"))
        raise HostAuthError(
            f"the key {path} is protected by a passphrase and mldesk cannot ask for it here "
            f"({where}); run `mldesk hosts test NAME` at a terminal to enter it, or load the key "
            "into ssh-agent (ssh-add)")
    for _ in range(3):
        secret = ask("passphrase", f"Passphrase for {path}: ")
        if secret is None:
            break
        try:
            key = _read_key(path, secret)
        except _BadPassphrase:
            continue
        set_secret(name, secret)
        return key
    raise HostAuthError(f"no valid passphrase was given for the key {path}")


def _key_label(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {fingerprint(key)}"


def _default_key_files() -> list[str]:
    d = ssh_dir()
    return [str(d / n) for n in ("id_ed25519", "id_ecdsa", "id_rsa") if (d / n).is_file()]


def authenticate(transport: paramiko.Transport, ep: Endpoint, profile: HostProfile,
                 ask: AskSecret | None, label: str) -> str:
    """Log in; returns a description of what worked. Raises HostAuthError saying what was
    tried and what to do."""
    tried: list[str] = []
    allowed: list[str] | None = None

    def attempt(fn, what: str) -> bool:
        nonlocal allowed
        try:
            remaining = fn()
        except paramiko.BadAuthenticationType as exc:
            allowed = list(exc.allowed_types)
            tried.append(f"{what} (the server does not take this kind of login)")
            return False
        except paramiko.AuthenticationException:
            tried.append(what)
            return False
        if remaining:  # partial success: more factors wanted (not supported)
            tried.append(f"{what} (accepted, but the server wants more: {', '.join(remaining)})")
            return False
        return True

    key_files = ep.key_files if ep.explicit_keys else _default_key_files()
    for path in key_files:
        key = _load_key(path, ask)
        if attempt(lambda k=key: transport.auth_publickey(ep.user, k), f"the key {path} ({_key_label(key)})"):
            return f"key {path}"
    if not (ep.explicit_keys and ep.identities_only):
        try:
            agent_keys = paramiko.Agent().get_keys()
        except paramiko.SSHException:
            agent_keys = ()
        for key in agent_keys:
            if attempt(lambda k=key: transport.auth_publickey(ep.user, k),
                       f"ssh-agent's key {_key_label(key)}"):
                return f"ssh-agent key {fingerprint(key)}"
    if profile.password:
        name = password_secret_name(ep)
        secret = get_secret(name)
        asked = False
        if secret is None and ask is not None:
            secret, asked = ask("password", f"Password for {label}: "), True
        if secret is None:
            where = ("it is not in the OS keyring" if not keyring_problem()
                     else no_keyring_message("passwords"))
            tried.append(f"a password (none given: {where})")
        elif attempt(lambda: transport.auth_password(ep.user, secret), "the password"):
            if asked:
                set_secret(name, secret)
            return "password"
        elif not asked:
            delete_secret(name)  # stale: ask next time
    if not tried:
        raise HostAuthError(
            f"cannot log in to {label}: no key to try (no --key, no IdentityFile in "
            f"{user_ssh_config_path()}, no ssh-agent, no ~/.ssh/id_* key); give one with --key PATH")
    hint = (f"add the public key (e.g. {key_files[0]}.pub) to ~{ep.user}/.ssh/authorized_keys on the "
            f"host (ssh-copy-id -i {key_files[0]}.pub {'-p %d ' % ep.port if ep.port != 22 else ''}"
            f"{ep.user}@{ep.hostname}), or choose the right key with `mldesk hosts add NAME URL --key PATH`"
            if key_files else "choose a key with `mldesk hosts add NAME URL --key PATH`")
    if allowed is not None:
        hint += f"; the server accepts: {', '.join(allowed)}"
    raise HostAuthError(f"SSH login to {label} failed: the server refused {'; '.join(tried)}. "
                        f"Check the user name ({ep.user}), then {hint}")


# -- connections ----------------------------------------------------------------------------------

class LinkLost(HostError):
    """The connection died (or stopped answering) while in use."""


@dataclass
class ExecResult:
    code: int
    stdout: bytes
    stderr: str


class RemoteProcess:
    """One command on the host over an exec channel. stderr is always drained by a
    thread (incrementally decoded), so a command that writes a lot there never blocks;
    stdout is read by the caller (``read``/``read_exact``/``read_frame``/``lines``) or,
    with ``collect=True``, drained by a second thread."""

    def __init__(self, conn: "Connection", argv: list[str], *, timeout: float | None = 60.0,
                 collect: bool = False, window_size: int | None = None):
        self.conn = conn
        self.argv = [str(a) for a in argv]
        try:
            self.chan = conn.transport.open_session(window_size=window_size,
                                                    timeout=timeout or conn.profile.connect_timeout)
            self.chan.settimeout(timeout)
            self.chan.exec_command(shlex.join(self.argv))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise LinkLost(f"cannot run a command on {conn.label}: {exc or type(exc).__name__}") from None
        self._err_parts: list[str] = []
        self._err_size = 0
        self._out = bytearray()
        self._buf = bytearray()
        self._threads = [threading.Thread(target=self._drain_stderr, daemon=True, name="ssh-stderr")]
        if collect:
            self._threads.append(threading.Thread(target=self._drain_stdout, daemon=True, name="ssh-stdout"))
        for t in self._threads:
            t.start()

    # stderr / stdout drains
    def _drain_stderr(self) -> None:
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        while True:
            try:
                data = self.chan.recv_stderr(65536)
            except socket.timeout:
                if self.chan.closed or self.chan.exit_status_ready() and not self.chan.recv_stderr_ready():
                    break
                continue
            except Exception:  # noqa: BLE001 - the channel died
                break
            if not data:
                break
            text = dec.decode(data)
            self._err_parts.append(text)
            self._err_size += len(text)
            while self._err_size > 256 * 1024 and len(self._err_parts) > 1:  # keep the tail
                self._err_size -= len(self._err_parts.pop(0))
        tail = dec.decode(b"", final=True)
        if tail:
            self._err_parts.append(tail)

    def _drain_stdout(self) -> None:
        while True:
            try:
                data = self.chan.recv(1 << 16)
            except socket.timeout:
                if self.chan.closed:
                    break
                continue
            except Exception:  # noqa: BLE001
                break
            if not data:
                break
            self._out += data

    @property
    def stderr(self) -> str:
        return "".join(self._err_parts)

    # writing
    def send(self, data) -> int:
        """Send all of ``data`` (in packet-sized slices: paramiko's own ``sendall``
        re-slices the rest of a big buffer after every packet, quadratic in its size)."""
        view = memoryview(data)
        size = self.chan.out_max_packet_size or 32768
        try:
            for i in range(0, len(view), size):
                self.chan.sendall(view[i:i + size])
        except socket.timeout:
            raise self._lost(f"{self.conn.endpoint.label} stopped taking data") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._lost(f"the connection to {self.conn.endpoint.label} broke while sending ({exc})") from None
        return len(view)

    def _lost(self, text: str) -> LinkLost:
        """The link is taken for dead: close the transport at once (a later write on a
        dead link could block), so every channel on it ends."""
        self.conn.close()
        return LinkLost(text)

    def send_frame(self, payload: bytes) -> None:
        self.send(protocol.frame(payload))

    def close_stdin(self) -> None:
        try:
            self.chan.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass

    # reading stdout
    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            try:
                data = self.chan.recv(max(1 << 16, n - len(self._buf)))
            except socket.timeout:
                raise self._lost(f"no answer from {self.conn.endpoint.label} for {self.chan.gettimeout():g} s") from None
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise self._lost(f"the connection to {self.conn.endpoint.label} broke ({exc})") from None
            if not data:
                return False
            self._buf += data
        return True

    def read_exact(self, n: int) -> bytes | None:
        """Exactly ``n`` bytes, or None at the end of the output."""
        if not self._fill(n):
            if self._buf:
                self._buf.clear()
                raise self._ended("the output ended in the middle of a message")
            return None
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def read_frame(self) -> bytes:
        """A ``u32 len | payload`` frame; raises when the output ends instead."""
        head = self.read_exact(protocol.LENGTH.size)
        if head is None:
            raise self._ended("the command ended without answering")
        size = protocol.frame_length(head)
        data = self.read_exact(size) if size else b""
        if data is None:
            raise self._ended("the output ended in the middle of a message")
        return data

    def read_typed(self) -> tuple[bytes, bytes] | None:
        """A ``u8 type | u32 len | payload`` frame, or None at the end of the output."""
        head = self.read_exact(protocol.TYPED_HEAD_SIZE)
        if head is None:
            return None
        kind, size = protocol.typed_head(head)
        data = self.read_exact(size) if size else b""
        if data is None:
            raise self._ended("the output ended in the middle of a message")
        return kind, data

    def lines(self):
        """stdout, a line at a time (bytes, without the newline)."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[:nl + 1]
                yield line
                continue
            before = len(self._buf)
            if not self._fill(before + 1):
                if self._buf:
                    line = bytes(self._buf)
                    self._buf.clear()
                    yield line
                return

    def _ended(self, what: str) -> HostError:
        if not self.conn.alive:
            return LinkLost(f"the connection to {self.conn.label} broke")
        code = self.wait(5.0)
        err = self.stderr.strip()
        last = err.splitlines()[-1] if err else f"exit code {code}"
        return HostError(f"mldesk's agent on {self.conn.profile.name} failed ({what}): {last}")

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code (None when unknown within ``timeout``)."""
        if not self.chan.status_event.wait(timeout):
            return None
        for t in self._threads:
            t.join(5.0)
        return self.chan.exit_status

    @property
    def stdout(self) -> bytes:
        return bytes(self._out)

    def close(self) -> None:
        if not self.conn.alive:
            return
        try:
            self.chan.close()
        except Exception:  # noqa: BLE001
            pass


class Connection:
    """A logged-in SSH connection to one host profile."""

    def __init__(self, transport: paramiko.Transport, ep: Endpoint, profile: HostProfile,
                 counter: CountingSocket, how: str, jumps: list["Connection"] | None = None,
                 host_key: str = "", trust: str = "known"):
        self.transport = transport
        self.endpoint = ep
        self.profile = profile
        self.counter = counter
        self.login = how
        self.jumps = jumps or []
        self.host_key = host_key
        self.trust = trust
        self._agent_lock = threading.Lock()
        self.agent_info: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.profile.name} ({self.endpoint.label})"

    @property
    def alive(self) -> bool:
        return self.transport.is_active()

    @property
    def bytes_sent(self) -> int:
        return self.counter.sent

    @property
    def bytes_received(self) -> int:
        return self.counter.received

    def open(self, argv: list[str], **kw) -> RemoteProcess:
        return RemoteProcess(self, argv, **kw)

    def run(self, argv: list[str], *, input: bytes | None = None, timeout: float = 60.0) -> ExecResult:
        """Run a command to its end; stdout and stderr are read together."""
        p = RemoteProcess(self, argv, timeout=timeout, collect=True)
        try:
            if input:
                p.send(input)
            p.close_stdin()
            code = p.wait(timeout)
            if code is None or (code == -1 and not self.alive):
                if not self.alive:
                    raise LinkLost(f"the connection to {self.label} broke")
                raise LinkLost(f"{self.label}: `{shlex.join(p.argv)[:80]}` did not finish within {timeout:g} s")
            return ExecResult(code, p.stdout, p.stderr)
        finally:
            p.close()

    def close(self) -> None:
        try:
            self.transport.close()
        except Exception:  # noqa: BLE001
            pass
        for j in self.jumps:
            j.close()


def _jump_profile(spec: str, via: str | None, base: HostProfile, config_path: Path | None) -> HostProfile:
    """A jump host: its own ~/.ssh/config entry decides its keys; without one, the
    target's key is tried there too."""
    user, host, port = parse_url(spec)
    prof = HostProfile(name=f"{base.name}-jump-{host}", host=host, user=user, port=port, jump=via,
                       connect_timeout=base.connect_timeout, keepalive=base.keepalive)
    if base.key and not resolve(prof, config_path).explicit_keys:
        prof.key = base.key
    return prof


def connect(profile: HostProfile | dict[str, Any], *, known_hosts: Path | KnownHosts,
            accept_fingerprint: str | None = None, ask_host_key: AskHostKey | None = None,
            ask_secret: AskSecret | None = None, timeout: float | None = None,
            config_path: Path | None = None) -> Connection:
    """Connect and log in to a host profile (see the module doc for the checks)."""
    profile = load_profile(profile)
    known = known_hosts if isinstance(known_hosts, KnownHosts) else KnownHosts(Path(known_hosts))
    ep = resolve(profile, config_path)
    timeout = float(timeout or profile.connect_timeout or 10.0)
    label = f"{profile.name} ({ep.label})" if profile.name != ep.alias else ep.label
    jumps: list[Connection] = []
    if ep.jump:
        hops = [h.strip() for h in ep.jump.split(",") if h.strip()]
        via = ",".join(hops[:-1]) or None
        jump = connect(_jump_profile(hops[-1], via, profile, config_path), known_hosts=known,
                       ask_host_key=ask_host_key, ask_secret=ask_secret, timeout=timeout,
                       config_path=config_path)
        jumps.append(jump)
        try:
            raw = jump.transport.open_channel("direct-tcpip", (ep.hostname, ep.port), ("127.0.0.1", 0),
                                              timeout=timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            jump.close()
            raise HostUnreachable(f"cannot reach {label} through the jump host {jump.endpoint.label}: "
                                  f"{exc or 'no answer'}") from None
    else:
        raw = _tcp_connect(ep.hostname, ep.port, timeout, label, float(profile.keepalive or 0))
    counter = CountingSocket(raw)
    transport = None
    try:
        transport = paramiko.Transport(counter)
        transport.banner_timeout = timeout
        transport.handshake_timeout = timeout
        transport.auth_timeout = timeout
        opts = transport.get_security_options()
        opts.ciphers = [c for c in PREFERRED_CIPHERS if c in opts.ciphers] + \
            [c for c in opts.ciphers if c not in PREFERRED_CIPHERS]
        types = {k.get_name() for k, _ in known.lookup(ep.hostname, ep.port)}
        if types:
            opts.key_types = _key_algorithms_for(types, tuple(opts.key_types))
        try:
            transport.start_client(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise HostUnreachable(f"cannot open an SSH session with {label}: {exc or 'the connection closed'} "
                                  "(is it an SSH server, and is it overloaded?)") from None
        trust = check_host_key(transport, ep, known, accept_fingerprint=accept_fingerprint,
                               ask=ask_host_key, label=label)
        how = authenticate(transport, ep, profile, ask_secret, label)
        if profile.keepalive:
            transport.set_keepalive(max(1, int(round(profile.keepalive))))
        key = transport.get_remote_server_key()
        return Connection(transport, ep, profile, counter, how, jumps,
                          host_key=f"{key.get_name()} {fingerprint(key)}", trust=trust)
    except BaseException:
        if transport is not None:
            transport.close()
        else:
            raw.close()
        for j in jumps:
            j.close()
        raise


def wait_with_backoff(attempt: int, max_delay: float, stop: threading.Event | None = None) -> None:
    delay = min(max_delay, 0.5 * (2 ** max(0, attempt - 1)))
    if stop is not None:
        stop.wait(delay)
    else:
        time.sleep(delay)
