"""Kubernetes object names: DNS-1035 labels within 63 characters, stable and unique.

Pure, and at the bottom of the layers: the planner names variants with it, the manifests
name objects with it.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def is_dns_label(name: str) -> bool:
    """A DNS-1035 label: what a Service name must be (starts with a letter, no dots)."""
    return len(name) <= MAX_NAME and _DNS_1035.fullmatch(name) is not None


def is_dns1123_label(name: str) -> bool:
    """A DNS-1123 label: what a pod's volume name must be (no dots, unlike object names)."""
    return len(name) <= MAX_NAME and _DNS_1123.fullmatch(name) is not None


def bounded(*parts: str) -> str:
    """Join parts with '-'; past 63 characters, cut and add a hash of the full name."""
    full = "-".join(p for p in parts if p)
    if len(full) <= MAX_NAME:
        return full
    return f"{full[: MAX_NAME - 9].rstrip('-')}-{digest(full)}"


def dns_label(name: str) -> str:
    """`name` when it is a DNS-1035 label; else one made from it, with a hash of the original.

    QuantizedModel names may contain dots or start with a digit (llama-3.1-8b, 3b-chat);
    Service names may not. The hash keeps two such names apart (llama-3.1-8b and
    llama-3-1-8b), and valid names are never touched, so existing objects keep their names.
    """
    if is_dns_label(name):
        return name
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"m-{slug}".rstrip("-")
    return bounded(slug[: MAX_NAME - 9].rstrip("-"), digest(name))
