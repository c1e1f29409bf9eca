"""Fixtures of the operator layer: the ``kube`` test bed (emulator + kubeconfig) for tests of
kopf and of the emulator itself."""

from tests.support.kube_fixtures import kube  # noqa: F401
