"""A thin Kubernetes API emulator for operator tests, built on kmock's KubernetesEmulator.

No kube-apiserver can be installed on the test machines (see docs/testing.md), so the
operator runs against kmock. kmock stores objects and serves discovery, but it
leaves out the API-server behaviour that kopf and our operator depend on. This
subclass fills exactly those gaps:

- every object gets ``uid``, ``creationTimestamp``, a cluster-wide monotonic
  ``resourceVersion`` (bumped on every real change, not on no-op writes) and
  ``generation`` (bumped on spec changes only, for custom resources and the
  ``apps``/``batch`` groups, as the real strategies do);
- ``generateName``; name, label and annotation validation (422/400 like the
  server), the 1 MiB data limit of ConfigMaps and Secrets;
- label selectors (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``)
  and field selectors (``metadata.name``, ``metadata.namespace`` and the few
  per-resource fields the server supports) on list and watch;
- the ``status`` subresource: writes to the main object keep the old status,
  writes to ``/status`` change nothing but status;
- merge, JSON and (for built-ins) strategic-merge patches, with a failed JSON
  patch ``test`` answered 422, and 409/404 answers with proper Status bodies;
- finalizers (``deletionTimestamp`` first, removal when the last one goes),
  ownerReference garbage collection (background cascade, transitive; Jobs
  deleted through the API orphan their Pods unless asked otherwise, as
  batch/v1 does), pruning of unknown fields when a CRD carries a schema;
- watches that honour ``resourceVersion`` (replay from an event log, ``410``
  ERROR when it is too old), ``timeoutSeconds`` and the initial-events
  bookmark; objects that stop or start matching a selector leave or enter
  the watch as DELETED/ADDED, as on a real server;
- a counter of API requests per (verb, resource, user agent), so tests and
  benchmarks can report API calls per trial.

Not emulated (and not needed so far): admission, RBAC, OpenAPI schema
validation and defaulting (only pruning), server-side apply, strategic merge
by list keys (lists are replaced), the Job controller's and the kubelet's work
(tests play them: they create Pods and write statuses, see KubeTestBed), Job
selector defaulting, graceful Pod termination (Pods go at once), foreground
deletion (treated as background; the garbage collector here runs at once, not
later), namespace lifecycle (objects may be created in namespaces that do not
exist), the etcd object size limit (only the ConfigMap/Secret 1 MiB and the
3 MiB request limits), and continue tokens that pin a snapshot.

The module also carries the pieces tests use: a plain aiohttp client
(:class:`KubeClient`), a runner that serves the emulator from its own thread
(:class:`EmulatorThread`) and the test bed that ties them to a real kopf
operator (:class:`KubeTestBed`, :func:`start_test_bed`).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import dataclasses
import datetime
import json
import logging
import pathlib
import random
import re
import signal
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp
import aiohttp.test_utils
import aiohttp.web
import aiohttp.web_server
import attrs
import jsonpatch
import jsonpointer
import kmock
import kopf
import yaml
from kmock._internal.rendering import StreamingError  # kmock's wrapper for failed live streams

GROUP = "kubenas.dev"
VERSION = "v1alpha1"
NASSEARCHES = f"{GROUP}/{VERSION}/nassearches"
NASTRIALS = f"{GROUP}/{VERSION}/nastrials"
PODS = "v1/pods"
CONFIGMAPS = "v1/configmaps"
SECRETS = "v1/secrets"
EVENTS = "v1/events"
SERVICES = "v1/services"
NAMESPACES = "v1/namespaces"
JOBS = "batch/v1/jobs"
LEASES = "coordination.k8s.io/v1/leases"
CRDS = "apiextensions.k8s.io/v1/customresourcedefinitions"

ALL_VERBS = frozenset({"list", "watch", "get", "create", "patch", "update", "delete", "deletecollection"})
TEST_USER_AGENT = "kubenas-tests"

# What kopf needs to see in discovery before it starts any watcher, plus what our operator uses.
REQUIRED_BUILTINS = (NAMESPACES, CRDS, PODS, CONFIGMAPS, SECRETS, EVENTS, SERVICES, JOBS, LEASES,
                     "events.k8s.io/v1/events")

# Fields that kube-apiserver accepts in field selectors, beyond metadata.name/namespace.
_FIELD_SELECTABLE: dict[str, dict[str, str]] = {
    "v1/pods": {
        "spec.nodeName": "spec.nodeName",
        "spec.restartPolicy": "spec.restartPolicy",
        "spec.schedulerName": "spec.schedulerName",
        "spec.serviceAccountName": "spec.serviceAccountName",
        "status.phase": "status.phase",
        "status.podIP": "status.podIP",
        "status.nominatedNodeName": "status.nominatedNodeName",
    },
    "v1/events": {
        **{f"involvedObject.{f}": f"involvedObject.{f}" for f in (
            "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": "reason",
        "reportingComponent": "reportingComponent",
        "source": "source.component",
        "type": "type",
    },
    "v1/secrets": {"type": "type"},
    "batch/v1/jobs": {"status.successful": "status.successful"},
}

# Groups whose objects carry metadata.generation (besides custom resources).
_GENERATION_GROUPS = frozenset({"apps", "batch"})

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's own alphabet
_DATA_LIMIT = 1024 * 1024  # ConfigMap and Secret payload limit
_REQUEST_LIMIT = 3 * 1024 * 1024  # kube-apiserver's request body limit (aiohttp's is 1 MiB)

logger = logging.getLogger(__name__)
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Errors as the API server reports them.
# --------------------------------------------------------------------------------------------

class ApiError(Exception):
    """An API answer that is not a success; rendered as a ``kind: Status`` body."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _res_name(res: kmock.resource) -> str:
    """``pods``, ``jobs.batch``, ``nassearches.kubenas.dev``: how the server names resources."""
    return f"{res.plural}.{res.group}" if res.group else str(res.plural)


def _not_found(res: kmock.resource, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{_res_name(res)} "{name}" not found',
                    {"name": name, "group": res.group, "kind": res.plural})


def _conflict(res: kmock.resource, name: str) -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {_res_name(res)} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": res.group, "kind": res.plural})


def _invalid(res: kmock.resource, name: str, message: str) -> ApiError:
    return ApiError(422, "Invalid", f'{_res_name(res)} "{name}" is invalid: {message}',
                    {"name": name, "group": res.group, "kind": res.plural})


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


# --------------------------------------------------------------------------------------------
# Paths, selectors, patches, schemas: small pure functions, tested on their own.
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ApiPath:
    """A parsed API URL; ``plural`` is None for discovery paths such as ``/apis/batch/v1``."""

    group: str | None
    version: str | None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath | None:
    """Split an API URL; unlike kmock's parser it understands ``/api/v1/namespaces[/NAME]``."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return None
    if parts[0] == "api":
        group: str | None = ""
        rest = parts[1:]
    else:
        group = parts[1] if len(parts) > 1 else None
        rest = parts[2:]
        if group is None:
            return None
    version = rest[0] if rest else None
    rest = rest[1:]
    if not rest:
        return ApiPath(group, version)
    namespace = None
    # /namespaces/NS/PLURAL... is a namespaced resource; /namespaces[/NAME[/status]] is namespaces.
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return ApiPath(group, version, plural, namespace, name, subresource)


@dataclasses.dataclass(frozen=True)
class Requirement:
    """One term of a label selector."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # "!=" and "notin"


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside ``in (...)`` value lists."""
    terms, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [t.strip() for t in terms if t.strip()]


_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse a selector the way kubectl writes it; anything else is a 400, as on the server."""
    requirements = []
    for term in _split_terms(text):
        if m := re.fullmatch(rf"(!?)\s*({_KEY})", term):
            requirements.append(Requirement(m[2], "!exists" if m[1] else "exists"))
        elif m := re.fullmatch(rf"({_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)", term):
            op = "!=" if m[2] == "!=" else "="
            requirements.append(Requirement(m[1], op, frozenset({m[3]})))
        elif m := re.fullmatch(rf"({_KEY})\s+(in|notin)\s*\(([^()]*)\)", term):
            values = frozenset(v.strip() for v in m[3].split(",") if v.strip())
            requirements.append(Requirement(m[1], m[2], values))
        else:
            raise _bad_request(f"unable to parse requirement: {term!r}")
    return requirements


def _lookup(obj: Mapping[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _field_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_field_selector(text: str, resource_key: str) -> list[tuple[str, str, str]]:
    """Parse a field selector into (object path, op, value); unsupported fields are a 400."""
    allowed = {"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace"}
    allowed |= _FIELD_SELECTABLE.get(resource_key, {})
    terms = []
    for term in _split_terms(text):
        m = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)", term)
        if not m:
            raise _bad_request(f"invalid selector: {term!r}")
        if m[1] not in allowed:
            raise _bad_request(f'field label not supported: {m[1]}')
        terms.append((allowed[m[1]], "!=" if m[2] == "!=" else "=", m[3]))
    return terms


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: nulls delete keys, non-objects replace, lists are replaced."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def prune(value: Any, schema: Mapping[str, Any] | None) -> Any:
    """Drop fields a structural schema does not declare, as the server does for custom resources."""
    if not isinstance(schema, Mapping):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields") is True
        result = {}
        for key, item in value.items():
            if properties is not None and key in properties:
                result[key] = prune(item, properties[key])
            elif isinstance(additional, Mapping):
                result[key] = prune(item, additional)
            elif preserve or additional is True:
                result[key] = item
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [prune(item, schema["items"]) for item in value]
    return value


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def crd_manifest(
        plural: str,
        kind: str,
        *,
        group: str = GROUP,
        version: str = VERSION,
        short_names: Sequence[str] = (),
        namespaced: bool = True,
        status: bool = True,
        schema: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A minimal CustomResourceDefinition; without a schema nothing is pruned."""
    names: dict[str, Any] = {"plural": plural, "singular": kind.lower(), "kind": kind,
                             "listKind": f"{kind}List", "categories": ["kubenas"]}
    if short_names:
        names["shortNames"] = list(short_names)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": names,
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [{
                "name": version,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": dict(schema) if schema is not None else
                           {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                "subresources": {"status": {}} if status else {},
            }],
        },
    }


def kubenas_crds() -> list[dict[str, Any]]:
    """The two kubenas CRDs as the operator tests need them (no schema: nothing pruned)."""
    return [
        crd_manifest("nassearches", "NASSearch", short_names=["nas"]),
        crd_manifest("nastrials", "NASTrial"),
    ]


def load_crd_manifests(path: str | pathlib.Path) -> list[dict[str, Any]]:
    """Read every CustomResourceDefinition from a YAML file or a folder of them (e.g. ``crds/``)."""
    path = pathlib.Path(path)
    files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
    docs: list[dict[str, Any]] = []
    for file in files:
        docs.extend(d for d in yaml.safe_load_all(file.read_text())
                    if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition")
    return docs


# --------------------------------------------------------------------------------------------
# The emulator.
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Change:
    rv: int
    resource: kmock.resource
    namespace: str | None
    type: str  # ADDED, MODIFIED, DELETED
    old: dict[str, Any] | None
    new: dict[str, Any]


@dataclasses.dataclass(eq=False)
class _Watcher:
    resource: kmock.resource
    namespace: str | None
    labels: list[Requirement]
    fields: list[tuple[str, str, str]]
    queue: asyncio.Queue[_Change | None]

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        return all((_field_text(_lookup(obj, path)) == value) == (op == "=")
                   for path, op, value in self.fields)


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API-server semantics our operator relies on (see module doc).

    All state changes are synchronous code on the emulator's event loop, so each
    request is atomic with respect to others and to watch subscription.
    """

    crds: Sequence[Mapping[str, Any]] | None = None  # None: the built-in kubenas CRDs
    history_limit: int = 10_000  # watch events kept for resourceVersion replays

    api_calls: collections.Counter[tuple[str, str, str]] = attrs.field(
        factory=collections.Counter, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _changes: collections.deque[_Change] = attrs.field(init=False)
    _floor_rv: int = attrs.field(default=0, init=False)
    _watchers: set[_Watcher] = attrs.field(factory=set, init=False)
    _uids: dict[str, tuple[kmock.resource, str | None, str]] = attrs.field(factory=dict, init=False)
    _orphaning: set[str] = attrs.field(factory=set, init=False)
    _owned: dict[str, dict[tuple[kmock.resource, str | None, str], None]] = attrs.field(
        factory=dict, init=False)
    """Owner uid -> keys of the live objects whose ownerReferences name it (an ordered set),
    so the garbage collector visits an owner's dependents, not every object ever stored."""
    _custom: dict[kmock.resource, Mapping[str, Any] | None] = attrs.field(factory=dict, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._changes = collections.deque(maxlen=self.history_limit)
        with warnings.catch_warnings():  # kmock 0.8 reads its bundle with a deprecated call
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        for builtin in REQUIRED_BUILTINS:  # fail loudly if kmock's bundle ever drops one
            if builtin not in self.resources:
                raise RuntimeError(f"kmock's bundled discovery lacks {builtin}")
        # Our handler goes ahead of kmock's own fallbacks (which would store objects naively),
        # but after any reaction a test adds, so fault injection through kmock's DSL still works.
        (self.fallback ** 1)[self._is_object_request] << self._serve_object
        for name in ("default", "kube-system", "kube-public"):
            self.create_object(NAMESPACES, {"metadata": {"name": name}})
        for crd in (self.crds if self.crds is not None else kubenas_crds()):
            self.register_crd(crd)

    # -- kmock plumbing ---------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Serve one HTTP request; replaces kmock's entry point only to parse paths correctly.

        kmock 0.8 raises on ``/api/v1/namespaces`` (kopf lists namespaces) and reads
        ``/api/v1/namespaces/NAME`` as a namespace without a resource, so the request is
        parsed here; error reporting follows kmock's (errors kept in ``self.errors``).
        """
        try:
            body = await raw_request.read()
        except aiohttp.web.HTTPRequestEntityTooLarge:
            too_large = ApiError(413, "RequestEntityTooLarge",
                                 f"Request entity too large: limit is {_REQUEST_LIMIT}")
            return aiohttp.web.json_response(too_large.status(), status=413)
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            request = self._parse_request(raw_request, body)
            self._requests.append(request)
            try:
                return await self._handle(request)
            except StreamingError as e:  # a stream failed after its headers went out
                raw_response = e.args[0]
                raise e.__cause__ or e from None
        except Exception as e:
            if not self._errors:
                raise
            self._errors[-1].append(e)
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(e)
            await self._stream_error(e, raw_response)
            await raw_response.write_eof()
            return raw_response

    def _parse_request(self, raw: aiohttp.web.BaseRequest, body: bytes) -> kmock.Request:
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        api = parse_api_path(raw.path)
        resource = None
        action = None
        if api is not None:
            # Keywords: positionally, kmock reads ("group", "v1alpha1", None) as group + plural.
            resource = kmock.resource(group=api.group, version=api.version, plural=api.plural)
            method = raw.method.upper()
            if method == "GET" and raw.query.get("watch") in ("true", "1"):
                action = kmock.action.WATCH
            elif method == "GET":
                action = kmock.action.FETCH if api.name else kmock.action.LIST
            elif method == "POST" and not api.name:
                action = kmock.action.CREATE
            elif method == "PATCH" and api.name:
                action = kmock.action.UPDATE
            elif method == "DELETE" and api.name:
                action = kmock.action.DELETE
        return kmock.Request(
            id=len(self._requests), raw_request=raw, url=raw.url, method=raw.method,
            params=dict(raw.query), headers=dict(raw.headers), cookies=dict(raw.cookies),
            body=body, text=body.decode("utf-8", "replace"), data=data, action=action,
            resource=resource, namespace=api.namespace if api else None,
            name=api.name if api else None, subresource=api.subresource if api else None,
        )

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if self._is_object_request(request):
            assert request.resource is not None
            verb = _verb(request)
            resource = _res_name(request.resource)
            if request.subresource:
                resource = f"{resource}/{request.subresource}"
            agent = request.headers.get("User-Agent", "").split("/")[0].split(" ")[0]
            self.api_calls[(verb, resource, agent)] += 1
        # Skip KubernetesEmulator._handle: it stores every write its own way before dispatching.
        return await kmock.RawHandler._handle(self, request)

    @staticmethod
    def _is_object_request(request: kmock.Request) -> bool:
        return request.resource is not None and request.resource.plural is not None

    def _serve_object(self, request: kmock.Request) -> Any:
        """The fallback for every object URL: run the API operation, answer like the server."""
        # Always answer with an explicit status: kmock keeps the last status on the reaction.
        try:
            result = self._dispatch(request)
        except ApiError as e:
            return kmock.Response(status=e.code, payload=e.status())
        return result if isinstance(result, kmock.Response) else kmock.Response(status=200, payload=result)

    # -- public API for tests (call on the emulator's loop; see EmulatorThread.call) ----------
    # Named *_object: kmock's handler already has get/patch/delete as HTTP client shortcuts.

    def register_crd(self, crd: Mapping[str, Any]) -> None:
        """Serve a CustomResourceDefinition's resources and store the CRD object itself."""
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            res = kmock.resource(spec["group"], version["name"], names["plural"])
            subresources = set(version.get("subresources") or {})
            self.resources[res] = kmock.ResourceInfo(
                kind=names["kind"], singular=names.get("singular", names["kind"].lower()),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced", verbs=set(ALL_VERBS),
                shortnames=set(names.get("shortNames", [])), categories=set(names.get("categories", [])),
                subresources=subresources)
            self._custom[res] = (version.get("schema") or {}).get("openAPIV3Schema")
        body = copy.deepcopy(dict(crd))
        body["status"] = {"acceptedNames": names, "storedVersions": [v["name"] for v in spec["versions"]],
                          "conditions": [{"type": t, "status": "True", "lastTransitionTime": _now()}
                                         for t in ("NamesAccepted", "Established")]}
        key = (kmock.resource(CRDS), None, crd["metadata"]["name"])
        if key in self._objects and not self._objects[key].deleted:
            return
        created = self.create_object(CRDS, body)
        # A CRD's status is set by the apiextensions controller, not by the creator.
        self.patch_object(CRDS, None, created["metadata"]["name"], {"status": body["status"]}, subresource="status")

    def read_object(self, resource: str | kmock.resource, namespace: str | None, name: str) -> dict[str, Any]:
        res, _ = self._resource(resource)
        return copy.deepcopy(self._live(res, namespace, name)[1])

    def find_object(self, resource: str | kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or None: for tests that wait for something to appear or go."""
        try:
            return self.read_object(resource, namespace, name)
        except ApiError:
            return None

    def list_objects(self, resource: str | kmock.resource, namespace: str | None = None, *,
             label_selector: str = "", field_selector: str = "") -> list[dict[str, Any]]:
        res, info = self._resource(resource)
        result = self._list(res, info, namespace, label_selector, field_selector, None, None)
        return copy.deepcopy(result["items"])

    def create_object(self, resource: str | kmock.resource, body: Mapping[str, Any],
               namespace: str | None = None) -> dict[str, Any]:
        res, info = self._resource(resource)
        namespace = (namespace or body.get("metadata", {}).get("namespace")) if info.namespaced else None
        return copy.deepcopy(self._create(res, info, namespace, copy.deepcopy(dict(body))))

    def patch_object(self, resource: str | kmock.resource, namespace: str | None, name: str,
              patch: Mapping[str, Any] | Sequence[Mapping[str, Any]], *,
              subresource: str | None = None) -> dict[str, Any]:
        """Merge-patch (a dict) or JSON-patch (a list), with the server's rules for status."""
        res, info = self._resource(resource)
        ctype = "application/json-patch+json" if isinstance(patch, Sequence) else "application/merge-patch+json"
        return copy.deepcopy(self._patch(res, info, namespace, name, subresource, ctype, patch))

    def delete_object(self, resource: str | kmock.resource, namespace: str | None, name: str, *,
               propagation: str | None = None) -> dict[str, Any]:
        res, info = self._resource(resource)
        return copy.deepcopy(self._delete(res, info, namespace, name, propagation, None))

    def count_calls(self, verb: str | None = None, resource: str | None = None, *,
                    user_agent: str | None = None, exclude_user_agent: str | None = None) -> int:
        """API requests served, by verb (``patch``), resource (``jobs.batch``, ``pods/status``)."""
        return sum(n for (v, r, a), n in self.api_calls.items()
                   if (verb is None or v == verb) and (resource is None or r == resource)
                   and (user_agent is None or a == user_agent)
                   and (exclude_user_agent is None or a != exclude_user_agent))

    def close_watches(self) -> None:
        """End every open watch stream (before shutdown, so the server does not wait on them)."""
        self._closed = True
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)

    @property
    def resource_version(self) -> int:
        return self._rv

    # -- dispatch ------------------------------------------------------------------------------

    def _resource(self, resource: str | kmock.resource) -> tuple[kmock.resource, kmock.ResourceInfo]:
        res = resource if isinstance(resource, kmock.resource) else kmock.resource(resource)
        if res not in self.resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return res, self.resources[res]

    def _dispatch(self, request: kmock.Request) -> Any:
        assert request.resource is not None
        res, info = self._resource(request.resource)
        namespace, name, sub = request.namespace, request.name, request.subresource
        if namespace is not None and not info.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub is not None and (sub != "status" or "status" not in info.subresources):
            raise ApiError(404, "NotFound", f"the subresource {sub!r} is not served (or not emulated)")
        params = request.params
        method = request.method.value.upper()
        if method == "GET":
            labels, fields = params.get("labelSelector", ""), params.get("fieldSelector", "")
            if params.get("watch") in ("true", "1"):
                if name is not None:  # the legacy per-object watch URL
                    fields = ",".join(filter(None, [fields, f"metadata.name={name}"]))
                return self._watch(res, info, namespace, labels, fields, params)
            if name is not None:
                return self._live(res, namespace, name)[1]
            try:
                limit = int(params.get("limit") or 0) or None
            except ValueError:
                raise _bad_request(f"invalid limit: {params['limit']!r}") from None
            return self._list(res, info, namespace, labels, fields, limit, params.get("continue"))
        if name is None and method == "POST":
            if info.namespaced and namespace is None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            body = self._json_body(request)
            if not isinstance(body, dict):
                raise _bad_request("the request body must be a JSON object")
            return kmock.Response(status=201, payload=self._create(res, info, namespace, body))
        if name is None and method == "DELETE":
            return self._delete_collection(res, info, namespace, params)
        if name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if method == "PATCH":
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
            return self._patch(res, info, namespace, name, sub, ctype, self._json_body(request))
        if method == "PUT":
            body = self._json_body(request)
            if not isinstance(body, dict):
                raise _bad_request("the request body must be a JSON object")
            return self._replace(res, info, namespace, name, sub, body)
        if method == "DELETE":
            options = self._json_body(request) if request.body else {}
            options = options if isinstance(options, dict) else {}
            policy = params.get("propagationPolicy") or options.get("propagationPolicy")
            if options.get("orphanDependents") is True or params.get("orphanDependents") == "true":
                policy = "Orphan"
            return self._delete(res, info, namespace, name, policy, options.get("preconditions"))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def _json_body(request: kmock.Request) -> Any:
        try:
            return json.loads(request.body)
        except ValueError as e:
            raise _bad_request(f"the request body is not valid JSON: {e}") from None

    # -- reads -----------------------------------------------------------------------------------

    def _live(self, res: kmock.resource, namespace: str | None, name: str,
              ) -> tuple[tuple[kmock.resource, str | None, str], dict[str, Any]]:
        key = (res, namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            raise _not_found(res, name)
        return key, self._objects[key].last.raw

    def _live_objects(self, res: kmock.resource, namespace: str | None) -> list[dict[str, Any]]:
        found = [(ns or "", name, obj.last.raw) for (r, ns, name), obj in self._objects.items()
                 if r == res and not obj.deleted and (namespace is None or ns == namespace)]
        return [obj for _, _, obj in sorted(found, key=lambda t: (t[0], t[1]))]

    def _list(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None,
              label_selector: str, field_selector: str, limit: int | None,
              continue_token: str | None) -> dict[str, Any]:
        watcher = self._matcher(res, namespace, label_selector, field_selector)
        items = [obj for obj in self._live_objects(res, namespace) if watcher.matches(obj)]
        start = 0
        if continue_token:
            try:
                start = int(base64.urlsafe_b64decode(continue_token.encode()).decode())
            except ValueError:
                raise ApiError(410, "Expired", "the provided continue parameter is too old") from None
        metadata: dict[str, Any] = {"resourceVersion": str(self._rv)}
        page = items[start:]
        if limit is not None and len(page) > limit:
            page = page[:limit]
            metadata["continue"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            metadata["remainingItemCount"] = len(items) - start - limit
        return {"apiVersion": _api_version(res), "kind": f"{info.kind}List", "metadata": metadata,
                "items": page}

    def _matcher(self, res: kmock.resource, namespace: str | None, label_selector: str,
                 field_selector: str) -> _Watcher:
        return _Watcher(res, namespace, parse_label_selector(label_selector or ""),
                        parse_field_selector(field_selector or "", _resource_key(res)), asyncio.Queue())

    # -- watches ---------------------------------------------------------------------------------

    def _watch(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None,
               label_selector: str, field_selector: str, params: Mapping[str, str]) -> kmock.Response:
        """Subscribe now (synchronously, so no change slips between snapshot and stream)."""
        watcher = self._matcher(res, namespace, label_selector, field_selector)
        since = params.get("resourceVersion") or ""
        initial_events = params.get("sendInitialEvents") == "true"
        try:
            timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        except ValueError:
            raise _bad_request(f"invalid timeoutSeconds: {params['timeoutSeconds']!r}") from None
        backlog: list[dict[str, Any]] = []
        if since in ("", "0") or initial_events:
            backlog = [{"type": "ADDED", "object": obj} for obj in self._live_objects(res, namespace)
                       if watcher.matches(obj)]
            if initial_events and params.get("allowWatchBookmarks") == "true":
                backlog.append({"type": "BOOKMARK", "object": {
                    "kind": info.kind, "apiVersion": _api_version(res),
                    "metadata": {"resourceVersion": str(self._rv),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}})
        else:
            try:
                since_rv = int(since)
            except ValueError:
                raise _bad_request(f"invalid resource version: {since!r}") from None
            if since_rv < self._floor_rv:
                gone = ApiError(410, "Expired", f"too old resource version: {since_rv} ({self._floor_rv})")
                return kmock.Response(status=200, headers={"Content-Type": "application/json"},
                                      payload=_single_event({"type": "ERROR", "object": gone.status()}))
            for change in self._changes:
                if change.rv > since_rv and change.resource == res and (
                        namespace is None or change.namespace == namespace):
                    if event := _as_seen_by(change, watcher):
                        backlog.append(event)
        self._watchers.add(watcher)
        return kmock.Response(status=200, headers={"Content-Type": "application/json"},
                              payload=self._stream(watcher, backlog, timeout))

    async def _stream(self, watcher: _Watcher, backlog: list[dict[str, Any]],
                      timeout: float | None) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            yield b""  # send the headers now: clients wait for them before reading events
            for event in backlog:
                yield event
            while not self._closed:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    change = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    return
                if change is None:
                    return
                if event := _as_seen_by(change, watcher):
                    yield event
        finally:
            self._watchers.discard(watcher)

    def _emit(self, res: kmock.resource, type_: str, old: dict[str, Any] | None,
              new: dict[str, Any]) -> None:
        change = _Change(int(new["metadata"]["resourceVersion"]), res,
                         new["metadata"].get("namespace"), type_, old, new)
        if len(self._changes) == self._changes.maxlen:
            self._floor_rv = self._changes[0].rv
        self._changes.append(change)
        for watcher in list(self._watchers):
            if watcher.resource == res and (watcher.namespace is None or watcher.namespace == change.namespace):
                watcher.queue.put_nowait(change)

    # -- writes ----------------------------------------------------------------------------------

    def _create(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None,
                body: dict[str, Any]) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise _bad_request("metadata must be an object")
        api_version, kind = _api_version(res), info.kind
        if body.get("kind", kind) != kind or body.get("apiVersion", api_version) != api_version:
            raise _bad_request(f"the object is {body.get('apiVersion')}/{body.get('kind')}, "
                               f"not {api_version}/{kind} as the URL says")
        if info.namespaced:
            if meta.get("namespace", namespace) != namespace:
                raise _bad_request("the namespace of the provided object does not match the "
                                   "namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        name = meta.get("name")
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise _invalid(res, "", "metadata.name: Required value: name or generateName is required")
            for _ in range(100):
                name = prefix + "".join(random.choices(_GENERATE_NAME_ALPHABET, k=5))
                if (res, namespace, name) not in self._objects or self._objects[res, namespace, name].deleted:
                    break
            meta["name"] = name
        key = (res, namespace, name)
        if key in self._objects and not self._objects[key].deleted:
            raise ApiError(409, "AlreadyExists", f'{_res_name(res)} "{name}" already exists',
                           {"name": name, "group": res.group, "kind": res.plural})
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "managedFields"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        if self._tracks_generation(res):
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if "status" in info.subresources:
            # Create cannot set status: custom resources drop it, built-ins start from their own.
            body.pop("status", None)
            if res == kmock.resource(NAMESPACES):
                body["status"] = {"phase": "Active"}
            elif res == kmock.resource(PODS):
                body["status"] = {"phase": "Pending"}
            elif res not in self._custom:
                body["status"] = {}
        body = {"apiVersion": api_version, "kind": kind, **body}
        body = self._validated(res, body)
        self._rv += 1
        meta = body["metadata"]
        meta["resourceVersion"] = str(self._rv)
        if key in self._objects:
            self._objects[key].create(body)
        else:
            self._objects[key] = body
        self._uids[meta["uid"]] = key
        self._index_owners(key, None, body)
        self._emit(res, "ADDED", None, body)
        return body

    def _patch(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None, name: str,
               sub: str | None, content_type: str, patch: Any) -> dict[str, Any]:
        key, current = self._live(res, namespace, name)
        if content_type == "application/json-patch+json":
            if not isinstance(patch, list):
                raise _bad_request("a JSON patch must be a list of operations")
            try:
                candidate = jsonpatch.apply_patch(current, patch, in_place=False)
            except jsonpatch.JsonPatchTestFailed as e:
                raise _invalid(res, name, f"the JSON patch test failed: {e}") from None
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                raise _invalid(res, name, f"the JSON patch does not apply: {e}") from None
        elif content_type == "application/merge-patch+json" or (
                content_type == "application/strategic-merge-patch+json" and res not in self._custom):
            # Strategic merge on built-ins is approximated: lists are replaced, not merged by key.
            if not isinstance(patch, dict):
                raise _bad_request("a merge patch must be a JSON object")
            candidate = merge_patch(current, patch)
        else:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format - accepted media types "
                           f"include: application/json-patch+json, application/merge-patch+json"
                           f"{'' if res in self._custom else ', application/strategic-merge-patch+json'}")
        if not isinstance(candidate, dict):
            raise _bad_request("the patched object is not a JSON object")
        return self._update(res, info, key, current, candidate, sub)

    def _replace(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None, name: str,
                 sub: str | None, body: dict[str, Any]) -> dict[str, Any]:
        key, current = self._live(res, namespace, name)
        body_meta = body.get("metadata") or {}
        if body_meta.get("name", name) != name:
            raise _bad_request(f"the name of the object ({body_meta.get('name')}) does not match "
                               f"the name on the URL ({name})")
        if not body_meta.get("resourceVersion") and res in self._custom:
            raise _invalid(res, name, "metadata.resourceVersion: Invalid value: 0x0: must be "
                                      "specified for an update")
        return self._update(res, info, key, current, copy.deepcopy(body), sub)

    def _update(self, res: kmock.resource, info: kmock.ResourceInfo,
                key: tuple[kmock.resource, str | None, str], current: dict[str, Any],
                candidate: dict[str, Any], sub: str | None) -> dict[str, Any]:
        name = key[2]
        meta = candidate.get("metadata")
        if not isinstance(meta, dict):
            raise _bad_request("metadata must be an object")
        if meta.get("resourceVersion") not in (None, current["metadata"]["resourceVersion"]):
            raise _conflict(res, name)
        if meta.get("name", name) != name or meta.get("namespace", key[1]) != key[1]:
            raise _bad_request("the name or namespace of the object does not match the URL")
        if sub == "status":
            # The status endpoint changes the status and nothing else.
            new = copy.deepcopy(current)
            if "status" in candidate:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(candidate)
            if "status" in info.subresources:
                # The main endpoint ignores status when a status subresource exists.
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
            new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
            new_meta = new["metadata"]
            old_meta = current["metadata"]
            for field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation"):
                if field in old_meta:
                    new_meta[field] = old_meta[field]
                else:
                    new_meta.pop(field, None)
            if old_meta.get("deletionTimestamp"):
                added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise _invalid(res, name, "metadata.finalizers: Forbidden: no new finalizers can be "
                                              "added if the object is being deleted")
            spec_old = {k: v for k, v in current.items() if k not in ("metadata", "status")}
            spec_new = {k: v for k, v in new.items() if k not in ("metadata", "status")}
            if "generation" in old_meta and spec_old != spec_new:
                new_meta["generation"] = old_meta["generation"] + 1
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        new = self._validated(res, new)
        return self._commit(res, key, current, new)

    def _commit(self, res: kmock.resource, key: tuple[kmock.resource, str | None, str],
                old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """Store a new version of an existing object; a no-op write changes nothing."""
        if new == old:
            return old
        self._rv += 1
        new["metadata"]["resourceVersion"] = str(self._rv)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._remove(res, key, old, new)
        self._objects[key].history.append(new)
        self._index_owners(key, old, new)
        self._emit(res, "MODIFIED", old, new)
        return new

    def _index_owners(self, key: tuple[kmock.resource, str | None, str],
                      old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """Keep ``_owned`` in step with one object's change from ``old`` to ``new``."""
        def owners(obj: dict[str, Any] | None) -> set[str]:
            refs = (obj or {}).get("metadata", {}).get("ownerReferences") or []
            return {ref["uid"] for ref in refs if isinstance(ref, dict) and ref.get("uid")}

        before, after = owners(old), owners(new)
        for uid in before - after:
            keys = self._owned.get(uid)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del self._owned[uid]
        for uid in after - before:
            self._owned.setdefault(uid, {})[key] = None

    def _delete(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None, name: str,
                policy: str | None, preconditions: Mapping[str, Any] | None) -> dict[str, Any]:
        key, current = self._live(res, namespace, name)
        meta = current["metadata"]
        for field in ("uid", "resourceVersion"):
            if preconditions and preconditions.get(field) not in (None, meta[field]):
                raise _conflict(res, name)
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise _bad_request(f"invalid propagationPolicy: {policy!r}")
        if policy is None:
            # batch/v1 Jobs orphan their Pods by default (kept for compatibility by the server).
            policy = "Orphan" if res == kmock.resource(JOBS) else "Background"
        if policy == "Orphan":
            self._orphaning.add(meta["uid"])
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return current
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if "generation" in meta:
                new["metadata"]["generation"] = meta["generation"] + 1
            return self._commit(res, key, current, new)
        self._rv += 1
        final = copy.deepcopy(current)
        final["metadata"]["resourceVersion"] = str(self._rv)
        return self._remove(res, key, current, final)

    def _delete_collection(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None,
                           params: Mapping[str, str]) -> dict[str, Any]:
        matcher = self._matcher(res, namespace, params.get("labelSelector", ""), params.get("fieldSelector", ""))
        items = [self._delete(res, info, obj["metadata"].get("namespace"), obj["metadata"]["name"],
                              params.get("propagationPolicy"), None)
                 for obj in self._live_objects(res, namespace) if matcher.matches(obj)]
        return {"apiVersion": _api_version(res), "kind": f"{info.kind}List",
                "metadata": {"resourceVersion": str(self._rv)}, "items": items}

    def _remove(self, res: kmock.resource, key: tuple[kmock.resource, str | None, str],
                old: dict[str, Any], final: dict[str, Any]) -> dict[str, Any]:
        """Really delete: emit DELETED with the final state, then collect the dependents."""
        obj = self._objects[key]
        obj.history.append(final)
        obj.delete()
        uid = final["metadata"]["uid"]
        self._uids.pop(uid, None)
        self._index_owners(key, old, None)
        self._emit(res, "DELETED", old, final)
        orphan = uid in self._orphaning
        self._orphaning.discard(uid)
        self._collect_dependents(uid, orphan)
        return final

    def _collect_dependents(self, owner_uid: str, orphan: bool) -> None:
        """What the garbage collector does once an owner is gone (synchronously here)."""
        for key in list(self._owned.get(owner_uid, ())):
            if key not in self._objects or self._objects[key].deleted:
                continue
            obj = self._objects[key]
            current = obj.last.raw
            refs = current["metadata"].get("ownerReferences") or []
            if not any(ref.get("uid") == owner_uid for ref in refs):
                continue
            remaining = [ref for ref in refs if ref.get("uid") != owner_uid]
            if orphan or any(ref.get("uid") in self._uids for ref in remaining):
                new = copy.deepcopy(current)
                if remaining:
                    new["metadata"]["ownerReferences"] = remaining
                else:
                    del new["metadata"]["ownerReferences"]
                self._commit(key[0], key, current, new)
            elif not current["metadata"].get("deletionTimestamp"):
                res = key[0]
                self._delete(res, self.resources[res], key[1], key[2], "Background", None)

    # -- validation ------------------------------------------------------------------------------

    def _tracks_generation(self, res: kmock.resource) -> bool:
        return res in self._custom or res.group in _GENERATION_GROUPS

    def _validated(self, res: kmock.resource, body: dict[str, Any]) -> dict[str, Any]:
        """The server's checks that tests can trip over; prunes custom resources by schema."""
        meta = body["metadata"]
        name = meta.get("name", "")
        pattern, limit = _DNS1123_SUBDOMAIN, 253
        if res in (kmock.resource(NAMESPACES), kmock.resource(JOBS)):
            pattern, limit = _DNS1123_LABEL, 63
        elif res == kmock.resource(SERVICES):
            pattern, limit = _DNS1035_LABEL, 63
        if len(name) > limit or not pattern.fullmatch(name):
            raise _invalid(res, name, f"metadata.name: Invalid value: {name!r}: must be a lowercase "
                                      f"RFC 1123 name of at most {limit} characters")
        for field in ("labels", "annotations"):
            values = meta.get(field)
            if values is None:
                continue
            if not isinstance(values, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
                raise _bad_request(f"metadata.{field} must map strings to strings")
            for label_key in values:
                prefix, _, key_name = label_key.rpartition("/")
                if (len(key_name) > 63 or not _LABEL_NAME.fullmatch(key_name)
                        or (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)))):
                    raise _invalid(res, name, f"metadata.{field}: Invalid value: {label_key!r}: "
                                              "not a qualified name")
        for label_value in (meta.get("labels") or {}).values():
            if len(label_value) > 63 or not _LABEL_VALUE.fullmatch(label_value):
                raise _invalid(res, name, f"metadata.labels: Invalid value: {label_value!r}: must be "
                                          "63 characters or less, alphanumerics with -_. inside")
        annotation_size = sum(len(k) + len(v) for k, v in (meta.get("annotations") or {}).items())
        if annotation_size > 256 * 1024:
            raise _invalid(res, name, "metadata.annotations: Too long: must have at most 262144 bytes")
        if res in (kmock.resource(CONFIGMAPS), kmock.resource(SECRETS)):
            body = _data_checked(res, name, body)
        schema = self._custom.get(res)
        if schema is not None:
            pruned = prune({k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")},
                           schema)
            body = {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": meta, **pruned}
        return body


def _data_checked(res: kmock.resource, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Fold a Secret's stringData into data and enforce the 1 MiB payload limit."""
    secret = res == kmock.resource(SECRETS)
    if secret and body.get("stringData"):
        data = dict(body.get("data") or {})
        for key, value in body["stringData"].items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        body = {k: v for k, v in body.items() if k != "stringData"} | {"data": data}
    for field in ("data", "binaryData", "stringData"):
        values = body.get(field) or {}
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise _bad_request(f"{field} must map keys to strings")
    size = 0
    blobs = list((body.get("binaryData") or {}).items())
    if secret:
        blobs += list((body.get("data") or {}).items())
    else:
        size += sum(len(k) + len(str(v).encode()) for k, v in (body.get("data") or {}).items())
    for key, value in blobs:
        try:
            size += len(key) + len(base64.b64decode(value, validate=True))
        except (ValueError, TypeError):
            raise _bad_request(f"the value of {key!r} is not valid base64") from None
    if size > _DATA_LIMIT:
        raise _invalid(res, name, f"[]: Too long: must have at most {_DATA_LIMIT} bytes")
    return body


def _verb(request: kmock.Request) -> str:
    method = request.method.value.upper()
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    if method == "DELETE" and not request.name:
        return "deletecollection"
    return {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method, method.lower())


def _api_version(res: kmock.resource) -> str:
    return f"{res.group}/{res.version}" if res.group else str(res.version)


def _resource_key(res: kmock.resource) -> str:
    return f"{_api_version(res)}/{res.plural}"


def _as_seen_by(change: _Change, watcher: _Watcher) -> dict[str, Any] | None:
    """The event a watcher with selectors sees: objects enter and leave the selection."""
    new_ok = watcher.matches(change.new)
    old_ok = change.old is not None and watcher.matches(change.old)
    if change.type == "DELETED":
        return {"type": "DELETED", "object": change.new} if (old_ok or new_ok) else None
    if change.type == "ADDED" or not old_ok:
        return {"type": "ADDED", "object": change.new} if new_ok else None
    return {"type": "MODIFIED" if new_ok else "DELETED", "object": change.new}


async def _single_event(event: dict[str, Any]) -> AsyncIterator[Any]:
    yield b""
    yield event


# --------------------------------------------------------------------------------------------
# A plain aiohttp client for tests (the operator under test brings its own).
# --------------------------------------------------------------------------------------------

class ApiStatusError(Exception):
    """A non-2xx answer seen by :class:`KubeClient`; ``status`` is the Status body."""

    def __init__(self, code: int, status: Any):
        message = status.get("message") if isinstance(status, dict) else status
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status
        self.reason = status.get("reason") if isinstance(status, dict) else None


def resource_path(resource: str, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    """The URL path of a resource (``batch/v1/jobs``, ``v1/pods``) in a namespace or cluster-wide."""
    res = kmock.resource(resource)
    if res.plural is None or res.version is None or res.group is None:
        raise ValueError(f"need group/version/plural, got {resource!r}")
    path = f"/api/{res.version}" if res.group == "" else f"/apis/{res.group}/{res.version}"
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{res.plural}"
    if name is not None:
        path += f"/{name}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


class KubeClient:
    """A small async client over plain aiohttp, for tests that act as users or controllers.

    Its requests carry the User-Agent ``kubenas-tests`` so that API-call counts
    can tell them from the operator's own.
    """

    def __init__(self, base_url: str, session: aiohttp.ClientSession):
        self.base_url = base_url.rstrip("/")
        self.session = session

    async def request(self, method: str, path: str, *, json_body: Any = None,
                      params: Mapping[str, str] | None = None,
                      content_type: str = "application/json") -> Any:
        data = None if json_body is None else json.dumps(json_body)
        headers = {"Content-Type": content_type, "User-Agent": TEST_USER_AGENT}
        async with self.session.request(method, self.base_url + path, data=data, params=params,
                                        headers=headers) as response:
            text = await response.text()
            payload = json.loads(text) if text else None
            if response.status >= 400:
                raise ApiStatusError(response.status, payload)
            return payload

    async def get(self, resource: str, name: str, namespace: str | None = "default") -> dict[str, Any]:
        return await self.request("GET", resource_path(resource, namespace, name))

    async def find(self, resource: str, name: str, namespace: str | None = "default") -> dict[str, Any] | None:
        try:
            return await self.get(resource, name, namespace)
        except ApiStatusError as e:
            if e.code == 404:
                return None
            raise

    async def list_objects(self, resource: str, namespace: str | None = "default", *,
                   label_selector: str | None = None, field_selector: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"labelSelector": label_selector, "fieldSelector": field_selector}.items() if v}
        return (await self.request("GET", resource_path(resource, namespace), params=params))["items"]

    async def create(self, resource: str, body: Mapping[str, Any], namespace: str | None = "default") -> dict[str, Any]:
        return await self.request("POST", resource_path(resource, namespace), json_body=body)

    async def patch(self, resource: str, name: str, patch: Any, namespace: str | None = "default", *,
                    subresource: str | None = None, patch_type: str = "merge") -> dict[str, Any]:
        """``patch_type``: merge, json, or strategic (built-ins only, as on a real server)."""
        ctype = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
                 "strategic": "application/strategic-merge-patch+json"}[patch_type]
        return await self.request("PATCH", resource_path(resource, namespace, name, subresource),
                                  json_body=patch, content_type=ctype)

    async def replace(self, resource: str, name: str, body: Mapping[str, Any], namespace: str | None = "default",
                      *, subresource: str | None = None) -> dict[str, Any]:
        return await self.request("PUT", resource_path(resource, namespace, name, subresource), json_body=body)

    async def delete(self, resource: str, name: str, namespace: str | None = "default", *,
                     propagation: str | None = None) -> dict[str, Any]:
        body = {"propagationPolicy": propagation} if propagation else None
        return await self.request("DELETE", resource_path(resource, namespace, name), json_body=body)

    @contextlib.asynccontextmanager
    async def watch(self, resource: str, namespace: str | None = "default",
                    **params: str) -> AsyncIterator[WatchStream]:
        """Open a watch; once entered, the server has subscribed it (its headers arrived)."""
        query = {"watch": "true", **params}
        async with self.session.get(self.base_url + resource_path(resource, namespace), params=query,
                                    headers={"User-Agent": TEST_USER_AGENT}) as response:
            if response.status >= 400:
                raise ApiStatusError(response.status, await response.json(content_type=None))
            yield WatchStream(response)


class WatchStream:
    """Events of an open watch, one at a time, with a timeout so a test cannot hang."""

    def __init__(self, response: aiohttp.ClientResponse):
        self.response = response

    async def next(self, timeout: float = 5) -> dict[str, Any] | None:
        """The next event, or None when the server ended the stream."""
        while True:
            line = await asyncio.wait_for(self.response.content.readline(), timeout)
            if not line:
                return None
            if line.strip():
                return json.loads(line)

    async def quiet(self, seconds: float = 0.2) -> bool:
        """True if no event arrives within ``seconds`` (for 'nothing else happens' checks)."""
        try:
            event = await self.next(timeout=seconds)
        except TimeoutError:
            return True
        return event is None


# --------------------------------------------------------------------------------------------
# Serving from a thread, and the test bed around a kopf operator.
# --------------------------------------------------------------------------------------------

class _ApiTestServer(aiohttp.test_utils.RawTestServer):
    """aiohttp's raw test server, accepting bodies up to the API server's limit."""

    async def _make_runner(self, debug: bool = True, **kwargs: Any) -> aiohttp.web.ServerRunner:
        server = aiohttp.web_server.Server(self._handler, loop=self._loop, debug=debug, **kwargs)

        def make_request(*args: Any) -> aiohttp.web.BaseRequest:
            return aiohttp.web.BaseRequest(*args, server._loop, client_max_size=_REQUEST_LIMIT)

        server.request_factory = make_request
        return aiohttp.web.ServerRunner(server, debug=debug, **kwargs)


class EmulatorThread:
    """Serve a :class:`KubeEmulator` on 127.0.0.1 from its own thread and event loop.

    Own loop, because kopf's shutdown cancels every task of its loop that it did
    not see at start-up (``run_tasks``' "hung tasks"), which would include the
    server's request handlers, and because a blocking client call in the test's
    loop must not freeze the server.
    """

    def __init__(self, emulator: KubeEmulator):
        self.emulator = emulator
        self.url = ""
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="kube-emulator", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None

    def start(self, timeout: float = 10) -> str:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the emulator did not start")
        if self._failure is not None:
            raise self._failure
        return self.url

    def stop(self, timeout: float = 10) -> None:
        if self.loop is not None and self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the emulator thread did not stop")

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the emulator's loop (where its state lives) from any other loop."""
        assert self.loop is not None

        async def run() -> T:
            return fn(*args, **kwargs)

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self.loop))

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as e:  # reported to start(); the thread must not die silently
            self._failure = e
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator, user_agent="", server_cls=_ApiTestServer) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()
            self.emulator.close_watches()
            await asyncio.sleep(0.05)  # let the streams see the end and close


def kubenas_settings() -> kopf.OperatorSettings:
    """kopf settings with our own prefix for finalizers and annotations, tuned for fast tests."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.watching.reconnect_backoff = 0.1
    settings.posting.level = logging.INFO
    return settings


@dataclasses.dataclass
class RunningOperator:
    """A kopf operator started by :meth:`KubeTestBed.operator`."""

    task: asyncio.Task[None]
    settings: kopf.OperatorSettings
    stop_flag: asyncio.Event

    @property
    def running(self) -> bool:
        return not self.task.done()


class KubeTestBed:
    """The emulator on a random port plus what operator tests need around it."""

    def __init__(self, server: EmulatorThread, session: aiohttp.ClientSession):
        self.server = server
        self.url = server.url
        self.emulator = server.emulator
        self.client = KubeClient(self.url, session)

    # -- connecting ------------------------------------------------------------------------------

    def connection_info(self) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=self.url, default_namespace="default")

    async def login(self, **_: Any) -> kopf.ConnectionInfo:
        """A ``@kopf.on.login`` handler pointing kopf at the emulator."""
        return self.connection_info()

    def kubernetes_configuration(self) -> Any:
        """A configuration for the sync ``kubernetes`` client; call that client only in threads."""
        import kubernetes

        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return configuration

    # -- direct store access (no HTTP, not counted, still emits watch events) -------------------

    async def read(self, resource: str, name: str, namespace: str | None = "default") -> dict[str, Any] | None:
        return await self.server.call(self.emulator.find_object, resource, namespace, name)

    async def read_all(self, resource: str, namespace: str | None = "default", *,
                       label_selector: str = "", field_selector: str = "") -> list[dict[str, Any]]:
        return await self.server.call(self.emulator.list_objects, resource, namespace,
                                      label_selector=label_selector, field_selector=field_selector)

    async def put(self, resource: str, body: Mapping[str, Any], namespace: str | None = "default") -> dict[str, Any]:
        """Create an object as another controller would (e.g. the Pods of a Job)."""
        return await self.server.call(self.emulator.create_object, resource, body, namespace)

    async def patch(self, resource: str, name: str, patch: Any, namespace: str | None = "default", *,
                    subresource: str | None = None) -> dict[str, Any]:
        return await self.server.call(self.emulator.patch_object, resource, namespace, name, patch,
                                      subresource=subresource)

    async def set_status(self, resource: str, name: str, status: Mapping[str, Any],
                         namespace: str | None = "default") -> dict[str, Any]:
        """Merge into ``status`` through the status subresource (kubelet, Job controller)."""
        return await self.patch(resource, name, {"status": dict(status)}, namespace, subresource="status")

    async def remove(self, resource: str, name: str, namespace: str | None = "default", *,
                     propagation: str | None = None) -> dict[str, Any]:
        return await self.server.call(self.emulator.delete_object, resource, namespace, name,
                                      propagation=propagation)

    async def calls(self, verb: str | None = None, resource: str | None = None, *,
                    user_agent: str | None = None, exclude_user_agent: str | None = TEST_USER_AGENT) -> int:
        """API requests served so far; by default only those not made by the tests' client."""
        return await self.server.call(self.emulator.count_calls, verb, resource,
                                      user_agent=user_agent, exclude_user_agent=exclude_user_agent)

    async def call_counts(self) -> dict[tuple[str, str, str], int]:
        return await self.server.call(lambda: dict(self.emulator.api_calls))

    async def wait_for(self, condition: Callable[[], Awaitable[T]], *, timeout: float = 10,
                       interval: float = 0.02, message: str = "") -> T:
        """Poll an async condition until it returns something truthy; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = await condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")
            await asyncio.sleep(interval)

    # -- a real kopf operator --------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def operator(
            self,
            registry: kopf.OperatorRegistry,
            *,
            settings: kopf.OperatorSettings | None = None,
            namespaces: Iterable[str] = (),
            memo: object | None = None,
            start_timeout: float = 10,
            stop_timeout: float = 15,
    ) -> AsyncIterator[RunningOperator]:
        """Run ``kopf.operator(standalone=True)`` with ``registry`` against the emulator.

        A login handler for the emulator is added to the registry for the run and
        removed afterwards. Cluster-wide unless ``namespaces`` are given. On exit
        the operator is stopped through its stop flag and must finish within
        ``stop_timeout``; an exception it raised is re-raised here.

        kopf cancels, at its exit, every task of this loop created after it started:
        start helper tasks (a fake kubelet) before entering, or in another thread.
        """
        handler_id = f"kubenas-test-login-{id(self)}"
        kopf.on.login(registry=registry, id=handler_id)(self.login)
        settings = settings if settings is not None else kubenas_settings()
        stop_flag = asyncio.Event()
        ready_flag = asyncio.Event()
        namespaces = list(namespaces)
        task = asyncio.create_task(kopf.operator(
            registry=registry, settings=settings, standalone=True, clusterwide=not namespaces,
            namespaces=namespaces, stop_flag=stop_flag, ready_flag=ready_flag, memo=memo,
        ), name="kopf operator under test")
        running = RunningOperator(task=task, settings=settings, stop_flag=stop_flag)
        try:
            ready = asyncio.ensure_future(ready_flag.wait())
            done, _ = await asyncio.wait({ready, task}, timeout=start_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if task in done:
                task.result()  # re-raise why it died
                raise RuntimeError("the operator exited during start-up")
            if not done:
                raise TimeoutError(f"the operator was not ready within {start_timeout}s")
            yield running
        finally:
            stop_flag.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), stop_timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                raise
            finally:
                _forget_login(registry, handler_id)
                _restore_signals()


def _forget_login(registry: kopf.OperatorRegistry, handler_id: str) -> None:
    """Take our login handler out again, so a shared registry does not keep a stale URL."""
    handlers = registry._activities._handlers
    handlers[:] = [h for h in handlers if h.id != handler_id]


def _restore_signals() -> None:
    """kopf binds SIGINT/SIGTERM to its stop future and never unbinds; give Ctrl+C back to pytest."""
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, ValueError, RuntimeError):
                loop.remove_signal_handler(sig)


@contextlib.asynccontextmanager
async def start_test_bed(*, crds: Sequence[Mapping[str, Any]] | None = None,
                         history_limit: int = 10_000) -> AsyncIterator[KubeTestBed]:
    """Start an emulator on 127.0.0.1 (random port) in its own thread; stop it on exit.

    On a clean exit, fail if the emulator itself crashed on some request (it
    answered 500 with a traceback): that is a bug in the test bed, not an API answer.
    """
    emulator = KubeEmulator(crds=crds, history_limit=history_limit)
    server = EmulatorThread(emulator)
    await asyncio.to_thread(server.start)
    try:
        async with aiohttp.ClientSession() as session:
            yield KubeTestBed(server, session)
        crashes = await server.call(lambda: list(emulator.errors))
        if crashes:
            raise AssertionError(f"the emulator failed on {len(crashes)} request(s): {crashes!r}")
    finally:
        await asyncio.to_thread(server.stop)
