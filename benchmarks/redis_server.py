"""A throwaway redis-server for the benchmarks: each system gets its own, so ``INFO memory``
is that system's alone. On 127.0.0.1, a free port, no persistence; stopped by its own PID."""

from __future__ import annotations

import socket
import subprocess
import time

import redis


class RedisServer:
    """Start a redis-server child and wait until it answers; ``baseline`` is its empty memory."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        self.baseline = self.used_memory()

    def used_memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def stop(self) -> None:
        self.client.close()
        self.process.kill()
        self.process.wait()
