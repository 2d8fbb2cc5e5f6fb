"""Real podman for the rehearsal tests: rootful, as `scripts/setup.sh` installs it.

The base images are cached on the machine (built once, kept); the project image is built
once per session and removed, by id, when the session ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from courseredis.environments import REPO_ROOT
from courseredis.rehearsal.images import ImageBuilder, build_project_image, dockerfile_images
from courseredis.rehearsal.podman import Podman

# Pulumi's mocks need a current event loop in each module (see tests/infra/conftest.py).
from tests.infra.conftest import current_event_loop  # noqa: F401

TEST_IMAGE = "localhost/courseredis-rehearsal-test:build"


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    if os.geteuid() != 0:
        pytest.skip("the rehearsal runs rootful podman: run the tests as root (CI does)")
    return Podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="session")
def base_images(podman: Podman) -> list[str]:
    references = dockerfile_images((REPO_ROOT / "Dockerfile").read_text())
    ImageBuilder(podman, log=lambda line: None).ensure(references)
    return references


@pytest.fixture(scope="session")
def project_image(podman: Podman, base_images: list[str]) -> Iterator[str]:
    image_id = build_project_image(podman, REPO_ROOT, TEST_IMAGE, run_id="tests")
    yield image_id
    podman.run(["image", "rm", "--force", image_id], check=False)
