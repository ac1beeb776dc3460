"""A tiny TCP relay: listen on LISTEN_HOST:PORT, connect each client to TARGET_HOST:PORT.

    python3 tcp-relay.py LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT

slurm.sh runs it inside the netns SSH host (netns-host.sh), where "vm" (this machine's
name, 127.0.0.1 in /etc/hosts) is the namespace's own loopback: the relay carries Slurm
clients' connections from there to slurmctld over the namespace's link, so commands
run over the netns sshd reach the test cluster, and lose it while the link is cut.
"""

import socket
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client, target):
    try:
        upstream = socket.create_connection(target, timeout=5)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    pipe(upstream, client)
    client.close()
    upstream.close()


def main(argv):
    listen = (argv[0], int(argv[1]))
    target = (argv[2], int(argv[3]))
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(listen)
    server.listen(64)
    while True:
        client, _ = server.accept()
        threading.Thread(target=serve, args=(client, target), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1:])
