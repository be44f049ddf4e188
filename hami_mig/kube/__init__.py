"""The Kubernetes layer: HAMi annotation codecs (pure) and the one adapter that talks to the API server."""

from hami_mig.kube.lightimport import install as _light_kubernetes

_light_kubernetes()  # before any kube module imports the client: only the parts used are loaded
