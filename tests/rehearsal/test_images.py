"""The image recipes and the podman settings, without podman: what would be built, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from courseredis.environments import REPO_ROOT
from courseredis.rehearsal import images
from courseredis.rehearsal.images import (
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


def test_a_recipe_hash_changes_with_its_inputs_only():
    assert recipe_for("redis:7.0.15-bookworm").digest == recipe_for("redis:7.0.15-bookworm").digest
    assert recipe_for("redis:7.0.15-bookworm").digest != recipe_for("redis:7.2.4-bookworm").digest
    assert recipe_for("ghcr.io/astral-sh/uv:0.5.31").digest != (
        recipe_for("ghcr.io/astral-sh/uv:0.6.0").digest
    )


@pytest.mark.parametrize(
    ("reference", "reason"),
    [
        ("nginx:1.27-bookworm", "no recipe"),
        ("redis:7.0.15-alpine", "names no Debian suite"),
        ("redis", "pin a tag"),
        ("redis:7.0.15@sha256:" + "0" * 64, "digest"),
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
