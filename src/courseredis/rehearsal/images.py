"""Base images made from Debian's packages, under the exact names the Dockerfile and charts use.

No image registry is reachable, so every image the repository names (`FROM ...` and
`COPY --from=...` in the Dockerfile, the Redis and exporter images the charts pin) is made
here and tagged with that very name; the Dockerfile and the rendered manifests stay as they
are. How each is approximated:

| Name                     | Made of                                                     |
|--------------------------|-------------------------------------------------------------|
| `python:<v>-slim-<suite>`| debootstrap minbase + Debian's python3 (bookworm: 3.11.2)   |
| `ghcr.io/astral-sh/uv:<v>` | `/uv` and `/uvx` from uv's PyPI wheel of that version, alone |
| `redis:<v>-<suite>`      | minbase + Debian's redis-server/redis-tools, user redis 999 |
| `oliver006/redis_exporter:<v>` | minbase + Debian's prometheus-redis-exporter       |
| `localhost/courseredis-rehearsal/postgres:<m>-<suite>` | minbase + postgresql-<m> |
| `localhost/courseredis-rehearsal/valkey:<m.n>-<suite>` | minbase + Debian's valkey-server |

The last two are no image the repository names: the valkey one is the pattern tests' newer
Valkey (trixie: 8.1.1, which has `SET ... IFEQ`), the native primitives' real server.
The postgres one is the rehearsal's own stand-in PostgreSQL
(`STAND_IN_POSTGRES`, run by `courseredis.rehearsal.standins` for a stack that declares no
database), under a name no registry serves. Its entry point is `postgres_entrypoint.sh`.

A version Debian does not ship exactly (python 3.11.11 vs 3.11.2, exporter v1.62 vs 1.45)
is recorded in the image's labels and in the rehearsal's report, never hidden.

Each image carries the hash of its recipe as a label; an image whose label matches is kept,
so they are built once per machine and rebuilt only when a recipe changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from courseredis.rehearsal.podman import LABEL, Podman

# Bump when the build procedure (not a recipe) changes, so every cached image is rebuilt.
BUILD_FORMAT = 1
RECIPE_LABEL = f"{LABEL}.recipe"
PROVIDES_LABEL = f"{LABEL}.provides"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# The stand-in PostgreSQL: Debian's major of each suite (the tag names both, and must agree);
# built from bookworm, the python base image's suite (one debootstrap cache for both); the
# uid/gid of the official image's postgres user (the stand-in's runAsUser and fsGroup); its
# home, the one writable place it needs (a volume: the data directory and the socket).
POSTGRES_MAJORS = {"bookworm": "15", "trixie": "17"}
POSTGRES_SUITE = "bookworm"
POSTGRES_MAJOR = POSTGRES_MAJORS[POSTGRES_SUITE]
STAND_IN_POSTGRES = f"localhost/courseredis-rehearsal/postgres:{POSTGRES_MAJOR}-{POSTGRES_SUITE}"
POSTGRES_UID = 999
POSTGRES_HOME = "/var/lib/postgresql"
POSTGRES_ENTRYPOINT = Path(__file__).with_name("postgres_entrypoint.sh")
# A newer Valkey than the host's for the native primitives' tests (Valkey 8.1 has
# `SET ... IFEQ`): Debian's minor release of each suite, which the tag names.
VALKEY_RELEASES = {"trixie": "8.1"}
NATIVE_VALKEY = "localhost/courseredis-rehearsal/valkey:8.1-trixie"
# Trimmed from every rootfs: nothing in a container reads them.
TRIMMED = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "var/log",
)


class ImageRecipeError(ValueError):
    """A referenced image has no recipe, or its reference cannot be read."""


@dataclass(frozen=True)
class Recipe:
    """How to make one named image.

    `packages` are Debian packages for debootstrap (`suite`); with `wheel` instead, the
    image is only the wheel's files `wheel_files` (path in the wheel's target -> path in the
    image), as the official uv image is only its binaries. `files` (path in the image, text)
    are written after debootstrap, executable (entry points); `commands` run in the rootfs
    (chroot) after them; `changes` are Dockerfile instructions for `podman import`.
    `checks` are `(Debian package, upstream version)` pairs recorded as labels.
    """

    reference: str
    suite: str | None = None
    packages: tuple[str, ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    commands: tuple[str, ...] = ()
    changes: tuple[str, ...] = ()
    wheel: str | None = None
    wheel_files: tuple[tuple[str, str], ...] = ()
    checks: tuple[tuple[str, str], ...] = ()
    note: str = ""

    @property
    def digest(self) -> str:
        document = {"format": BUILD_FORMAT, "arch": platform.machine(), **asdict(self)}
        if not self.files:
            # Absent from the document when unused, as before the field existed: the
            # images cached on every machine keep their hashes and are not rebuilt.
            del document["files"]
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


def split_reference(reference: str) -> tuple[str, str]:
    """`repo[:tag][@digest]` -> (repository, tag). A digest cannot name a local build."""
    if "@" in reference:
        raise ImageRecipeError(
            f"{reference}: pinned by digest; a locally built image cannot have that digest "
            "(the rehearsal strips digests before it asks for an image)"
        )
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag:
        return reference, "latest"
    return repository, tag


def _suite_of(tag: str, reference: str) -> str:
    match = re.search(r"(bookworm|trixie|bullseye)$", tag)
    if match is None:
        raise ImageRecipeError(
            f"{reference}: the tag names no Debian suite (…-bookworm), so it cannot be made "
            "from Debian's packages"
        )
    return match.group(1)


def _python(reference: str, tag: str) -> Recipe:
    version = tag.split("-", 1)[0]
    return Recipe(
        reference=reference,
        suite=_suite_of(tag, reference),
        packages=("python3", "python-is-python3", "ca-certificates", "netbase", "tzdata"),
        changes=(
            "ENV LANG=C.UTF-8",
            f"ENV PYTHON_VERSION={version}",
            'CMD ["python3"]',
        ),
        checks=(("python3", version),),
        note="Debian's python3 stands in for the official build",
    )


def _uv(reference: str, tag: str) -> Recipe:
    return Recipe(
        reference=reference,
        wheel=f"uv=={tag}",
        wheel_files=(("bin/uv", "uv"), ("bin/uvx", "uvx")),
        changes=('ENTRYPOINT ["/uv"]',),
        note="the binaries of uv's PyPI wheel, as the official image holds them",
    )


def _redis(reference: str, tag: str) -> Recipe:
    version = tag.split("-", 1)[0]
    return Recipe(
        reference=reference,
        suite=_suite_of(tag, reference),
        packages=("redis-server", "redis-tools", "ca-certificates", "netbase"),
        # The official image's user: uid/gid 999, owning /data (the charts' runAsUser).
        # Debian's packaging dirs (/etc/redis is 0750, owned by the old uid) are not in the
        # official image, whose /etc/redis does not exist: charts mount their own there.
        commands=(
            "groupmod --gid 999 redis && usermod --uid 999 --gid 999 redis",
            "rm -rf /etc/redis /var/lib/redis /var/log/redis /etc/init.d/redis-server",
            "mkdir -p /data && chown redis:redis /data",
        ),
        changes=("WORKDIR /data", "EXPOSE 6379", 'CMD ["redis-server"]'),
        checks=(("redis-server", version),),
        note="Debian's redis-server stands in for the official build",
    )


def _valkey(reference: str, tag: str) -> Recipe:
    release, _, suite = tag.partition("-")
    if VALKEY_RELEASES.get(suite) != release:
        shipped = ", ".join(f"{r}-{s}" for s, r in VALKEY_RELEASES.items())
        raise ImageRecipeError(
            f"{reference}: Debian ships no valkey {release} in {suite!r} (known: {shipped})"
        )
    return Recipe(
        reference=reference,
        suite=suite,
        packages=("valkey-server", "valkey-tools", "ca-certificates", "netbase"),
        # Debian's packaging dirs are the service's, not a container's: the tests pass
        # their whole configuration on the command line.
        commands=(
            "rm -rf /etc/valkey /var/lib/valkey /var/log/valkey /etc/init.d/valkey-server",
            "mkdir -p /data && chown valkey:valkey /data",
        ),
        changes=("WORKDIR /data", "EXPOSE 6379", 'CMD ["valkey-server"]'),
        checks=(("valkey-server", release),),
        note=f"Debian's valkey-server {release}, for the native primitives' tests",
    )


def _exporter(reference: str, tag: str) -> Recipe:
    return Recipe(
        reference=reference,
        suite="bookworm",
        packages=("prometheus-redis-exporter", "ca-certificates"),
        commands=("ln -sf /usr/bin/prometheus-redis-exporter /redis_exporter",),
        changes=("USER 59000:59000", "EXPOSE 9121", 'ENTRYPOINT ["/redis_exporter"]'),
        checks=(("prometheus-redis-exporter", tag.removeprefix("v")),),
        note="Debian's prometheus-redis-exporter stands in for the official build",
    )


def _postgres(reference: str, tag: str) -> Recipe:
    major, _, suite = tag.partition("-")
    if POSTGRES_MAJORS.get(suite) != major:
        shipped = ", ".join(f"{m}-{s}" for s, m in POSTGRES_MAJORS.items())
        raise ImageRecipeError(
            f"{reference}: Debian ships no postgresql {major} in {suite!r} (known: {shipped})"
        )
    uid, home = POSTGRES_UID, POSTGRES_HOME
    return Recipe(
        reference=reference,
        suite=suite,
        packages=(f"postgresql-{major}",),
        files=(("/usr/local/bin/postgres-stand-in", POSTGRES_ENTRYPOINT.read_text()),),
        # The cluster Debian's packaging made at install (`main`, with its /etc config) is
        # not the stand-in's: the entry point makes its own, in the volume, at first start.
        commands=(
            f"rm -rf /etc/postgresql {home} /run/postgresql",
            f"groupmod --gid {uid} postgres && usermod --uid {uid} --gid {uid} postgres",
            f"mkdir -p {home} && chown {uid}:{uid} {home} && chmod 0700 {home}",
        ),
        changes=(
            f"ENV PATH=/usr/lib/postgresql/{major}/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f"ENV PGDATA={home}/data",
            f"ENV PGHOST={home}/run",
            f"USER {uid}:{uid}",
            "EXPOSE 5432",
            # Fast shutdown: SIGTERM is PostgreSQL's "smart" one, which waits for every
            # client (the services' pools) to leave, past any grace period.
            "STOPSIGNAL SIGINT",
            'ENTRYPOINT ["/usr/local/bin/postgres-stand-in"]',
        ),
        checks=((f"postgresql-{major}", major),),
        note=f"Debian's postgresql {major}: the rehearsal's stand-in for the operator's database",
    )


RECIPES: dict[str, Callable[[str, str], Recipe]] = {
    "python": _python,
    "docker.io/library/python": _python,
    "ghcr.io/astral-sh/uv": _uv,
    "redis": _redis,
    "docker.io/library/redis": _redis,
    "oliver006/redis_exporter": _exporter,
    "docker.io/oliver006/redis_exporter": _exporter,
    split_reference(STAND_IN_POSTGRES)[0]: _postgres,
    split_reference(NATIVE_VALKEY)[0]: _valkey,
}


def recipe_for(reference: str) -> Recipe:
    repository, tag = split_reference(reference)
    make = RECIPES.get(repository)
    if make is None:
        raise ImageRecipeError(
            f"{reference}: no recipe makes this image from Debian's packages "
            f"(known: {', '.join(sorted(r for r in RECIPES if '/' not in r or '.' in r))})"
        )
    if tag == "latest":
        raise ImageRecipeError(f"{reference}: pin a tag; `latest` names no version to build")
    return make(reference, tag)


def dockerfile_images(text: str) -> list[str]:
    """The external images a Dockerfile names (`FROM`, `COPY --from=`), stages excluded."""
    stages: set[str] = set()
    images: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if match := re.match(r"(?i)^FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line):
            image, stage = match.group(1), match.group(2)
            if image.lower() not in stages and image not in images:
                images.append(image)
            if stage:
                stages.add(stage.lower())
        elif match := re.match(r"(?i)^COPY\s+.*--from=(\S+)", line):
            source = match.group(1)
            if source.lower() not in stages and not source.isdigit() and source not in images:
                images.append(source)
    return images


def apt_mirror(sources: Iterable[Path] | None = None) -> str:
    """The host's Debian mirror (debootstrap should use what apt-get already reaches)."""
    paths = (
        list(sources)
        if sources is not None
        else [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    )
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("URIs:"):
                for uri in line.split()[1:]:
                    if uri.rstrip("/").endswith("/debian"):
                        return uri.rstrip("/")
            elif line.startswith("deb ") and not line.startswith("deb-src"):
                parts = [p for p in line.split() if not p.startswith("[")]
                if len(parts) > 1 and parts[1].rstrip("/").endswith("/debian"):
                    return parts[1].rstrip("/")
    return DEFAULT_MIRROR


def format_provides(provides: dict[str, str]) -> str:
    """`package=version,...`: a label value with no quoting to get wrong."""
    return ",".join(f"{name}={version}" for name, version in sorted(provides.items()))


def parse_provides(text: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
    return {name: version for name, version in pairs}


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "courseredis-rehearsal"


def find_uv() -> str:
    found = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(found).exists():
        raise ImageRecipeError("uv is not installed (scripts/setup.sh installs it)")
    return found


@dataclass
class BuiltImage:
    reference: str
    image_id: str
    built: bool  # False: the cached image matched its recipe
    provides: dict[str, str] = field(default_factory=dict)
    note: str = ""


class ImageBuilder:
    """Makes the base images (debootstrap, podman import), keeping those that match."""

    def __init__(
        self, podman: Podman, cache: Path | None = None, log: Callable[[str], None] = print
    ):
        self.podman = podman
        self.cache = cache or cache_dir()
        self.log = log

    def ensure(self, references: Sequence[str], parallel: int = 3) -> list[BuiltImage]:
        """Every referenced image, built unless a matching one is there. One builder at a
        time per machine (a file lock): two runs must not debootstrap the same image."""
        recipes = [recipe_for(r) for r in dict.fromkeys(references)]
        self.cache.mkdir(parents=True, exist_ok=True)
        with (self.cache / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
                return list(pool.map(self.ensure_one, recipes))

    def ensure_one(self, recipe: Recipe) -> BuiltImage:
        if self.podman.image_label(recipe.reference, RECIPE_LABEL) == recipe.digest:
            label = self.podman.image_label(recipe.reference, PROVIDES_LABEL) or ""
            return BuiltImage(
                recipe.reference,
                self.podman.image_id(recipe.reference) or "",
                built=False,
                provides=parse_provides(label),
                note=recipe.note,
            )
        self.log(f"rehearsal: building {recipe.reference} ({recipe.note})")
        self.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rootfs-", dir=self.cache) as work:
            rootfs = Path(work) / "rootfs"
            rootfs.mkdir()
            if recipe.wheel is not None:
                provides = self._wheel_rootfs(recipe, rootfs, Path(work))
            else:
                provides = self._debian_rootfs(recipe, rootfs)
            image_id = self._import(recipe, rootfs, provides)
        return BuiltImage(
            recipe.reference, image_id, built=True, provides=provides, note=recipe.note
        )

    def _debian_rootfs(self, recipe: Recipe, rootfs: Path) -> dict[str, str]:
        assert recipe.suite is not None
        debs = self.cache / "debs" / recipe.suite
        debs.mkdir(parents=True, exist_ok=True)
        command = [
            "debootstrap",
            "--variant=minbase",
            f"--cache-dir={debs}",
            f"--include={','.join(recipe.packages)}",
            recipe.suite,
            str(rootfs),
            apt_mirror(),
        ]
        _run(command, f"debootstrap for {recipe.reference}")
        for path, text in recipe.files:
            target = rootfs / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(0o755)
        for shell in recipe.commands:
            _run(["chroot", str(rootfs), "/bin/sh", "-ec", shell], f"{recipe.reference}: {shell}")
        provides = {}
        for package, _upstream in recipe.checks:
            version = _run(
                ["chroot", str(rootfs), "dpkg-query", "-W", "-f=${Version}", package],
                f"{recipe.reference}: version of {package}",
            )
            provides[package] = version.strip()
        for relative in TRIMMED:
            target = rootfs / relative
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        return provides

    def _wheel_rootfs(self, recipe: Recipe, rootfs: Path, work: Path) -> dict[str, str]:
        assert recipe.wheel is not None
        target = work / "wheel"
        _run(
            [
                find_uv(),
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                str(target),
                "--python-platform",
                f"{platform.machine()}-manylinux_2_17",
                "--python-version",
                "3.11",
                recipe.wheel,
            ],
            f"{recipe.reference}: the {recipe.wheel} wheel",
        )
        for source, destination in recipe.wheel_files:
            shutil.copy2(target / source, rootfs / destination)
            (rootfs / destination).chmod(0o755)
        return {recipe.wheel.split("==")[0]: recipe.wheel.split("==")[1]}

    def _import(self, recipe: Recipe, rootfs: Path, provides: dict[str, str]) -> str:
        changes = [
            *recipe.changes,
            f"LABEL {RECIPE_LABEL}={recipe.digest}",
            f"LABEL {PROVIDES_LABEL}={format_provides(provides)}",
        ]
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        archive = rootfs.parent / "rootfs.tar"
        _run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(archive), "."],
            f"{recipe.reference}: archive",
        )
        old = self.podman.image_id(recipe.reference)
        image_id = self.podman.run([*args, str(archive), recipe.reference]).stdout.strip()
        image_id = image_id.splitlines()[-1].removeprefix("sha256:") if image_id else ""
        if old and not image_id.startswith(old[:12]):
            # The outdated image lost its name to the new one; drop it (by id) if unused.
            self.podman.run(["image", "rm", old], check=False)
        return image_id


def _run(command: Sequence[str], what: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise ImageRecipeError(f"{what}: `{' '.join(command[:3])} ...` failed:\n{tail}")
    return done.stdout


# The build's RUN steps reach PyPI through the host's network and the host's trust: where
# egress is TLS-intercepted, the host's CA bundle and uv's `native-tls` (read from the
# system-wide uv.toml) are mounted for RUN only. Nothing of either lands in the image.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
UV_SYSTEM_CONFIG = "native-tls = true\n"


def project_build_args(
    dockerfile: Path, context: Path, tag: str, cache: Path, labels: dict[str, str]
) -> list[str]:
    """`podman build` of the repository's Dockerfile, unchanged, against the local images."""
    uv_cache = cache / "uv"
    uv_cache.mkdir(parents=True, exist_ok=True)
    uv_config = cache / "uv.toml"
    if not uv_config.exists() or uv_config.read_text() != UV_SYSTEM_CONFIG:
        uv_config.write_text(UV_SYSTEM_CONFIG)
    args = [
        "build",
        "--pull=never",  # every base image is local: never ask a registry
        "--layers=false",  # no intermediate images left behind
        "--network=host",
        "-v",
        f"{uv_cache}:/root/.cache/uv",
        "-v",
        f"{uv_config}:/etc/uv/uv.toml:ro",
    ]
    if HOST_CA_BUNDLE.exists():
        args += ["-v", f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"]
    for name, value in sorted(labels.items()):
        args += ["--label", f"{name}={value}"]
    return [*args, "-t", tag, "-f", str(dockerfile), str(context)]


def build_project_image(
    podman: Podman,
    repo_root: Path,
    tag: str,
    cache: Path | None = None,
    run_id: str = "",
    revision: str | None = None,
    target: str | None = None,
) -> str:
    """Build the Dockerfile at the repository root as `tag`; the new image's id.

    The build context is the working tree, or with `revision` that commit's tree
    (`git archive`), so a rehearsal can run what was committed while the tree is edited.
    `target` builds that stage instead of the last one (the services' image).
    """
    previous = podman.image_id(tag)
    if previous is not None and podman.image_label(tag, LABEL) is None:
        raise ImageRecipeError(
            f"{tag} exists and is not the rehearsal's: remove it or choose another tag"
        )
    with tempfile.TemporaryDirectory(prefix="context-") as exported:
        context = repo_root
        if revision is not None:
            context = Path(exported)
            archive = subprocess.run(
                ["git", "-C", str(repo_root), "archive", "--format=tar", revision],
                capture_output=True,
                check=True,
            )
            subprocess.run(["tar", "-x", "-C", str(context)], input=archive.stdout, check=True)
        args = project_build_args(
            context / "Dockerfile", context, tag, cache or cache_dir(), {LABEL: run_id or "1"}
        )
        if target is not None:
            args = [args[0], "--target", target, *args[1:]]
        podman.run(args, timeout=1800)
    image_id = podman.image_id(tag)
    if image_id is None:
        raise ImageRecipeError(f"podman build reported success but {tag} is not there")
    if previous is not None and previous != image_id:
        podman.run(["image", "rm", previous], check=False)  # an earlier run's, now untagged
    return image_id
