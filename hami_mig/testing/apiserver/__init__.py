"""A faithful fake Kubernetes API server (core/v1 subset) over real HTTP, for tests and the demo.

Written on the standard library (ThreadingHTTPServer) rather than on kmock: kmock's emulator lists
with a placeholder resourceVersion, has no field/label selectors, no watch resume, 410 Gone or
timeoutSeconds, treats every patch as a plain merge and has no status subresource; it is also
asyncio-only, so the synchronous kubernetes client would need a loop thread. Overriding all of
that would be more code than this package, and it is not a declared dependency.
"""

from hami_mig.testing.apiserver.server import FakeApiServer, RecordedRequest, pod_manifest

__all__ = ["FakeApiServer", "RecordedRequest", "pod_manifest"]
