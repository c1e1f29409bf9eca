"""Kubernetes syntax of the names and values a spec hands to the API server.

Why here, as constrained string types: an invalid queue name, node-selector key or
image reference is accepted by a lax spec and then fails every launch at the API
(docs/design.md); a ``pattern`` and ``maxLength`` on the type refuse it at
``kubenas validate`` and, through the generated CRD, at ``kubectl apply``. The
patterns are RE2-compatible so the API server can run them unchanged.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from controller_policy.strict import PATTERN_HINTS

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_LABEL = f"^{_LABEL}$"
"""RFC 1123 label: namespaces, most object names; at most 63 characters."""
DNS_SUBDOMAIN = f"^{_LABEL}(\\.{_LABEL})*$"
"""RFC 1123 subdomain: claim and priority-class names; at most 253 characters."""
_QUALIFIED = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = f"^({_LABEL}(\\.{_LABEL})*/)?{_QUALIFIED}$"
"""Label key (also a resource name such as nvidia.com/gpu): optional subdomain prefix and '/'."""
LABEL_VALUE = f"^({_QUALIFIED})?$"
"""Label value: empty, or up to 63 letters, digits, '-', '_', '.' between alphanumerics."""
_HOST = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*"
_PATH = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
IMAGE = (f"^(({_HOST})(:[0-9]+)?/)?{_PATH}(/{_PATH})*"
         r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")
"""Container image reference: [registry[:port]/]path[:tag][@sha256:digest]."""

DnsLabel = Annotated[str, Field(max_length=63, pattern=DNS_LABEL)]
DnsSubdomain = Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN)]
LabelKey = Annotated[str, Field(max_length=317, pattern=LABEL_KEY)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]
QueueName = Annotated[str, Field(max_length=63, pattern=DNS_SUBDOMAIN)]
"""A Kueue LocalQueue: an object name that is also the Job's queue-name label value."""
ImageRef = Annotated[str, Field(max_length=512, pattern=IMAGE)]

PATTERN_HINTS.update({
    DNS_LABEL: "a DNS label: lower-case letters, digits and '-', starting and ending with a "
               "letter or digit, at most 63 characters",
    DNS_SUBDOMAIN: "a DNS name: lower-case letters, digits, '-' and '.', starting and ending "
                   "with a letter or digit (e.g. gpu-queue)",
    LABEL_KEY: "a label key: an optional DNS prefix and '/', then at most 63 letters, digits, "
               "'-', '_' or '.' starting and ending with a letter or digit (e.g. nvidia.com/gpu)",
    LABEL_VALUE: "a label value: empty, or at most 63 letters, digits, '-', '_' or '.' "
                 "starting and ending with a letter or digit",
    IMAGE: "an image reference: [registry[:port]/]path[:tag][@sha256:digest], e.g. "
           "ghcr.io/kubenas/kubenas-trainer:0.1.0",
})
