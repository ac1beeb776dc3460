"""P6: uploading a lab to an SSH host.

1. First upload of a 1 GiB lab (8 large files, one 10 MB file, 2,000 small ones) with
   mldesk's ssh runtime (connect + content-addressed upload + the workspace
   materialised on the host) against ``scp -r`` of the same lab to the same host.
   Goal: mldesk's throughput >= 0.7x scp's. Runs alternate (scp, mldesk, ...) and the
   medians are compared.
2. Second upload after changing the 10 MB file: bytes that went over the wire
   (everything paramiko wrote to the socket during the upload, SSH framing
   included). Goal: <= 11 MB.

The host is the test sshd (``eval "$(scripts/ci/sshd.sh env)"``) unless P6_HOST,
P6_PORT, P6_USER, P6_KEY and P6_KNOWN_HOSTS say otherwise. P6_BYTES sets the lab
size, P6_RUNS the number of alternating rounds (default 3).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "app"))
from _common import median, table, tmpdir, verdict  # noqa: E402

from mldesk.core import hosts  # noqa: E402

from mldesk.runtimes.ssh import transport  # noqa: E402
from mldesk.core.snapshots import SnapshotStore  # noqa: E402
from mldesk.runtimes.base import RunContext  # noqa: E402
from mldesk.runtimes.ssh.runtime import SshRuntime, ensure_agent  # noqa: E402

SIZE = 1 << 30
CHANGED = 10_000_000


def env(name: str, test_name: str, default: str | None = None) -> str:
    value = os.environ.get(name) or os.environ.get(test_name) or default
    if value is None:
        sys.exit(f"p6: set {name} (or run `eval \"$(bash scripts/ci/sshd.sh env)\"` for the test sshd)")
    return value


def make_lab(lab: Path, size: int) -> None:
    (lab / "data").mkdir(parents=True)
    block = os.urandom(1 << 20)
    n_big = 8
    big = (size - CHANGED - 2000 * 1000) // n_big
    for i in range(n_big):
        with open(lab / "data" / f"shard{i}.bin", "wb") as f:
            left = big
            j = 0
            while left > 0:
                chunk = (block[j % 7:] + block[:j % 7])[:left]
                f.write(chunk)
                left -= len(chunk)
                j += 1
            f.write(b"%d" % i)
    (lab / "weights.bin").write_bytes(os.urandom(CHANGED))
    for i in range(2000):
        (lab / f"src{i // 100}").mkdir(exist_ok=True)
        (lab / f"src{i // 100}" / f"m{i}.py").write_text((f"print({i})  # " + "x" * 80 + "\n") * 10)
    (lab / "main.py").write_text("print('hi')\n")


def lab_bytes(lab: Path) -> int:
    return sum(p.stat().st_size for p in lab.rglob("*") if p.is_file())


def main() -> int:
    host = env("P6_HOST", "MLDESK_TEST_SSH_HOST")
    port = int(env("P6_PORT", "MLDESK_TEST_SSH_PORT", "22"))
    user = env("P6_USER", "MLDESK_TEST_SSH_USER", "root")
    key = env("P6_KEY", "MLDESK_TEST_SSH_KEY")
    known = env("P6_KNOWN_HOSTS", "MLDESK_TEST_SSH_KNOWN_HOSTS")
    size = int(os.environ.get("P6_BYTES", SIZE))
    runs = int(os.environ.get("P6_RUNS", "3"))
    with tmpdir("mldesk-p6-") as tmp:
        tmp = Path(tmp)
        lab = tmp / "lab"
        make_lab(lab, size)
        total = lab_bytes(lab)
        home = tmp / "home"
        store = SnapshotStore(home / "blobs", home / "snapshots")
        snap = store.create(lab)
        remote = f"/tmp/mldesk-p6-remote-{uuid.uuid4().hex[:8]}"
        profile = hosts.HostProfile.from_url("bench", f"ssh://{user}@{host}:{port}", key=key, workdir=remote)
        kh = transport.KnownHosts(home / "known_hosts", Path(known))
        scp_times, ours, ours_upload = [], [], []
        try:
            for r in range(runs):
                dest = f"{remote}-scp-{r}"
                subprocess.run(["ssh", "-p", str(port), "-i", key, "-o", f"UserKnownHostsFile={known}",
                                "-o", "BatchMode=yes", f"{user}@{host}", "sync"], check=True)
                t0 = time.perf_counter()
                subprocess.run(["scp", "-q", "-r", "-P", str(port), "-i", key, "-o", f"UserKnownHostsFile={known}",
                                "-o", "BatchMode=yes", str(lab), f"{user}@{host}:{dest}"], check=True)
                scp_times.append(time.perf_counter() - t0)
                subprocess.run(["rm", "-rf", dest], check=False)  # the "host" shares this file system

                shutil.rmtree(remote, ignore_errors=True)  # a host that has nothing yet
                subprocess.run(["sync"], check=True)
                t0 = time.perf_counter()
                conn = transport.connect(profile, known_hosts=kh)
                ensure_agent(conn)
                ctx = _ctx(tmp, f"first-{r}")
                t1 = time.perf_counter()
                stats = SshRuntime().upload(ctx, conn, store.manifest(snap.id), store)
                t2 = time.perf_counter()
                conn.close()
                ours.append(t2 - t0)
                ours_upload.append(t2 - t1)
                assert stats["blob_bytes_sent"] >= total - 1
            # second upload: one changed 10 MB file
            (lab / "weights.bin").write_bytes(os.urandom(CHANGED))
            snap2 = store.create(lab)
            conn = transport.connect(profile, known_hosts=kh)
            ctx = _ctx(tmp, "second")
            t0 = time.perf_counter()
            second = SshRuntime().upload(ctx, conn, store.manifest(snap2.id), store)
            t_second = time.perf_counter() - t0
            conn.close()
        finally:
            shutil.rmtree(remote, ignore_errors=True)
    t_scp, t_ours, t_up = median(scp_times), median(ours), median(ours_upload)
    ratio = t_scp / t_ours
    mb = total / 1e6
    rows = [
        ("scp -r (baseline)", f"{t_scp:.2f} s", f"{mb / t_scp:.0f} MB/s", "", ""),
        ("mldesk first upload (connect + upload + workspace)", f"{t_ours:.2f} s", f"{mb / t_ours:.0f} MB/s",
         f"{ratio:.2f}x", verdict(ratio >= 0.7)),
        ("  of which upload + workspace (connected)", f"{t_up:.2f} s", f"{mb / t_up:.0f} MB/s",
         f"{t_scp / t_up:.2f}x", ""),
        ("mldesk second upload, one 10 MB file changed", f"{t_second:.2f} s",
         f"{second['bytes_sent_wire'] / 1e6:.2f} MB sent", "<= 11 MB", verdict(second["bytes_sent_wire"] <= 11e6)),
    ]
    print(f"P6 upload: lab {mb:.0f} MB in {snap.files} files to {user}@{host}:{port}; "
          f"medians of {runs} alternating runs (scp: {', '.join(f'{t:.2f}' for t in scp_times)} s; "
          f"mldesk: {', '.join(f'{t:.2f}' for t in ours)} s)")
    print(table(rows, ("what", "time", "throughput / sent", "vs scp / goal", "result")))
    print(f"second upload: {second['blobs_sent']} of {second['blobs']} blobs sent, "
          f"{second['blob_bytes_sent'] / 1e6:.2f} MB of file data, {second['bytes_sent_payload'] / 1e6:.2f} MB "
          f"payload, {second['bytes_sent_wire'] / 1e6:.2f} MB on the wire; on the host: received in "
          f"{second['host_receive_seconds']:.2f} s, workspace ({mb:.0f} MB copied from its blob store) "
          f"{second['host_workspace_seconds']:.2f} s more")
    return 0


def _ctx(tmp: Path, exec_id: str) -> RunContext:
    exec_dir = tmp / "executions" / exec_id
    exec_dir.mkdir(parents=True)
    return RunContext(exec_id=exec_id, name=exec_id, lab=tmp / "lab", workspace=exec_dir / "workspace", argv=[],
                      image=None, hardware="cpu", env={}, message=lambda text: None, exec_dir=exec_dir)


if __name__ == "__main__":
    raise SystemExit(main())
