#!/usr/bin/env python3
"""Read a container image from a registry or an OCI image layout, verify it and print it as JSON.

This reader is independent of lambda-image on purpose, so tests can check the product's output
with code that shares none of its bugs. Standard library only.

    inspect_image.py registry URL REPOSITORY REFERENCE [--platform OS/ARCH[/VARIANT]]
                     [--user USER --password PASSWORD] [--cacert FILE] [--unpack DIR]
    inspect_image.py layout PATH [--ref NAME] [--platform OS/ARCH[/VARIANT]] [--unpack DIR]

It checks that every blob's sha256 and size match its descriptor, that the registry's
Docker-Content-Digest header matches the manifest bytes, and that each layer's uncompressed
sha256 matches the config's rootfs.diff_ids. On success it prints one JSON document:
manifest_digest, manifest_media_type, manifest, config, layers (each with its tar entries), and
index (the image index the manifest was picked from, or null). Entry paths are as Python's
tarfile reports them, so a directory's trailing slash is dropped. On a failed check it prints the
reason and the blob's digest to stderr and exits 1. Usage errors exit 2.
"""

import argparse
import base64
import gzip
import hashlib
import json
import os
import re
import shutil
import ssl
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join(INDEX_TYPES + MANIFEST_TYPES)

GZIP_LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
TAR_LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
)

DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK_SIZE = 1 << 20
HTTP_TIMEOUT_SECONDS = 60


class InspectError(Exception):
    """A failed check or request, reported on stderr with exit status 1."""


# --- HTTP --------------------------------------------------------------------------------------


class RegistryClient:
    """HTTP client for one registry that handles Basic and Bearer token challenges."""

    def __init__(self, url, user=None, password=None, cacert=None):
        self.url = url.rstrip("/")
        self.user = user
        self.password = password
        self.authorization = None
        # An empty ProxyHandler ignores HTTP_PROXY, so requests to 127.0.0.1 stay on this machine.
        handlers = [urllib.request.ProxyHandler({})]
        if cacert is not None:
            # Trust only CACERT for HTTPS, such as a test registry's own CA.
            try:
                context = ssl.create_default_context(cafile=cacert)
            except (OSError, ssl.SSLError) as error:
                raise InspectError(f"cannot load CA certificates from {cacert}: {error}") from None
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)

    def request(self, method, url, headers=None, data=None):
        """Send a request and return the response, whatever its status.

        After a 401 it authenticates with the scheme that the WWW-Authenticate challenge names and
        sends the request once more. A Bearer token's scope covers one repository and action, so a later request
        may meet a new challenge and fetch a new token.
        """
        if not url.startswith(("http://", "https://")):
            url = self.url + url
        for attempt in range(2):
            response = self._send(method, url, headers or {}, data)
            if response.status != 401 or attempt == 1 or not self._authenticate(response):
                return response
            response.close()
        return response

    def _send(self, method, url, headers, data, authorize=True):
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        if authorize and self.authorization:
            # Unredirected, so the credentials do not follow a redirect to blob storage.
            request.add_unredirected_header("Authorization", self.authorization)
        try:
            return self.opener.open(request, timeout=HTTP_TIMEOUT_SECONDS)
        except urllib.error.HTTPError as error:
            return error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise InspectError(f"{method} {url} failed: {reason}") from None

    def _authenticate(self, response):
        """Set self.authorization from a 401's challenge; return False when it cannot be met."""
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        # Quoted values may hold commas, as in scope="repository:app:pull,push".
        parameters = {key: quoted or bare for key, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', rest)}
        if scheme.lower() == "basic":
            if self.user is None:
                return False
            self.authorization = "Basic " + self._basic_credentials()
            return True
        if scheme.lower() == "bearer" and "realm" in parameters:
            self.authorization = "Bearer " + self._fetch_token(parameters)
            return True
        return False

    def _basic_credentials(self):
        return base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()

    def _fetch_token(self, parameters):
        query = {key: parameters[key] for key in ("service", "scope") if key in parameters}
        url = parameters["realm"]
        if query:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
        headers = {}
        if self.user is not None:
            headers["Authorization"] = "Basic " + self._basic_credentials()
        response = self._send("GET", url, headers, None, authorize=False)
        body = response.read()
        if response.status != 200:
            raise InspectError(
                f"token request to {parameters['realm']} failed: HTTP {response.status} "
                f"(check --user and --password): {snippet(body)}"
            )
        try:
            answer = json.loads(body)
            return answer.get("token") or answer["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise InspectError(f"token response from {parameters['realm']} has no token: {snippet(body)}") from None


def snippet(body):
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return "(empty body)"
    return text if len(text) <= 500 else text[:500] + "..."


def http_error(method, url, response):
    hint = " (check --user and --password)" if response.status in (401, 403) else ""
    return InspectError(f"{method} {url} failed: HTTP {response.status}{hint}: {snippet(response.read())}")


def strip_parameters(content_type):
    return (content_type or "").split(";")[0].strip()


# --- Image sources -----------------------------------------------------------------------------


def check_digest_format(digest, what):
    if not isinstance(digest, str) or not DIGEST_PATTERN.match(digest):
        raise InspectError(f"{what}: invalid or unsupported digest {digest!r} (expected sha256:<64 hex>)")


class RegistrySource:
    """An image repository in a registry, read through the distribution API."""

    def __init__(self, url, repository, user=None, password=None, cacert=None):
        self.client = RegistryClient(url, user, password, cacert)
        self.repository = repository

    def describe(self, reference):
        return f"{self.client.url}/{self.repository}@{reference}"

    def top_manifest(self, reference):
        """Fetch the manifest or index that REFERENCE (a tag or a digest) names."""
        data, media_type, digest = self._fetch_manifest(reference)
        if reference.startswith("sha256:") and digest != reference:
            raise InspectError(f"manifest {reference}: registry returned content with digest {digest}")
        return data, media_type, digest

    def child_manifest(self, descriptor):
        data, media_type, _ = self._fetch_manifest(descriptor["digest"])
        verify_bytes(data, descriptor, "manifest")
        return data, media_type

    def _fetch_manifest(self, reference):
        path = f"/v2/{self.repository}/manifests/{reference}"
        response = self.client.request("GET", path, {"Accept": ACCEPT})
        if response.status != 200:
            raise http_error("GET", self.client.url + path, response)
        data = response.read()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        header = response.headers.get("Docker-Content-Digest")
        if header is None:
            raise InspectError(f"manifest {self.describe(reference)}: response has no Docker-Content-Digest header")
        if header != digest:
            raise InspectError(
                f"manifest {self.describe(reference)}: Docker-Content-Digest {header} "
                f"does not match the sha256 of the returned bytes, {digest}"
            )
        return data, strip_parameters(response.headers.get("Content-Type")), digest

    def open_blob(self, descriptor):
        path = f"/v2/{self.repository}/blobs/{descriptor['digest']}"
        response = self.client.request("GET", path)
        if response.status != 200:
            raise http_error("GET", self.client.url + path, response)
        return response


class LayoutSource:
    """An OCI image layout: a folder with oci-layout, index.json and blobs/sha256/."""

    def __init__(self, path, ref=None):
        self.path = path
        self.ref = ref

    def describe(self, reference):
        return f"{self.path}@{reference}"

    def top_manifest(self, _reference=None):
        descriptor = self._select_entry()
        data = self._read_blob(descriptor)
        verify_bytes(data, descriptor, "manifest")
        return data, descriptor.get("mediaType", ""), descriptor["digest"]

    def child_manifest(self, descriptor):
        data = self._read_blob(descriptor)
        verify_bytes(data, descriptor, "manifest")
        return data, descriptor.get("mediaType", "")

    def open_blob(self, descriptor):
        path = self._blob_path(descriptor)
        try:
            return open(path, "rb")
        except OSError as error:
            raise InspectError(f"blob {descriptor['digest']}: cannot open {path}: {error.strerror}") from None

    def _select_entry(self):
        index_path = os.path.join(self.path, "index.json")
        try:
            with open(index_path, "rb") as index_file:
                entries = json.load(index_file).get("manifests") or []
        except OSError as error:
            raise InspectError(f"{index_path}: cannot read: {error.strerror}") from None
        except ValueError as error:
            raise InspectError(f"{index_path}: invalid JSON: {error}") from None
        names = [entry.get("annotations", {}).get("org.opencontainers.image.ref.name") for entry in entries]
        if self.ref is not None:
            matches = [entry for entry, name in zip(entries, names) if name == self.ref]
            if not matches:
                raise InspectError(f"{index_path}: no entry with ref name {self.ref!r}; ref names: {names}")
            return matches[0]
        if len(entries) != 1:
            raise InspectError(f"{index_path}: has {len(entries)} entries; pick one with --ref (ref names: {names})")
        return entries[0]

    def _blob_path(self, descriptor):
        check_digest_format(descriptor.get("digest"), "descriptor")
        algorithm, hex_digest = descriptor["digest"].split(":", 1)
        return os.path.join(self.path, "blobs", algorithm, hex_digest)

    def _read_blob(self, descriptor):
        with self.open_blob(descriptor) as blob:
            return blob.read()


# --- Verification ------------------------------------------------------------------------------


def verify_bytes(data, descriptor, kind):
    digest = descriptor.get("digest")
    check_digest_format(digest, kind)
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise InspectError(f"{kind} {digest}: content has sha256 {actual}")
    if len(data) != descriptor.get("size"):
        raise InspectError(f"{kind} {digest}: size is {len(data)} bytes but the descriptor says {descriptor.get('size')}")


def parse_manifest(data, media_type, digest):
    try:
        manifest = json.loads(data)
    except ValueError as error:
        raise InspectError(f"manifest {digest}: invalid JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise InspectError(f"manifest {digest}: not a JSON object")
    declared = manifest.get("mediaType")
    if declared and media_type and declared != media_type:
        raise InspectError(f"manifest {digest}: mediaType field {declared!r} differs from the served type {media_type!r}")
    media_type = media_type or declared
    if media_type not in INDEX_TYPES + MANIFEST_TYPES:
        raise InspectError(f"manifest {digest}: unsupported media type {media_type!r}")
    return manifest, media_type


def parse_platform(text):
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InspectError(f"invalid platform {text!r} (expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64)")
    return {"os": parts[0], "architecture": parts[1], "variant": parts[2] if len(parts) == 3 else None}


def format_platform(platform):
    parts = [platform.get("os", "?"), platform.get("architecture", "?")]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(parts)


def platform_matches(wanted, platform):
    if platform.get("os") != wanted["os"] or platform.get("architecture") != wanted["architecture"]:
        return False
    return wanted["variant"] is None or platform.get("variant") == wanted["variant"]


def select_from_index(index, index_digest, platform_text):
    """Pick the index's manifest for a platform, by default its only one or else linux/amd64."""
    descriptors = [d for d in index.get("manifests") or [] if d.get("mediaType") in MANIFEST_TYPES]
    if platform_text is None and len(descriptors) == 1:
        return descriptors[0]
    wanted = parse_platform(platform_text or "linux/amd64")
    for descriptor in descriptors:
        if platform_matches(wanted, descriptor.get("platform") or {}):
            return descriptor
    available = [format_platform(d.get("platform") or {}) for d in descriptors]
    raise InspectError(f"index {index_digest}: no manifest for platform {format_platform(wanted)}; it has {available}")


def read_verified_blob(source, descriptor, kind, destination):
    """Copy a blob into the open file DESTINATION, checking its sha256 and size."""
    digest = descriptor.get("digest")
    check_digest_format(digest, kind)
    hasher = hashlib.sha256()
    size = 0
    with source.open_blob(descriptor) as blob:
        while chunk := blob.read(CHUNK_SIZE):
            hasher.update(chunk)
            size += len(chunk)
            destination.write(chunk)
    actual = "sha256:" + hasher.hexdigest()
    if actual != digest:
        raise InspectError(f"{kind} {digest}: content has sha256 {actual}")
    if size != descriptor.get("size"):
        raise InspectError(f"{kind} {digest}: size is {size} bytes but the descriptor says {descriptor.get('size')}")


def decompress_layer(descriptor, compressed, tar_file):
    """Write the layer's tar into TAR_FILE and return its sha256, the diff_id."""
    media_type = descriptor.get("mediaType")
    if media_type in GZIP_LAYER_TYPES:
        reader = gzip.GzipFile(fileobj=compressed, mode="rb")
    elif media_type in TAR_LAYER_TYPES:
        reader = compressed
    else:
        raise InspectError(f"layer {descriptor.get('digest')}: unsupported media type {media_type!r}")
    hasher = hashlib.sha256()
    try:
        while chunk := reader.read(CHUNK_SIZE):
            hasher.update(chunk)
            tar_file.write(chunk)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise InspectError(f"layer {descriptor.get('digest')}: invalid gzip data: {error}") from None
    return "sha256:" + hasher.hexdigest()


ENTRY_TYPES = (
    (tarfile.TarInfo.isreg, "file"),
    (tarfile.TarInfo.isdir, "dir"),
    (tarfile.TarInfo.issym, "symlink"),
    (tarfile.TarInfo.islnk, "hardlink"),
)


def describe_entry(member):
    entry_type = next((name for test, name in ENTRY_TYPES if test(member)), "other")
    mtime = member.mtime
    if isinstance(mtime, float) and mtime.is_integer():
        mtime = int(mtime)
    return {
        "path": member.name,
        "type": entry_type,
        "mode": member.mode,
        "uid": member.uid,
        "gid": member.gid,
        "uname": member.uname,
        "gname": member.gname,
        "mtime": mtime,
        "size": member.size,
        "linkname": member.linkname,
        "pax": dict(member.pax_headers),
    }


# --- Unpacking ---------------------------------------------------------------------------------


class Unpacker:
    """Extracts layers in order into one folder, rejecting paths that would leave it.

    Symlinks are created as they are (their targets may point anywhere), but no entry is ever
    written through a symlink: a parent folder must resolve inside the root. Whiteouts remove what
    earlier layers wrote. Owners are not set, and mode bits above 0o777 are dropped. Device and
    FIFO entries are skipped.
    """

    def __init__(self, root):
        os.makedirs(root, exist_ok=True)
        self.root = os.path.realpath(root)
        self.directory_modes = {}

    def extract(self, archive, layer_digest):
        for member in archive:
            relative = self._safe_relative(member.name, layer_digest)
            if relative is None:
                continue
            name = os.path.basename(relative)
            if name.startswith(".wh."):
                self._apply_whiteout(relative, name, layer_digest)
                continue
            path = self._prepare(relative, layer_digest, keep_directory=member.isdir())
            if member.isdir():
                self._make_directory(path, member)
            elif member.isreg():
                self._write_file(archive, member, path)
            elif member.issym():
                os.symlink(member.linkname, path)
            elif member.islnk():
                self._link(member, path, layer_digest)

    def finish(self):
        # Deepest first, so a read-only folder does not block setting the modes inside it.
        for path in sorted(self.directory_modes, key=len, reverse=True):
            os.chmod(path, self.directory_modes[path])

    def _safe_relative(self, name, layer_digest):
        if name.startswith("/"):
            raise InspectError(f"layer {layer_digest}: absolute path {name!r} rejected")
        parts = [part for part in name.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise InspectError(f"layer {layer_digest}: path {name!r} with '..' rejected")
        return "/".join(parts) or None

    def _inside(self, path):
        return path == self.root or path.startswith(self.root + os.sep)

    def _prepare(self, relative, layer_digest, keep_directory):
        """Create the parent folders of RELATIVE and remove what is there, except a folder to keep."""
        path = os.path.join(self.root, relative)
        parent = os.path.dirname(path)
        if not self._inside(os.path.realpath(parent)):
            raise InspectError(f"layer {layer_digest}: {relative!r} would be written through a symlink outside {self.root}")
        os.makedirs(parent, exist_ok=True)
        is_directory = os.path.isdir(path) and not os.path.islink(path)
        if is_directory and not keep_directory:
            shutil.rmtree(path)
        elif os.path.lexists(path) and not is_directory:
            os.unlink(path)
        return path

    def _make_directory(self, path, member):
        if not os.path.isdir(path):
            os.mkdir(path)
        os.chmod(path, 0o700)
        self.directory_modes[path] = member.mode & 0o777

    def _write_file(self, archive, member, path):
        with archive.extractfile(member) as content, open(path, "wb") as out:
            shutil.copyfileobj(content, out)
        os.chmod(path, member.mode & 0o777)

    def _link(self, member, path, layer_digest):
        target_relative = self._safe_relative(member.linkname, layer_digest)
        target = os.path.join(self.root, target_relative or "")
        if not self._inside(os.path.realpath(os.path.dirname(target))) or not os.path.lexists(target):
            raise InspectError(f"layer {layer_digest}: hard link {member.name!r} to missing or outside {member.linkname!r}")
        os.link(target, path, follow_symlinks=False)

    def _apply_whiteout(self, relative, name, layer_digest):
        parent = os.path.join(self.root, os.path.dirname(relative))
        if not os.path.isdir(parent) or not self._inside(os.path.realpath(parent)):
            return
        if name == ".wh..wh..opq":
            victims = [os.path.join(parent, child) for child in os.listdir(parent)]
        else:
            victims = [os.path.join(parent, name[len(".wh."):])]
        for victim in victims:
            if os.path.isdir(victim) and not os.path.islink(victim):
                shutil.rmtree(victim)
            elif os.path.lexists(victim):
                os.unlink(victim)


# --- Main --------------------------------------------------------------------------------------


def inspect_layer(source, descriptor, diff_id, unpacker, scratch):
    with tempfile.TemporaryFile(dir=scratch) as compressed, tempfile.TemporaryFile(dir=scratch) as tar_file:
        read_verified_blob(source, descriptor, "layer", compressed)
        compressed.seek(0)
        actual_diff_id = decompress_layer(descriptor, compressed, tar_file)
        if actual_diff_id != diff_id:
            raise InspectError(
                f"layer {descriptor['digest']}: uncompressed sha256 is {actual_diff_id} "
                f"but config.rootfs.diff_ids has {diff_id}"
            )
        tar_file.seek(0)
        try:
            with tarfile.open(fileobj=tar_file, mode="r:") as archive:
                entries = [describe_entry(member) for member in archive]
                if unpacker is not None:
                    tar_file.seek(0)
                    with tarfile.open(fileobj=tar_file, mode="r:") as again:
                        unpacker.extract(again, descriptor["digest"])
        except tarfile.TarError as error:
            raise InspectError(f"layer {descriptor['digest']}: invalid tar: {error}") from None
    return {
        "digest": descriptor["digest"],
        "size": descriptor["size"],
        "media_type": descriptor.get("mediaType"),
        "diff_id": diff_id,
        "entries": entries,
    }


def read_config(source, descriptor):
    with tempfile.TemporaryFile() as buffer:
        read_verified_blob(source, descriptor, "config", buffer)
        buffer.seek(0)
        data = buffer.read()
    try:
        config = json.loads(data)
    except ValueError as error:
        raise InspectError(f"config {descriptor['digest']}: invalid JSON: {error}") from None
    if not isinstance(config, dict):
        raise InspectError(f"config {descriptor['digest']}: not a JSON object")
    return config


def inspect(source, reference, platform_text, unpack_dir):
    data, media_type, digest = source.top_manifest(reference)
    manifest, media_type = parse_manifest(data, media_type, digest)
    index = None
    if media_type in INDEX_TYPES:
        index = {"digest": digest, "media_type": media_type, "manifest": manifest}
        descriptor = select_from_index(manifest, digest, platform_text)
        data, child_type = source.child_manifest(descriptor)
        digest = descriptor["digest"]
        manifest, media_type = parse_manifest(data, child_type or descriptor.get("mediaType"), digest)
        if media_type in INDEX_TYPES:
            raise InspectError(f"index {index['digest']}: entry {digest} is another index; nested indexes are not supported")

    config = read_config(source, manifest.get("config") or {})
    check_platform(config, platform_text, digest)
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    descriptors = manifest.get("layers") or []
    if len(descriptors) != len(diff_ids):
        raise InspectError(
            f"manifest {digest}: {len(descriptors)} layers but config {manifest['config']['digest']} "
            f"has {len(diff_ids)} diff_ids"
        )

    unpacker = Unpacker(unpack_dir) if unpack_dir else None
    scratch = tempfile.mkdtemp(prefix="inspect-image-")
    try:
        layers = [inspect_layer(source, d, diff_id, unpacker, scratch) for d, diff_id in zip(descriptors, diff_ids)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if unpacker is not None:
        unpacker.finish()

    return {
        "manifest_digest": digest,
        "manifest_media_type": media_type,
        "manifest": manifest,
        "config": config,
        "layers": layers,
        "index": index,
    }


def check_platform(config, platform_text, digest):
    if platform_text is None:
        return
    wanted = parse_platform(platform_text)
    if not platform_matches(wanted, config):
        raise InspectError(f"manifest {digest}: image is {format_platform(config)}, not {format_platform(wanted)}")


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description="Read, verify and print an image from a registry or an OCI image layout.")
    sources = parser.add_subparsers(dest="source", required=True)

    registry = sources.add_parser("registry", help="read from a registry over the distribution API")
    registry.add_argument("url", help="registry base URL, e.g. http://127.0.0.1:5000")
    registry.add_argument("repository", help="repository name, e.g. my-app")
    registry.add_argument("reference", help="tag or sha256:<hex> digest")
    registry.add_argument("--user", help="user name for Basic auth or a token request")
    registry.add_argument("--password", help="password for --user")
    registry.add_argument("--cacert", metavar="FILE", help="PEM CA certificates to trust for HTTPS, in place of the system's")

    layout = sources.add_parser("layout", help="read from an OCI image layout folder")
    layout.add_argument("path", help="folder with oci-layout, index.json and blobs/")
    layout.add_argument("--ref", help="index.json entry by org.opencontainers.image.ref.name (needed if it has several)")

    for subparser in (registry, layout):
        subparser.add_argument(
            "--platform",
            help="OS/ARCH[/VARIANT] to pick from an image index (default: its only manifest, else linux/amd64)",
        )
        subparser.add_argument("--unpack", metavar="DIR", help="extract the layers' files into DIR, in order")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    try:
        if args.source == "registry":
            source = RegistrySource(args.url, args.repository, args.user, args.password, args.cacert)
            result = inspect(source, args.reference, args.platform, args.unpack)
        else:
            result = inspect(LayoutSource(args.path, args.ref), None, args.platform, args.unpack)
    except InspectError as error:
        print(f"inspect_image.py: error: {error}", file=sys.stderr)
        return 1
    try:
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # A reader that stopped early (`| head`) is not an error. Point stdout at /dev/null so
        # the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
