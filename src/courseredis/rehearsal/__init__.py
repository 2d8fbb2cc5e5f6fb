"""The deploy rehearsal: what `pulumi up -s <env>` applies, run on real containers.

Kubernetes, the Pulumi CLI and image registries are out of reach on the project's machines,
containers are not. The rehearsal takes the objects the Pulumi program declares for a stack
(the program under Pulumi's mocks, every Helm chart rendered with the values it passes) and
runs them under rootful podman, on images built from the repository's Dockerfile over base
images made from Debian's packages.

- `podman`: the one way podman is called (runc, explicit ulimits, a containers.conf of its own).
- `images`: the base images under the names the Dockerfile and charts use; the project image.
"""
