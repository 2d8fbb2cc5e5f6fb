"""The Pulumi program of the course platform: Redis and the services, per stack.

`__main__.py` reads the stack config and exports; `settings` turns the stack config into
typed settings, `values` turns settings into chart values (both pure, tested without
Pulumi); `redis_component` and `services_component` hold one `ComponentResource` per
deployable; `credentials` renders the ACL file; `kube` has the shared Kubernetes helpers.
"""
