#!/usr/bin/env python3
"""Push an image from an OCI image layout to a registry over HTTP.

    push_layout.py LAYOUT URL REPOSITORY TAG [--user USER --password PASSWORD] [--cacert FILE]

Pushes the index.json entry whose org.opencontainers.image.ref.name is TAG, or the layout's only
entry. Configs and layers go up first: a HEAD skips blobs already there, and a POST and a
monolithic PUT upload the rest. Then each child manifest goes up by digest, and last the top
manifest or index under TAG. Each manifest's Content-Type is its descriptor's media type. Prints the pushed reference with its
digest. Standard library only. It shares the HTTP client of inspect_image.py.
"""

import argparse
import json
import os
import sys
import urllib.parse

from inspect_image import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    InspectError,
    LayoutSource,
    RegistryClient,
    http_error,
    verify_bytes,
)


class Pusher:
    """Uploads blobs and manifests to one repository, each blob at most once."""

    def __init__(self, layout, client, repository):
        self.layout = layout
        self.client = client
        self.repository = repository
        self.pushed_blobs = set()

    def push_blob(self, descriptor):
        digest = descriptor["digest"]
        if digest in self.pushed_blobs:
            return
        data = self.layout.read_verified(descriptor, "blob")
        base = f"/v2/{self.repository}/blobs"

        response = self.client.request("HEAD", f"{base}/{digest}")
        response.close()
        if response.status == 200:
            self.pushed_blobs.add(digest)
            return

        response = self.client.request("POST", f"{base}/uploads/", {"Content-Length": "0"}, b"")
        if response.status != 202:
            raise http_error("POST", self.client.url + base + "/uploads/", response)
        response.close()
        location = urllib.parse.urljoin(self.client.url + "/", response.headers["Location"])
        separator = "&" if "?" in location else "?"
        upload_url = f"{location}{separator}digest={urllib.parse.quote(digest)}"

        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        response = self.client.request("PUT", upload_url, headers, data)
        if response.status != 201:
            raise http_error("PUT", upload_url, response)
        response.close()
        self.pushed_blobs.add(digest)

    def push_manifest(self, descriptor, reference):
        """Push a manifest or index and everything it refers to, under REFERENCE."""
        data = self.layout.read_verified(descriptor, "manifest")
        media_type = descriptor.get("mediaType")
        manifest = json.loads(data)
        if media_type in INDEX_TYPES:
            for child in manifest.get("manifests") or []:
                self.push_manifest(child, child["digest"])
        elif media_type in MANIFEST_TYPES:
            self.push_blob(manifest["config"])
            for layer in manifest.get("layers") or []:
                self.push_blob(layer)
        else:
            raise InspectError(f"manifest {descriptor['digest']}: unsupported media type {media_type!r}")

        path = f"/v2/{self.repository}/manifests/{reference}"
        headers = {"Content-Type": media_type, "Content-Length": str(len(data))}
        response = self.client.request("PUT", path, headers, data)
        if response.status != 201:
            raise http_error("PUT", self.client.url + path, response)
        response.close()
        returned = response.headers.get("Docker-Content-Digest")
        if returned is not None and returned != descriptor["digest"]:
            raise InspectError(f"manifest {descriptor['digest']}: registry stored it as {returned}")


class VerifiedLayout(LayoutSource):
    def read_verified(self, descriptor, kind):
        # NOTE: the whole blob is held in memory, which suits test fixtures but not large images.
        with self.open_blob(descriptor) as blob:
            data = blob.read()
        verify_bytes(data, descriptor, kind)
        return data


def select_entry(layout_path, tag):
    """Return the index.json entry named TAG, or the only entry when none is named."""
    with open(os.path.join(layout_path, "index.json"), "rb") as index_file:
        entries = json.load(index_file).get("manifests") or []
    named = [e for e in entries if (e.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag]
    if named:
        return named[0]
    if len(entries) == 1:
        return entries[0]
    raise InspectError(f"{layout_path}/index.json: no entry with ref name {tag!r} among {len(entries)} entries")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Push an image from an OCI image layout to a registry.")
    parser.add_argument("layout", help="folder with oci-layout, index.json and blobs/")
    parser.add_argument("url", help="registry base URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("repository", help="repository name, e.g. lambda/nodejs")
    parser.add_argument("tag", help="tag to push the image under; also picks the layout entry by ref name")
    parser.add_argument("--user", help="user name for Basic auth or a token request")
    parser.add_argument("--password", help="password for --user")
    parser.add_argument("--cacert", metavar="FILE", help="PEM CA certificates to trust for HTTPS, in place of the system's")
    args = parser.parse_args(argv)

    try:
        entry = select_entry(args.layout, args.tag)
        client = RegistryClient(args.url, args.user, args.password, args.cacert)
        Pusher(VerifiedLayout(args.layout), client, args.repository).push_manifest(entry, args.tag)
    except KeyError as error:
        print(f"push_layout.py: error: pushing {args.layout} failed: a manifest has no field {error}", file=sys.stderr)
        return 1
    except (InspectError, OSError, ValueError) as error:
        print(f"push_layout.py: error: pushing {args.layout} failed: {error}", file=sys.stderr)
        return 1
    print(f"{client.url.split('://', 1)[-1]}/{args.repository}:{args.tag}@{entry['digest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
