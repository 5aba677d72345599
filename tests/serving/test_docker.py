"""docker-compose.yml and the Dockerfile, checked without a Docker daemon: the compose file
validates with a compose client's ``config``, and the image's command and healthcheck run
as plain processes against a real server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from service_process import ROOT, ExampleRepo, ServiceProcess

pytestmark = pytest.mark.xdist_group("serving")


def dockerfile() -> dict[str, object]:
    """The Dockerfile's ENV, CMD and HEALTHCHECK (exec forms, continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    health = json.loads(re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    return {"env": env, "cmd": cmd, "health": health, "text": text}


def test_the_compose_file_validates() -> None:
    client = shutil.which("docker-compose")
    if client is None:
        if os.environ.get("CI"):
            pytest.fail("CI must validate docker-compose.yml: .ci/run installs docker-compose")
        pytest.skip("no compose client (apt-get install docker-compose)")
    out = subprocess.run(
        [client, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env={**os.environ, "FEATURESTORE_API_TOKEN": ""},
    )
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    redis, serving = config["services"]["redis"], config["services"]["serving"]
    assert redis["image"].startswith("redis:7") and "healthcheck" in redis
    assert serving["depends_on"]["redis"]["condition"] == "service_healthy"
    assert serving["environment"]["FEATURESTORE_REDIS_URL"] == "redis://redis:6379/0"
    # docker-compose 1.x prints "host:target:mode" strings, Compose v2 mappings
    targets = {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in serving["volumes"]}
    assert {"/app/feature_repo", "/app/model", "/app/feature_repo/featurestore.yaml"} <= targets
    hosts = [
        p["host_ip"] if isinstance(p, dict) else p.split(":")[0]
        for service in (redis, serving)
        for p in service["ports"]
    ]
    assert hosts == ["127.0.0.1", "127.0.0.1"]  # published on the loopback only


def test_the_image_is_slim_non_root_and_serves_with_a_healthcheck() -> None:
    image = dockerfile()
    text = str(image["text"])
    assert re.search(r"^FROM python:3\.\d+-slim$", text, re.M)
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert image["cmd"][:2] == ["featurestore", "serve"]  # type: ignore[index]


def test_the_image_command_and_healthcheck_run_as_plain_processes(
    example: ExampleRepo, tmp_path: Path
) -> None:
    copy = example.copy(tmp_path)
    image = dockerfile()
    paths = {"/app/feature_repo": str(copy.repo), "/app/model": str(copy.model)}
    command = [paths.get(arg, arg) for arg in image["cmd"]]  # type: ignore[attr-defined]
    command[0] = str(Path(sys.executable).with_name("featurestore"))
    env = {**image["env"], "FEATURESTORE_SERVE_HOST": "127.0.0.1"}  # type: ignore[dict-item]
    assert env.pop("FEATURESTORE_SERVE_PORT") == "6566"  # the test's server takes a free port
    with ServiceProcess(copy.repo, copy.model, command=command, env=env) as server:
        env["FEATURESTORE_SERVE_PORT"] = str(server.port)
        health = [sys.executable, *image["health"][1:]]  # type: ignore[index]
        assert subprocess.run(health, env={**os.environ, **env}, timeout=30).returncode == 0
        answer = server.post("/predict", {"entities": copy.pairs(2)})
        assert answer.status_code == 200, answer.text
        assert "with 2 workers" in server.log()
