"""Debian's docker-registry (Distribution 2.8) on 127.0.0.1, with its storage in a folder of ours."""

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

from .measure import log, remove_tree

READY_TIMEOUT_SECONDS = 20
STOP_TIMEOUT_SECONDS = 10


def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


class RegistryError(Exception):
    pass


class Registry:
    """One `docker-registry serve` process listening on 127.0.0.1 only.

    Use it as a context manager: the process stops and its folder is removed on exit.
    """

    def __init__(self, binary, folder):
        self.binary = binary
        self.folder = folder
        self.port = None
        self.process = None

    @property
    def host(self):
        """The registry as image references name it: 127.0.0.1:PORT."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        return f"http://{self.host}"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()
        remove_tree(self.folder)

    def start(self):
        remove_tree(self.folder)
        os.makedirs(os.path.join(self.folder, "storage"))
        self.port = free_port()
        config_path = os.path.join(self.folder, "config.yml")
        with open(config_path, "w") as config:
            config.write(self.config_text())

        # REGISTRY_* variables override the config file, so one in the environment could move the
        # registry off 127.0.0.1 or onto other storage.
        environment = {name: value for name, value in os.environ.items() if not name.startswith("REGISTRY_")}
        log = open(os.path.join(self.folder, "registry.log"), "wb")
        try:
            self.process = subprocess.Popen(
                [self.binary, "serve", config_path],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environment,
            )
        finally:
            log.close()
        self.wait_until_ready()

    def config_text(self):
        storage = os.path.join(self.folder, "storage")
        return (
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )

    def wait_until_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RegistryError(f"docker-registry on {self.host} exited with status "
                                    f"{self.process.returncode}; its log:\n{self.read_log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RegistryError(f"docker-registry on {self.host} not ready after {READY_TIMEOUT_SECONDS} s; "
                            f"its log:\n{self.read_log()}")

    def read_log(self):
        try:
            with open(os.path.join(self.folder, "registry.log"), errors="replace") as log:
                return log.read()[-4000:]
        except OSError as error:
            return f"(cannot read the log: {error})"

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log(f"docker-registry on {self.host} still running {STOP_TIMEOUT_SECONDS} s after SIGTERM; killing it")
            self.process.kill()
            self.process.wait()
