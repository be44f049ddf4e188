"""The seven CoreV1 calls hami-mig makes, through the official client's own ApiClient.

The generated `CoreV1Api` module builds a validator for each of its hundreds of methods and imports
every model they name: about 20 MiB of a node agent's memory for the seven calls below. These make the
same requests the same way (`ApiClient.param_serialize` / `call_api` / `response_deserialize`, the
path `CoreV1Api` itself takes) and answer the same model objects, loading only the models they return.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubernetes.client.api_client import ApiClient
from kubernetes.client.exceptions import ApiException

if TYPE_CHECKING:  # the models load when an answer needs them, not with this module
    from kubernetes.client import CoreV1Event, V1Node, V1Pod, V1PodList

_JSON = "application/json"
_JSON_PATCH = "application/json-patch+json"  # CoreV1Api's default for a patch without a content type
Timeout = float | tuple[float, float] | None


class CoreV1:
    """Same method names, arguments and answers as `kubernetes.client.CoreV1Api` for what hami-mig calls; any
    other CoreV1Api method (the scheduler extender's) loads the generated API on first use."""

    def __init__(self, api_client: ApiClient) -> None:
        self.api_client = api_client
        self._generated: Any = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._generated is None:
            from kubernetes.client import CoreV1Api

            self._generated = CoreV1Api(self.api_client)
        return getattr(self._generated, name)

    def _call(self, method: str, path: str, answer: str, *, path_params: dict[str, str] | None = None,
              query: list[tuple[str, Any]] | None = None, body: Any = None, content_type: str | None = None,
              _preload_content: bool = True, _request_timeout: Timeout = None) -> Any:
        headers = {"Accept": _JSON}
        if content_type:
            headers["Content-Type"] = content_type
        request = self.api_client.param_serialize(
            method=method, resource_path=path, path_params=path_params or {}, query_params=query or [],
            header_params=headers, body=body, post_params=[], files={}, auth_settings=["BearerToken"],
            collection_formats={})
        response = self.api_client.call_api(*request, _request_timeout=_request_timeout)
        if not _preload_content:  # a stream (a watch): the caller reads the raw urllib3 response
            if not 200 <= response.status <= 299:
                response.read()  # type: ignore[no-untyped-call]
                raise ApiException.from_response(http_resp=response, body=None, data=None)
            return response.response
        response.read()  # type: ignore[no-untyped-call]
        types: dict[str, str | None] = {"200": answer, "201": answer, "202": answer, "401": None}
        return self.api_client.response_deserialize(response_data=response, response_types_map=types).data

    # -- pods ------------------------------------------------------------------------------------
    def list_pod_for_all_namespaces(self, *, allow_watch_bookmarks: bool | None = None,
                                    field_selector: str | None = None, label_selector: str | None = None,
                                    resource_version: str | None = None, timeout_seconds: int | None = None,
                                    watch: bool | None = None, _preload_content: bool = True,
                                    _request_timeout: Timeout = None) -> V1PodList:
        query = [(k, v) for k, v in (("allowWatchBookmarks", allow_watch_bookmarks), ("fieldSelector", field_selector),
                                     ("labelSelector", label_selector), ("resourceVersion", resource_version),
                                     ("timeoutSeconds", timeout_seconds), ("watch", watch)) if v is not None]
        pods: V1PodList = self._call("GET", "/api/v1/pods", "V1PodList", query=query,
                                     _preload_content=_preload_content, _request_timeout=_request_timeout)
        return pods

    def read_namespaced_pod(self, name: str, namespace: str, *, _preload_content: bool = True,
                            _request_timeout: Timeout = None) -> V1Pod:
        pod: V1Pod = self._call("GET", "/api/v1/namespaces/{namespace}/pods/{name}", "V1Pod",
                                path_params={"name": name, "namespace": namespace},
                                _preload_content=_preload_content, _request_timeout=_request_timeout)
        return pod

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, *, _content_type: str | None = None,
                             _request_timeout: Timeout = None) -> V1Pod:
        pod: V1Pod = self._call("PATCH", "/api/v1/namespaces/{namespace}/pods/{name}", "V1Pod",
                                path_params={"name": name, "namespace": namespace}, body=body,
                                content_type=_content_type or _JSON_PATCH, _request_timeout=_request_timeout)
        return pod

    # -- nodes -----------------------------------------------------------------------------------
    def read_node(self, name: str, *, _preload_content: bool = True, _request_timeout: Timeout = None) -> V1Node:
        node: V1Node = self._call("GET", "/api/v1/nodes/{name}", "V1Node", path_params={"name": name},
                                  _preload_content=_preload_content, _request_timeout=_request_timeout)
        return node

    def patch_node(self, name: str, body: Any, *, _content_type: str | None = None,
                   _request_timeout: Timeout = None) -> V1Node:
        node: V1Node = self._call("PATCH", "/api/v1/nodes/{name}", "V1Node", path_params={"name": name}, body=body,
                                  content_type=_content_type or _JSON_PATCH, _request_timeout=_request_timeout)
        return node

    def patch_node_status(self, name: str, body: Any, *, _content_type: str | None = None,
                          _request_timeout: Timeout = None) -> V1Node:
        node: V1Node = self._call("PATCH", "/api/v1/nodes/{name}/status", "V1Node", path_params={"name": name},
                                  body=body, content_type=_content_type or _JSON_PATCH,
                                  _request_timeout=_request_timeout)
        return node

    # -- events ----------------------------------------------------------------------------------
    def create_namespaced_event(self, namespace: str, body: Any, *, _request_timeout: Timeout = None) -> CoreV1Event:
        event: CoreV1Event = self._call("POST", "/api/v1/namespaces/{namespace}/events", "CoreV1Event",
                                        path_params={"namespace": namespace}, body=body,
                                        _request_timeout=_request_timeout)
        return event
