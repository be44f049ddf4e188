"""The Kubernetes layer: HAMi annotation codecs (pure) and the one adapter that talks to the API server."""
