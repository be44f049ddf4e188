"""hami-mig: dynamic MIG GPU sharing for Kubernetes, HAMi-compatible."""

__version__ = "0.1.0"
