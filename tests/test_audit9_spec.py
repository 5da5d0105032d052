"""Audit round nine against the spec (report spec9):

1. a Ctrl-C while probe waits for a TLS handshake is "Interrupted.", exit 130, with no traceback: raised inside
   pyOpenSSL's callbacks, it was printed by cffi and swallowed, and the handshake was said to have timed out.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from conftest import certkit_env


def test_a_ctrl_c_during_probes_handshake_is_interrupted_not_a_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:  # a server that accepts and never speaks TLS, as a hung or firewalled one does
        proc = subprocess.Popen([sys.executable, "-m", "certkit", "probe", f"https://127.0.0.1:{port}/",
                                 "--timeout", "30"], env=certkit_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        listener.settimeout(30)
        conn, _ = listener.accept()
        time.sleep(1.0)  # into the handshake's wait
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        conn.close()
    finally:
        listener.close()
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert err.strip() == "Interrupted." and "Traceback" not in err and "no answer" not in err, err
    assert time.monotonic() - started < 10
