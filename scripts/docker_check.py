"""Opt-in check of the server image (deploy/Dockerfile): needs a Docker
daemon with a `debian:bookworm-slim` image at hand, so it is not part of
scripts/test.sh. Run: .venv/bin/python scripts/docker_check.py

It builds the image, runs it on a named volume with the port published on
127.0.0.1 only, stores a blob, stops it with SIGTERM (`docker stop`: it must
exit 0 within seconds, as PID 1), starts it again and reads the blob back,
and checks that the server does not run as root."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import blake3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADMIN = "docker-check-admin-token"


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def request(method: str, url: str, token: str, body: bytes | None = None, json_body: object = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    if json_body is not None:
        body = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_healthy(base: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{base}/v1/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"the container never answered {base}/v1/health")
        time.sleep(0.2)


def main() -> None:
    tag = sh("bash", os.path.join(ROOT, "scripts", "docker-image.sh"), "hitsave-server:check")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name = f"hitsave-check-{os.getpid()}"
    volume = f"{name}-data"
    base = f"http://127.0.0.1:{port}"
    try:
        sh("docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8787", "-v", f"{volume}:/var/lib/hitsave/data",
           "-e", f"HITSAVE_SERVER_ADMIN_TOKEN={ADMIN}", tag)
        wait_healthy(base)
        uid = sh("docker", "exec", name, "id", "-u")
        assert uid != "0", "the server runs as root"
        status, body = request("POST", f"{base}/v1/projects", ADMIN, json_body={"name": "docker"})
        assert status == 201, (status, body)
        key = json.loads(body)["key"]
        data = b"a result stored in a container"
        digest = "blob1_" + blake3.blake3(data).hexdigest()
        status, body = request("PUT", f"{base}/v1/blobs/{digest}", key, body=data)
        assert status == 201, (status, body)

        started = time.monotonic()
        sh("docker", "stop", "-t", "40", name)
        stopped_in = time.monotonic() - started
        code = sh("docker", "inspect", "-f", "{{.State.ExitCode}}", name)
        assert code == "0", f"exit code {code} after SIGTERM"
        assert stopped_in < 10, f"SIGTERM took {stopped_in:.1f} s (ignored as PID 1?)"

        sh("docker", "start", name)
        wait_healthy(base)
        status, body = request("GET", f"{base}/v1/blobs/{digest}", key)
        assert (status, body) == (200, data), (status, body[:100])
        print(f"ok: {tag} serves as uid {uid}, stops on SIGTERM in {stopped_in:.1f} s with exit 0, keeps its volume")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)


if __name__ == "__main__":
    main()
