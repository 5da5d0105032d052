"""Round fifteen, timing-sensitive tests: what a flake revealed of certkit itself.

A Ctrl-C sent to ``certkit probe`` just as its ClientHello went out (the moment test_audit9_spec's
Ctrl-C test, waiting for the ClientHello instead of sleeping, first hit) was taken by the Python
signal handler while OpenSSL ran probe's info callback, between its write and its read: no system
call was interrupted, and the read then waited for the server until ``--timeout`` before probe said
"Interrupted.". The handler now shuts the socket down, and that read ends at once.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

from conftest import certkit_env


def test_a_ctrl_c_as_probes_client_hello_goes_out_is_not_held_until_its_timeout(tmp_path) -> None:
    for _ in range(3):  # the moment is hit most times, not every time
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            proc = subprocess.Popen([sys.executable, "-m", "certkit", "probe", f"https://127.0.0.1:{port}/",
                                     "--timeout", "120"], env=certkit_env(HOME=str(tmp_path)), cwd=tmp_path,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            try:
                listener.settimeout(60)
                conn, _ = listener.accept()
                with conn:  # a server that takes the connection and never answers, as a hung one does
                    conn.settimeout(60)
                    assert conn.recv(1) == b"\x16"  # the ClientHello's first byte: it was just written
                    proc.send_signal(signal.SIGINT)
                    out, err = proc.communicate(timeout=60)  # not after its --timeout of 120 s
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        assert proc.returncode == 130, (proc.returncode, out, err)
        assert err.strip() == "Interrupted." and "no answer" not in err and "Traceback" not in err, err
