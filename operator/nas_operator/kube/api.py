"""A small asynchronous Kubernetes API client on aiohttp.

The operator makes thousands of writes per minute at high parallelism; the
synchronous ``kubernetes`` client would need a thread per call and spends most
of its time deserialising into models. This client speaks JSON over one
connection pool in the operator's event loop, so an API call never blocks the
loop. Credentials come from kopf's ``ConnectionInfo`` (kubeconfig or
in-cluster), the same login kopf uses; an in-cluster token file is re-read as
the kubelet rotates it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

USER_AGENT = "kubenas-operator/0.1"
RETRY_CODES = frozenset({429, 500, 502, 503, 504})
PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


@dataclasses.dataclass(frozen=True)
class Resource:
    """A resource type: ``Resource("batch", "v1", "jobs")``; group "" is the core group."""

    group: str
    version: str
    plural: str

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        path = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        if namespace is not None:
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        if name is not None:
            path += f"/{name}"
        if subresource is not None:
            path += f"/{subresource}"
        return path

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


NASSEARCHES = Resource("kubenas.dev", "v1alpha1", "nassearches")
NASTRIALS = Resource("kubenas.dev", "v1alpha1", "nastrials")
JOBS = Resource("batch", "v1", "jobs")
PODS = Resource("", "v1", "pods")
CONFIGMAPS = Resource("", "v1", "configmaps")
SECRETS = Resource("", "v1", "secrets")
SERVICES = Resource("", "v1", "services")
EVENTS = Resource("", "v1", "events")


class ApiError(Exception):
    """A non-success answer of the API server (``code`` 404, 409, 422, ...)."""

    def __init__(self, code: int, reason: str, message: str):
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409


class KubeApi:
    """JSON requests to one API server; create it inside the event loop that uses it."""

    def __init__(
        self,
        server: str,
        *,
        token: str | None = None,
        token_file: str | None = None,
        scheme: str = "Bearer",
        basic_auth: tuple[str, str] | None = None,
        ssl_context: ssl.SSLContext | bool | None = None,
        connections: int = 64,
        retries: int = 5,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.server = server.rstrip("/")
        self._token = token
        self._token_file = token_file
        self._token_read = 0.0
        self._scheme = scheme
        self._basic = aiohttp.BasicAuth(*basic_auth) if basic_auth else None
        self._ssl = ssl_context
        self._retries = retries
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_connection_info(cls, info: Any, **kwargs: Any) -> KubeApi:
        """From a ``kopf.ConnectionInfo`` (what kopf's login handlers return)."""
        context: ssl.SSLContext | bool | None = None
        if info.server.startswith("https"):
            context = ssl.create_default_context(
                cafile=info.ca_path,
                cadata=info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data,
            )
            if info.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            cert, key = info.certificate_path, info.private_key_path
            if info.certificate_data is not None:
                cert = _temp_file(info.certificate_data)
            if info.private_key_data is not None:
                key = _temp_file(info.private_key_data)
            if cert:
                context.load_cert_chain(cert, key)
        token_file = kwargs.pop("token_file", None)
        basic = (info.username, info.password) if info.username and info.password else None
        return cls(info.server, token=info.token, token_file=token_file,
                   scheme=info.scheme or "Bearer", basic_auth=basic, ssl_context=context, **kwargs)

    # -- plumbing -----------------------------------------------------------------------
    def _auth_header(self) -> dict[str, str]:
        if self._token_file and time.monotonic() - self._token_read > 60:
            try:
                with open(self._token_file, encoding="utf-8") as fh:
                    self._token = fh.read().strip()
                self._token_read = time.monotonic()
            except OSError as exc:
                log.warning("cannot re-read the token file %s: %s", self._token_file, exc)
        return {"Authorization": f"{self._scheme} {self._token}"} if self._token else {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl
                                             if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(connector=connector, auth=self._basic,
                                                  headers=self._headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, body: Any = None,
                      params: Mapping[str, str] | None = None,
                      content_type: str = "application/json") -> Any:
        """One API call; retried on 429/5xx and broken connections; ApiError otherwise."""
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        delay = 0.1
        for attempt in range(self._retries + 1):
            headers = {"Content-Type": content_type, **self._auth_header()}
            try:
                async with self._client().request(method, self.server + path, data=data,
                                                  params=params, headers=headers) as response:
                    text = await response.text()
                    if response.status < 400:
                        return json.loads(text) if text else None
                    error = _api_error(response.status, text)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                error = ApiError(503, "ConnectionError", str(exc) or type(exc).__name__)
            if error.code not in RETRY_CODES or attempt == self._retries:
                raise error
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- verbs ----------------------------------------------------------------------------
    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        return await self.request("GET", resource.path(namespace, name))

    async def find(self, resource: Resource, namespace: str | None,
                   name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            return await self.get(resource, namespace, name)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def list(self, resource: Resource, namespace: str | None, *,
                   label_selector: str | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """Every matching object, following ``continue`` pages."""
        items: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": str(limit)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            page = await self.request("GET", resource.path(namespace), params=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    async def create(self, resource: Resource, namespace: str | None,
                     body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", resource.path(namespace), body=dict(body))

    async def patch(self, resource: Resource, namespace: str | None, name: str, patch: Any, *,
                    subresource: str | None = None, patch_type: str = "merge") -> dict[str, Any]:
        return await self.request("PATCH", resource.path(namespace, name, subresource), body=patch,
                                  content_type=PATCH_TYPES[patch_type])

    async def delete(self, resource: Resource, namespace: str | None, name: str, *,
                     propagation: str | None = "Background") -> bool:
        """Delete; False if it was already gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if propagation:
            body["propagationPolicy"] = propagation
        try:
            await self.request("DELETE", resource.path(namespace, name), body=body)
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return True


def _api_error(code: int, text: str) -> ApiError:
    try:
        status = json.loads(text)
    except ValueError:
        status = None
    if isinstance(status, dict):
        return ApiError(code, str(status.get("reason") or ""), str(status.get("message") or text))
    return ApiError(code, "", text[:500])


def _temp_file(data: bytes | str) -> str:
    """Write PEM data to a private temporary file (``ssl`` loads certificates from paths)."""
    raw = data.encode() if isinstance(data, str) else data
    fd, path = tempfile.mkstemp(prefix="kubenas-", suffix=".pem")
    with os.fdopen(fd, "wb") as fh:
        fh.write(raw)
    return path
