"""deploy/compose.yaml says what the server reads: every setting it passes is
one the server knows and docs/cloud.md documents, and the services it names
(PostgreSQL, the S3 store, the bucket it creates, the credentials) agree
with each other. (Running it needs a Docker daemon, which the test machine
has not: `scripts/docker_check.py` is the opt-in check of the image.)"""

import re
import urllib.parse
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())


def server_variables() -> set[str]:
    """The HITSAVE_SERVER_* variables the server's source reads."""
    found: set[str] = set()
    for path in (REPO / "server" / "src").rglob("*.rs"):
        found |= set(re.findall(r'"(HITSAVE_SERVER_[A-Z0-9_]+)"', path.read_text()))
    return found


def test_every_setting_is_one_the_server_reads_and_the_docs_list():
    environment = COMPOSE["services"]["server"]["environment"]
    known = server_variables()
    docs = (REPO / "docs" / "cloud.md").read_text()
    for name in environment:
        if name.startswith("HITSAVE_SERVER_"):
            assert name in known, f"{name} is not read by the server"
        assert name in docs, f"{name} is not in docs/cloud.md"
    assert {"HITSAVE_SERVER_DATABASE_URL", "HITSAVE_SERVER_S3_ENDPOINT", "HITSAVE_SERVER_ADMIN_TOKEN"} <= set(environment)


def test_the_services_it_names_agree():
    services = COMPOSE["services"]
    server = services["server"]["environment"]
    postgres = services["postgres"]["environment"]
    url = urllib.parse.urlsplit(server["HITSAVE_SERVER_DATABASE_URL"])
    assert url.scheme == "postgres" and url.hostname == "postgres" and url.port == 5432
    assert url.username == postgres["POSTGRES_USER"] and url.path.lstrip("/") == postgres["POSTGRES_DB"]
    assert url.password == "${POSTGRES_PASSWORD}" and postgres["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    assert urllib.parse.parse_qs(url.query)["sslmode"] == ["disable"]  # a value the server accepts (pg_tls.rs)
    endpoint = urllib.parse.urlsplit(server["HITSAVE_SERVER_S3_ENDPOINT"])
    assert endpoint.hostname == "minio" and endpoint.port == 9000 and "minio" in services
    minio = services["minio"]["environment"]
    assert server["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert server["AWS_SECRET_ACCESS_KEY"] == "${MINIO_ROOT_PASSWORD}"
    # The bucket the server is given is the one the bucket service makes.
    made = " ".join(services["bucket"]["command"])
    assert f"mc mb --ignore-existing hitsave/{server['HITSAVE_SERVER_S3_BUCKET']}" in made
    assert services["server"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "bucket": {"condition": "service_completed_successfully"},
    }


def test_the_server_is_the_image_the_script_builds_published_on_loopback():
    server = COMPOSE["services"]["server"]
    script = (REPO / "scripts" / "docker-image.sh").read_text()
    assert server["image"] in script or server["image"].split(":")[0] in script
    assert server["environment"]["HITSAVE_SERVER_LISTEN"] == "0.0.0.0:8787"
    assert server["ports"] == ["127.0.0.1:8787:8787"]
    assert server["stop_signal"] == "SIGTERM"
    # Longer than the 30 s the server lets requests in flight finish.
    assert int(server["stop_grace_period"].rstrip("s")) > 30
