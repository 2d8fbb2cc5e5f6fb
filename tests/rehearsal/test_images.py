"""The image recipes and the podman settings, without podman: what would be built, and why."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from pathlib import Path

import pytest

from courseredis.environments import REPO_ROOT
from courseredis.rehearsal import images
from courseredis.rehearsal.images import (
    BUILD_FORMAT,
    POSTGRES_ENTRYPOINT,
    POSTGRES_HOME,
    POSTGRES_UID,
    STAND_IN_POSTGRES,
    ImageRecipeError,
    apt_mirror,
    dockerfile_images,
    format_provides,
    parse_provides,
    project_build_args,
    recipe_for,
    split_reference,
)
from courseredis.rehearsal.podman import containers_conf, ulimits


def test_the_dockerfile_names_the_python_and_uv_images_and_no_stage():
    text = (REPO_ROOT / "Dockerfile").read_text()
    found = dockerfile_images(text)
    assert found == ["python:3.11.11-slim-bookworm", "ghcr.io/astral-sh/uv:0.5.31"]
    assert all(recipe_for(reference) for reference in found)


def test_stages_and_numbered_sources_are_not_images():
    text = """
    FROM --platform=linux/amd64 debian:bookworm AS base
    FROM base AS build
    COPY --from=build /a /b
    COPY --from=0 /a /b
    COPY --chown=1:1 --from=ghcr.io/astral-sh/uv:0.5.31 /uv /bin/uv
    FROM base
    """
    assert dockerfile_images(text) == ["debian:bookworm", "ghcr.io/astral-sh/uv:0.5.31"]


def test_the_charts_images_have_recipes_from_debian_packages():
    redis = recipe_for("redis:7.0.15-bookworm")
    assert redis.suite == "bookworm" and "redis-server" in redis.packages
    assert any("--uid 999" in command for command in redis.commands)  # the charts' runAsUser
    exporter = recipe_for("oliver006/redis_exporter:v1.62.0")
    assert 'ENTRYPOINT ["/redis_exporter"]' in exporter.changes
    uv = recipe_for("ghcr.io/astral-sh/uv:0.5.31")
    assert uv.wheel == "uv==0.5.31" and uv.packages == ()  # only the wheel's binaries
    assert ("bin/uv", "uv") in uv.wheel_files


def test_the_stand_in_postgres_is_debians_postgresql_run_by_its_own_entry_point():
    recipe = recipe_for(STAND_IN_POSTGRES)
    assert STAND_IN_POSTGRES == "localhost/courseredis-rehearsal/postgres:15-bookworm"
    assert (recipe.suite, recipe.packages) == ("bookworm", ("postgresql-15",))
    assert recipe.checks == (("postgresql-15", "15"),)
    # The entry point is the script beside the module, written into the image whole.
    assert recipe.files == (("/usr/local/bin/postgres-stand-in", POSTGRES_ENTRYPOINT.read_text()),)
    assert 'ENTRYPOINT ["/usr/local/bin/postgres-stand-in"]' in recipe.changes
    # Never root at run time; the user the pod's runAsUser and fsGroup name.
    assert f"USER {POSTGRES_UID}:{POSTGRES_UID}" in recipe.changes
    assert any(f"--uid {POSTGRES_UID}" in command for command in recipe.commands)
    # Everything it writes lives under its home, the pod's volume.
    assert f"ENV PGDATA={POSTGRES_HOME}/data" in recipe.changes
    assert f"ENV PGHOST={POSTGRES_HOME}/run" in recipe.changes
    assert "ENV PATH=/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin" in recipe.changes
    # SIGTERM would be PostgreSQL's smart shutdown, waiting on the services' pools.
    assert "STOPSIGNAL SIGINT" in recipe.changes


def test_the_entry_point_makes_a_password_only_database_listening_on_every_address():
    script = POSTGRES_ENTRYPOINT.read_text()
    assert script.startswith("#!/bin/sh\n")
    for needed in ("POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB"):
        assert needed in script
    assert "--pwfile=/dev/stdin" in script  # the password never on a command line
    assert "host all all 0.0.0.0/0 scram-sha-256" in script
    assert "listen_addresses=0.0.0.0" in script


def test_a_recipe_hash_changes_with_its_inputs_only():
    assert recipe_for("redis:7.0.15-bookworm").digest == recipe_for("redis:7.0.15-bookworm").digest
    assert recipe_for("redis:7.0.15-bookworm").digest != recipe_for("redis:7.2.4-bookworm").digest
    assert recipe_for("ghcr.io/astral-sh/uv:0.5.31").digest != (
        recipe_for("ghcr.io/astral-sh/uv:0.6.0").digest
    )
    postgres = recipe_for(STAND_IN_POSTGRES)
    edited = dataclasses.replace(postgres, files=(("/usr/local/bin/x", "#!/bin/sh\n"),))
    assert edited.digest != postgres.digest  # an edited entry point is a new image


def test_a_recipe_without_files_keeps_the_hash_it_had_before_files_existed():
    # The cached images of every machine stay valid: no rebuild for a field they lack.
    recipe = recipe_for("redis:7.0.15-bookworm")
    fields = {k: v for k, v in dataclasses.asdict(recipe).items() if k != "files"}
    document = {"format": BUILD_FORMAT, "arch": platform.machine(), **fields}
    expected = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
    assert recipe.digest == expected


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("nginx:1.27-bookworm", "no recipe"),
        ("redis:7.0.15-alpine", "names no Debian suite"),
        ("redis", "pin a tag"),
        ("redis:7.0.15@sha256:" + "0" * 64, "digest"),
        ("localhost/courseredis-rehearsal/postgres:16-bookworm", "no postgresql 16 in 'bookworm'"),
    ],
)
def test_an_image_without_a_recipe_is_refused_with_the_reason(reference: str, reason: str):
    with pytest.raises(ImageRecipeError, match=reason):
        recipe_for(reference)


def test_references_split_on_the_tag_not_on_a_registry_port():
    assert split_reference("registry:5000/x/y:1.0") == ("registry:5000/x/y", "1.0")
    assert split_reference("registry:5000/x/y") == ("registry:5000/x/y", "latest")
    assert split_reference("redis:7") == ("redis", "7")


def test_provides_round_trips_through_a_label():
    provides = {"redis-server": "5:7.0.15-1~deb12u7", "uv": "0.5.31"}
    assert parse_provides(format_provides(provides)) == provides
    assert parse_provides("") == {}


def test_the_mirror_is_the_hosts_own(tmp_path: Path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    assert apt_mirror([deb822]) == "http://mirror.example/debian"
    legacy = tmp_path / "sources.list"
    legacy.write_text("deb [arch=amd64] http://other.example/debian bookworm main\n")
    assert apt_mirror([legacy]) == "http://other.example/debian"
    assert apt_mirror([tmp_path / "missing"]) == images.DEFAULT_MIRROR


def test_ulimits_never_exceed_the_hosts_hard_limits():
    assert ulimits(hard_nofile=1024, hard_nproc=512) == {
        "nofile": (1024, 1024),
        "nproc": (512, 512),
    }
    assert ulimits(hard_nofile=1 << 20, hard_nproc=1 << 20)["nofile"][1] <= 1 << 20
    conf = containers_conf({"nofile": (1024, 1024), "nproc": (512, 512)})
    assert 'default_ulimits = ["nofile=1024:1024", "nproc=512:512"]' in conf
    assert 'runtime = "runc"' in conf and 'network_backend = "netavark"' in conf


def test_the_project_build_uses_local_images_and_leaves_no_trust_in_the_image(tmp_path: Path):
    args = project_build_args(
        REPO_ROOT / "Dockerfile", REPO_ROOT, "x/y:1", tmp_path, {"io.courseredis.rehearsal": "1"}
    )
    assert "--pull=never" in args and "--layers=false" in args
    # The CA bundle and uv's config are RUN-time mounts (-v), never COPY'd into a layer.
    mounts = [args[i + 1] for i, arg in enumerate(args) if arg == "-v"]
    assert f"{tmp_path / 'uv.toml'}:/etc/uv/uv.toml:ro" in mounts
    assert args[-5:] == ["-t", "x/y:1", "-f", str(REPO_ROOT / "Dockerfile"), str(REPO_ROOT)]
