"""Where images live: the Docker operations the builder needs, behind a small protocol (a fake one in unit
tests), and its implementation on the Docker SDK."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lab.images.model import LABEL_MANAGED, LOG_TAIL_LINES, ImageError, Progress

DOCKER_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class ImageInfo:
    id: str
    labels: Mapping[str, str]


class ImageStore(Protocol):
    """The Docker operations the builder needs."""

    def inspect(self, ref: str) -> ImageInfo | None: ...
    def pull(self, ref: str, timeout: float) -> None: ...
    def build(
        self,
        context: Path,
        tag: str,
        *,
        target: str | None,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        nocache: bool,
        on_step: Progress,
    ) -> str: ...
    def tag(self, image_id: str, ref: str) -> None: ...
    def import_tarball(self, tarball: Path, ref: str, changes: Sequence[str]) -> str: ...
    def managed_tags(self) -> dict[str, list[str]]: ...
    def untag(self, ref: str) -> bool: ...


class DockerImageStore:
    """ImageStore on the Docker SDK (classic builder: no BuildKit needed)."""

    def __init__(self) -> None:
        import docker

        try:
            self._client = docker.from_env(timeout=int(DOCKER_TIMEOUT_S))
        except docker.errors.DockerException as exc:
            raise ImageError(f"cannot reach Docker: {exc}") from exc
        self._api = self._client.api

    def inspect(self, ref: str) -> ImageInfo | None:
        import docker

        try:
            attrs = self._api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None
        return ImageInfo(id=attrs["Id"], labels=(attrs.get("Config") or {}).get("Labels") or {})

    def pull(self, ref: str, timeout: float) -> None:
        import docker
        import requests
        from docker.utils import parse_repository_tag

        repository, tag = parse_repository_tag(ref)
        client = docker.from_env(timeout=int(timeout))
        try:
            for event in client.api.pull(repository, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise ImageError(f"pulling {ref}: {event['error']}")
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise ImageError(f"pulling {ref}: {exc}") from exc
        finally:
            client.close()

    def build(
        self,
        context: Path,
        tag: str,
        *,
        target: str | None,
        buildargs: Mapping[str, str],
        labels: Mapping[str, str],
        nocache: bool,
        on_step: Progress,
    ) -> str:
        import docker

        output: list[str] = []
        image_id: str | None = None
        try:
            stream = self._api.build(
                path=str(context),
                tag=tag,
                target=target,
                buildargs=dict(buildargs),
                labels=dict(labels),
                nocache=nocache,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            pending_step: str | None = None  # reported once it turns out not to be cached
            for chunk in stream:
                for line in chunk.get("stream", "").splitlines():
                    if not line.strip():
                        continue
                    output.append(line)
                    if pending_step is not None and "Using cache" not in line:
                        on_step(pending_step)
                    pending_step = line if line.startswith("Step ") else None
                if "error" in chunk:
                    tail = "\n".join(output[-LOG_TAIL_LINES:])
                    raise ImageError(f"docker build of {tag} failed: {chunk['error'].strip()}\n{tail}")
                image_id = (chunk.get("aux") or {}).get("ID", image_id)
        except docker.errors.DockerException as exc:
            raise ImageError(f"docker build of {tag} failed: {exc}") from exc
        found = self.inspect(tag)
        if found is None:
            raise ImageError(f"docker build of {tag} finished without an image")
        return image_id or found.id

    def tag(self, image_id: str, ref: str) -> None:
        repository, _, tag = ref.rpartition(":")
        self._api.tag(image_id, repository, tag, force=True)

    def import_tarball(self, tarball: Path, ref: str, changes: Sequence[str]) -> str:
        repository, _, tag = ref.rpartition(":")
        self._api.import_image(src=str(tarball), repository=repository, tag=tag, changes=list(changes))
        found = self.inspect(ref)
        if found is None:
            raise ImageError(f"docker import of {ref} finished without an image")
        return found.id

    def managed_tags(self) -> dict[str, list[str]]:
        images = self._api.images(filters={"label": f"{LABEL_MANAGED}=true"})
        return {
            image["Id"]: [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"] for image in images
        }

    def untag(self, ref: str) -> bool:
        import docker

        try:
            self._api.remove_image(ref)
        except docker.errors.APIError:  # in use by a container (or gone): keep it
            return False
        return True


@contextmanager
def docker_errors() -> Iterator[None]:
    """Docker's own exceptions (a daemon gone mid-build, a refused tag) as ImageError."""
    import docker
    import requests

    try:
        yield
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise ImageError(f"Docker failed: {exc}") from exc
