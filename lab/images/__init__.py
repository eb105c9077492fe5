"""The lab's container images: build them, or reuse what an earlier call built (`lab images`).

Four images, from two Dockerfiles beside this code, each taking its base as `ARG BASE_IMAGE`:

  provider, gateway, locust  python/Dockerfile, one build target each (the entry point is the difference):
                             the project installed into a venv from wheels built on this host
  toxiproxy                  toxiproxy/Dockerfile: Toxiproxy's REST API on 8474

and, on demand (a gateway adapter's `build:`), gateways under test: haproxy/Dockerfile, nginx/Dockerfile,
FROM the official image where a registry is reachable, else Debian's package on the lab's base.

Two paths to the bases. "official": the default of each Dockerfile's `ARG BASE_IMAGE` (a slim Python
image, Shopify's Toxiproxy image), pulled from a registry. "bootstrap", for machines with no registry: a
Debian base made here (debootstrap + `docker import`) for all four, with the lab's Toxiproxy-compatible
server (`toxiproxy/server`, built by cargo) as the toxiproxy binary. "auto" pulls once and falls back to
bootstrap. Each image is tagged `lab-<name>:<content hash>` (and `:latest`); the hash covers every input,
so a call with nothing changed only looks the tags up. It works from a source checkout and from an
installed distribution alike (lab.images.wheels).

  model.py        names, labels, modes, ImageSet, errors; snapshots and hashes of inputs
  store.py        the Docker operations (ImageStore, DockerImageStore)
  shell.py        the host commands (pip, cargo, debootstrap, tar, apt-get)
  debootstrap.py  the bootstrap base image
  cargo.py        the bootstrap toxiproxy binary
  wheels.py       the wheelhouses and the lab's own wheel; checkout or installed metadata
  builder.py      Layout, ImageBuilder, ensure_images, prune_images
  cli.py          `lab images`
"""

from lab.images.builder import (
    ImageBuilder,
    Layout,
    Sources,
    ensure_gateway_image,
    ensure_images,
    prune_images,
)
from lab.images.debootstrap import BASE_REF, debian_mirror
from lab.images.model import (
    GATEWAY_IMAGES,
    IMAGE_NAMES,
    IMAGES_DIR,
    LABEL_HASH,
    LABEL_IMAGE,
    LABEL_MANAGED,
    MODE_ENV,
    MODES,
    PYTHON_IMAGES,
    BadImageMode,
    ImageError,
    ImageSet,
    content_hash,
    dockerfile_base_default,
    resolve_mode,
    tree_files,
)
from lab.images.shell import Shell
from lab.images.store import DockerImageStore, ImageInfo, ImageStore
from lab.images.wheels import CheckoutMetadata, InstalledMetadata, project_requirements

__all__ = [
    "BASE_REF",
    "GATEWAY_IMAGES",
    "IMAGES_DIR",
    "IMAGE_NAMES",
    "LABEL_HASH",
    "LABEL_IMAGE",
    "LABEL_MANAGED",
    "MODES",
    "MODE_ENV",
    "PYTHON_IMAGES",
    "BadImageMode",
    "CheckoutMetadata",
    "DockerImageStore",
    "ImageBuilder",
    "ImageError",
    "ImageInfo",
    "ImageSet",
    "ImageStore",
    "InstalledMetadata",
    "Layout",
    "Shell",
    "Sources",
    "content_hash",
    "debian_mirror",
    "dockerfile_base_default",
    "ensure_gateway_image",
    "ensure_images",
    "project_requirements",
    "prune_images",
    "resolve_mode",
    "tree_files",
]
