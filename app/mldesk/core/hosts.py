"""SSH host profiles: the model, its validation, the errors a host can cause, and the
secrets (passwords, key passphrases) kept for it in the OS keyring.

No transport here: how a profile is resolved through ``~/.ssh/config``, host keys are
checked and the connection is made lives in ``mldesk.runtimes.ssh.transport``.

A profile is stored in the store's ``hosts`` table as the dict of :meth:`HostProfile.
to_dict`. Passwords and key passphrases live only in the OS keyring (``keyring``); where
no keyring backend exists mldesk asks each time (when it can ask: the CLI at a terminal,
the GUI) and says why.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

from mldesk.agent.errors import UserError

RUNTIMES = ("docker", "process", "slurm")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NETWORKS = ("bridge", "none", "host")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
KEYRING_SERVICE = "mldesk"
DEFAULT_WORKDIR = "~/.mldesk"
# aes-gcm is an AEAD: no separate HMAC per packet (the costliest part of paramiko's
# sending); with AES-NI it is the fastest cipher paramiko offers.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


# -- errors -----------------------------------------------------------------------------

class HostError(UserError):
    """A user-facing problem with a host; the message says what happened and what to do."""


class HostProfileError(HostError):
    pass


class HostUnreachable(HostError):
    pass


class HostAuthError(HostError):
    pass


class HostKeyError(HostError):
    pass


class HostKeyUnknown(HostKeyError):
    def __init__(self, label: str, key_type: str, fingerprint: str, accepted: str | None = None,
                 known_types: tuple[str, ...] = ()):
        self.label = label
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.accepted = accepted
        self.known_types = known_types
        if accepted:
            text = (f"the host key of {label} is {key_type} {fingerprint}, not the accepted "
                    f"{accepted}: refused, nothing was run. Check the fingerprint with the host's "
                    f"administrator (ssh-keygen -lf /etc/ssh/ssh_host_{_short_type(key_type)}_key.pub on the host)")
        else:
            extra = ""
            if known_types:
                extra = f" (only {', '.join(known_types)} keys of this host are known)"
            text = (f"the host key of {label} is not known{extra}: {key_type} {fingerprint}. "
                    f"If that is the host's real key, accept it with `mldesk hosts test NAME "
                    f"--accept-fingerprint {fingerprint}` (or in the Hosts dialog)")
        super().__init__(text)


class HostKeyChanged(HostKeyError):
    def __init__(self, label: str, key_type: str, fingerprint: str, expected: list[tuple[str, str]]):
        self.label = label
        self.key_type = key_type
        self.fingerprint = fingerprint
        self.expected = expected  # [(fingerprint, where)]
        known = "; ".join(f"{fp} (in {where})" for fp, where in expected)
        super().__init__(
            f"WARNING: the host key of {label} has CHANGED: it now presents {key_type} {fingerprint}, "
            f"but the key on record is {known}. Someone may be intercepting the connection, or the "
            f"host was reinstalled. Nothing was run. If the change is expected, remove the old key "
            f"from that file (ssh-keygen -R HOST -f FILE) and accept the new one"
        )


class SecretUnavailable(HostError):
    pass


# -- small helpers -----------------------------------------------------------------------

def _short_type(key_type: str) -> str:
    return {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa"}.get(key_type, "ecdsa" if "ecdsa" in key_type else key_type)


def normalise_fingerprint(text: str) -> str:
    text = text.strip()
    if text.lower().startswith("sha256:"):
        text = "SHA256:" + text[7:]
    return text.rstrip("=")


def known_hosts_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


def parse_url(url: str) -> tuple[str | None, str, int | None]:
    """``ssh://[user@]host[:port]`` (the scheme may be left out) -> (user, host, port)."""
    text = url.strip()
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme.lower() != "ssh":
            raise HostProfileError(f"'{url}' is not an ssh:// address (write ssh://[user@]host[:port])")
    text = text.rstrip("/")
    if not text:
        raise HostProfileError("the address is empty (write ssh://[user@]host[:port])")
    if "/" in text:
        raise HostProfileError(f"'{url}' has a path; write just ssh://[user@]host[:port] "
                               "(the remote work folder is --workdir)")
    user = None
    if "@" in text:
        user, _, text = text.rpartition("@")
        if not user:
            raise HostProfileError(f"'{url}' has an empty user name before '@'")
    port: int | None = None
    if text.startswith("["):  # [IPv6]:port
        end = text.find("]")
        if end < 0:
            raise HostProfileError(f"'{url}': unclosed '[' in the host")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise HostProfileError(f"'{url}': unexpected text after ']'")
            port = _port(rest[1:], url)
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = _port(p, url)
    else:
        host = text
    if not host or any(c.isspace() for c in host):
        raise HostProfileError(f"'{url}': the host name is empty or has spaces")
    return user, host, port


def _port(text: str, url: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise HostProfileError(f"'{url}': the port '{text}' is not a number") from None
    if not 0 < port < 65536:
        raise HostProfileError(f"'{url}': the port {port} is out of range (1-65535)")
    return port


# -- the profile ---------------------------------------------------------------------------

@dataclass
class HostProfile:
    name: str
    host: str  # a host name, an address or an alias of ~/.ssh/config
    port: int | None = None
    user: str | None = None
    key: str | None = None  # private key file; None: ~/.ssh/config, ssh-agent, default keys
    jump: str | None = None  # ProxyJump: [user@]host[:port][,...]
    workdir: str = DEFAULT_WORKDIR
    runtime: str = "docker"
    gpus: bool = False
    network: str = "bridge"
    stop_grace: float | None = None
    max_parallel: int = 0
    python: str | None = None  # the host's Python (process runtime and mldesk's agent)
    password: bool = False  # log in with a password (kept in the OS keyring)
    keepalive: float = 10.0  # seconds between keepalives; the link counts as dead after ~2x
    connect_timeout: float = 10.0
    outputs_interval: float = 30.0  # seconds between output syncs while running (0: only at the end)
    reconnect_timeout: float = 0.0  # give up reconnecting after this many seconds (0: never)
    description: str | None = None
    # runtime "slurm": the host is a Slurm login node; each execution is one batch job.
    # The work folder must be on a file system the compute nodes share.
    slurm_partition: str | None = None  # --partition (None: the cluster's default)
    slurm_time: str | None = None  # --time, e.g. "1:00:00"
    slurm_cpus: int | None = None  # --cpus-per-task
    slurm_mem: str | None = None  # --mem, e.g. "4G"
    slurm_gpus: int = 1  # --gres=gpu:N for a lab with hardwareType gpu
    slurm_args: list[str] = field(default_factory=list)  # more sbatch options, as given
    env: dict[str, str] = field(default_factory=dict)  # for Slurm's commands and the job

    def slurm_settings(self, *, gpu: bool = False) -> dict[str, Any]:
        """What the agent's slurm runtime takes (spec["slurm"])."""
        return {"partition": self.slurm_partition, "time": self.slurm_time, "cpus": self.slurm_cpus,
                "mem": self.slurm_mem, "gpus": self.slurm_gpus if gpu else 0,
                "sbatch_args": list(self.slurm_args), "env": dict(self.env)}

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return "ssh://" + (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["url"] = self.url
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HostProfile":
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in d.items() if k in known}
        if "host" not in data and d.get("url"):
            user, host, port = parse_url(d["url"])
            data.update(host=host, user=data.get("user") or user, port=data.get("port") or port)
        prof = cls(**data)
        problems = prof.problems()
        if problems:
            raise HostProfileError(f"host profile '{prof.name}': " + "; ".join(problems))
        return prof

    @classmethod
    def from_url(cls, name: str, url: str, **kw: Any) -> "HostProfile":
        user, host, port = parse_url(url)
        prof = cls(name=name, host=host, user=user, port=port, **{k: v for k, v in kw.items() if v is not None})
        problems = prof.problems()
        if problems:
            raise HostProfileError("; ".join(problems))
        return prof

    def problems(self) -> list[str]:
        out = []
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            out.append(f"the name '{self.name}' must be 1-64 letters, digits, '.', '_' or '-' "
                       "(starting with a letter or digit)")
        elif self.name == "local":
            out.append("'local' is this computer; choose another name")
        if not self.host or any(c.isspace() for c in str(self.host)):
            out.append("the host is empty or has spaces")
        if self.port is not None and not (isinstance(self.port, int) and 0 < self.port < 65536):
            out.append(f"the port {self.port!r} is not in 1-65535")
        if self.runtime not in RUNTIMES:
            out.append(f"the runtime '{self.runtime}' is not one of {', '.join(RUNTIMES)}")
        if self.network not in NETWORKS:
            out.append(f"the network '{self.network}' is not one of {', '.join(NETWORKS)}")
        if not self.workdir or "\0" in self.workdir or "\n" in self.workdir:
            out.append("the work folder is empty or holds a line break")
        for label, value in (("stop grace", self.stop_grace), ("keepalive", self.keepalive),
                             ("connect timeout", self.connect_timeout),
                             ("outputs interval", self.outputs_interval),
                             ("reconnect timeout", self.reconnect_timeout)):
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                out.append(f"the {label} must be a number of seconds >= 0")
        if not isinstance(self.max_parallel, int) or self.max_parallel < 0:
            out.append("the concurrency limit must be a whole number >= 0")
        if self.key is not None and not str(self.key).strip():
            out.append("the key file is empty")
        for label, value in (("partition", self.slurm_partition), ("time limit", self.slurm_time),
                             ("memory", self.slurm_mem)):
            if value is not None and (not isinstance(value, str) or not value.strip()
                                      or any(c.isspace() for c in value)):
                out.append(f"the Slurm {label} {value!r} is empty or has spaces")
        if self.slurm_cpus is not None and (not isinstance(self.slurm_cpus, int) or self.slurm_cpus < 1):
            out.append("the Slurm CPUs per task must be a whole number >= 1")
        if not isinstance(self.slurm_gpus, int) or self.slurm_gpus < 0:
            out.append("the Slurm GPUs per job must be a whole number >= 0")
        if not isinstance(self.slurm_args, list) or not all(isinstance(a, str) and a for a in self.slurm_args):
            out.append("the extra sbatch options must be a list of non-empty strings")
        elif any(not a.startswith("-") for a in self.slurm_args):
            out.append("each extra sbatch option must start with '-' (e.g. --qos=debug)")
        if not isinstance(self.env, dict) or not all(
                isinstance(k, str) and ENV_NAME_RE.match(k) and isinstance(v, str) and "\0" not in v
                for k, v in self.env.items()):
            out.append("the environment must map variable names (letters, digits, '_') to strings")
        return out


def load_profile(value: HostProfile | dict[str, Any]) -> HostProfile:
    return value if isinstance(value, HostProfile) else HostProfile.from_dict(value)


# -- secrets --------------------------------------------------------------------------------

NO_KEYRING_HINT = (
    "install and unlock one (GNOME Keyring or KWallet on Linux, the macOS Keychain, the "
    "Windows Credential Locker) or `pip install keyrings.alt`; for executions that "
    "reconnect by themselves, load the key into ssh-agent (ssh-add KEY) instead"
)


def keyring_problem() -> str | None:
    """None when an OS keyring backend is usable, else why not (for messages)."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return "the keyring package is not installed"
    try:
        backend = keyring.get_keyring()
    except Exception as exc:  # noqa: BLE001
        return f"the keyring cannot be opened ({exc})"
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
        return "no OS keyring backend was found"
    return None


def no_keyring_message(what: str) -> str:
    return (f"{keyring_problem() or 'the OS keyring is not available'}, so mldesk cannot remember "
            f"{what}: it asks each time; {NO_KEYRING_HINT}")


def get_secret(name: str) -> str | None:
    if keyring_problem():
        return None
    import keyring

    try:
        return keyring.get_password(KEYRING_SERVICE, name)
    except Exception:  # noqa: BLE001 - a locked or broken keyring: treat as absent
        return None


def set_secret(name: str, value: str) -> bool:
    """Store a secret in the OS keyring; False when there is none (nothing stored)."""
    if keyring_problem():
        return False
    import keyring

    try:
        keyring.set_password(KEYRING_SERVICE, name, value)
        return True
    except Exception:  # noqa: BLE001
        return False


def delete_secret(name: str) -> None:
    if keyring_problem():
        return
    import keyring

    try:
        keyring.delete_password(KEYRING_SERVICE, name)
    except Exception:  # noqa: BLE001 - not there
        pass


def passphrase_secret_name(key_path: str) -> str:
    return "passphrase:" + os.path.abspath(os.path.expanduser(key_path))


def password_secret_name(ep) -> str:
    """The keyring name of a login password (``ep``: a transport Endpoint)."""
    return f"password:{ep.user}@{ep.hostname}:{ep.port}"


# An ``ask(kind, prompt)`` callback: kind "passphrase" or "password"; returns the text or None.
AskSecret = Callable[[str, str], "str | None"]
# An ``ask_host_key(label, key_type, fingerprint)`` callback: True to accept.
AskHostKey = Callable[[str, str, str], bool]
