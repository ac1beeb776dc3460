"""The shared fixtures in tests/conftest.py do what they promise."""

from __future__ import annotations

import base64
import logging
import os
import socket
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"
_homes: list[Path] = []


@pytest.mark.parametrize("run", [1, 2])
def test_mldesk_home_is_fresh_per_test(mldesk_home, run):
    from mldesk.core import paths

    assert os.environ["MLDESK_HOME"] == str(mldesk_home)
    assert mldesk_home.is_dir() and not any(mldesk_home.iterdir())
    assert paths.home() == mldesk_home.resolve()
    (mldesk_home / "marker").write_text(str(run))
    assert mldesk_home not in _homes
    _homes.append(mldesk_home)


def test_error_recorder_keeps_only_mldesk_errors(fail_on_log_errors):
    recorder = fail_on_log_errors
    logging.getLogger("mldesk.engine.facade").warning("just a warning")
    logging.getLogger("somethingelse").error("not ours")
    assert recorder.records == []
    logging.getLogger("mldesk.engine.facade").error("boom %d", 42)
    assert [r.getMessage() for r in recorder.records] == ["boom 42"]  # once, not per logger
    assert "mldesk.engine.facade ERROR: boom 42" in recorder.report()
    recorder.records.clear()  # or this test would fail at teardown


@pytest.mark.allow_log_errors  # the inner session's errors also reach this test's recorder
def test_fail_on_log_errors_fails_the_test(pytester):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        """
        import logging
        import pytest

        def test_logs_error():
            logging.getLogger("mldesk.runtimes.local.docker").error("container vanished")

        def test_logs_exception():
            try:
                1 / 0
            except ZeroDivisionError:
                logging.getLogger("mldesk").exception("crashed")

        def test_logs_warning_only():
            logging.getLogger("mldesk").warning("fine")

        def test_other_logger():
            logging.getLogger("urllib3").error("not ours")

        @pytest.mark.allow_log_errors
        def test_allowed():
            logging.getLogger("mldesk.core").error("expected")
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, errors=2)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_logs_error*",
        "*mldesk.runtimes.local.docker ERROR: container vanished*",
        "*ERROR at teardown of test_logs_exception*",
    ])


@pytest.mark.docker
def test_test_images_run(docker_client, busybox_image, python_image):
    out = docker_client.containers.run(busybox_image, ["sh", "-c", "echo hi from busybox"],
                                       remove=True, network_mode="none")
    assert out == b"hi from busybox\n"
    out = docker_client.containers.run(
        python_image, ["python", "-c", "import numpy; print(numpy.arange(3).sum())"],
        remove=True, network_mode="none", init=True)
    assert out == b"3\n"


def _connect(server, timeout=5.0):
    import paramiko

    client = paramiko.SSHClient()
    name = server.host if server.port == 22 else f"[{server.host}]:{server.port}"
    keytype, key = server.host_key_line.split()
    client.get_host_keys().add(name, keytype, paramiko.PKey.from_type_string(keytype, base64.b64decode(key)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(server.host, server.port, username=server.user, key_filename=str(server.key_path),
                   look_for_keys=False, allow_agent=False, timeout=timeout, banner_timeout=timeout,
                   auth_timeout=timeout)
    return client


def _run(client, command: str) -> str:
    _, stdout, _ = client.exec_command(command, timeout=10)
    return stdout.read().decode()


@pytest.mark.ssh
def test_sshd_server_accepts_the_key_and_checks_host_key(sshd_server):
    client = _connect(sshd_server)
    try:
        assert _run(client, "echo ok; whoami") == f"ok\n{sshd_server.user}\n"
        with client.open_sftp() as sftp:  # the upload path needs the sftp subsystem
            assert sftp.normalize(".")
    finally:
        client.close()


@pytest.mark.ssh
@pytest.mark.slow
def test_netns_host_link_can_be_cut_and_restored(netns_host):
    client = _connect(netns_host)
    try:
        assert _run(client, "echo up") == "up\n"
    finally:
        client.close()
    netns_host.cut()
    with pytest.raises(OSError):  # a silent drop: the connect times out
        socket.create_connection((netns_host.host, netns_host.port), timeout=1).close()
    netns_host.restore()
    client = _connect(netns_host)
    try:
        assert _run(client, "echo back") == "back\n"
    finally:
        client.close()
