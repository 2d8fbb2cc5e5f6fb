"""The repository's Dockerfile, unchanged, built by podman on the locally made base images."""

from __future__ import annotations

import ast

import pytest

from courseredis.rehearsal.podman import Podman

# A first run on a new machine debootstraps the base images (about 3 minutes) before the
# build; later runs find them cached.
pytestmark = pytest.mark.timeout(900)


def test_the_project_image_runs_the_services_as_the_charts_user(podman: Podman, project_image):
    done = podman.run(
        [
            "run",
            "--rm",
            "--network=none",
            project_image,
            "sh",
            "-c",
            "id -u; id -g; python -c 'import courseredis.services.main, sys; "
            "print(sys.version_info[:2])'; command -v courseredis-service; "
            "python -c 'import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE))'",
        ]
    )
    uid, gid, version, entry, nofile = done.stdout.split("\n")[:5]
    assert (uid, gid) == ("999", "999")  # the charts' runAsUser owns nothing else
    assert version == "(3, 11)"
    assert entry == "/opt/venv/bin/courseredis-service"
    soft, hard = ast.literal_eval(nofile)
    assert 0 < soft <= hard  # explicit ulimits, within the host's hard limit
