#!/usr/bin/env python3
"""Generate the images that tests/check.rs runs the Lambda image check on.

Writes one OCI image layout, images/, beside this script (or into --output-dir). Each entry
of its index.json is one test case, named by its org.opencontainers.image.ref.name tag:

    clean                  a valid Lambda Node.js image: no findings
    clean-docker           the same with Docker media types: no findings
    buildx                 an OCI index with the clean linux/amd64 manifest and a buildx
                           attestation manifest (platform unknown/unknown)
    zstd-layer             the app layer zstd-compressed
    uncompressed-layer     the app layer as a plain tar
    mixed-families         a Docker manifest and config with an OCI app layer
    missing-media-type     an OCI manifest without its top-level mediaType
    missing-parents        an app layer without var/ and var/task/ directory entries
    unreadable-file        var/task/config.json with mode 0600
    unsearchable-directory var/task/lib/ with mode 0750
    no-entrypoint          a config without Entrypoint
    relative-entrypoint    Entrypoint ["lambda-entrypoint.sh"]
    index-with-defect      an OCI index whose linux/amd64 manifest is relative-entrypoint
    two-element-cmd        Cmd ["lambda.handler", "--verbose"]
    arm64                  the clean image with architecture arm64
    handler-module-missing Cmd ["missing.handler"]
    handler-not-exported   Cmd ["lambda.main"], which lambda.js does not export
    deleted-handler        a third layer whose whiteout deletes var/task/lambda.js
    history-mismatch       three history entries that add a layer, for two layers
    diff-id-mismatch       a config whose second diff_id is not the app layer's

Every case but the defect it is named for is the clean image, so a check finds exactly one
problem in it. Layers are a few hundred bytes.

The output is byte-identical from run to run: tar entries have a fixed mtime, uid and gid 0
and no user or group names; gzip headers carry mtime 0 and no file name; JSON has sorted keys
and compact separators. The zstd layer is a zstd frame of raw (stored) blocks, written by
hand because the standard library has no zstd encoder; `zstd -d` reads it.

NOTE: gzip output depends on the zlib build, so another zlib may compress to other bytes and
digests. The tests read digests from the layout, so they pass either way.

Standard library only. Usage: python3 testdata/check/make-fixtures.py [--output-dir DIR]
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile

# 2025-01-01T00:00:00Z, the mtime of every tar entry and the configs' "created".
EPOCH = 1735689600
CREATED = "2025-01-01T00:00:00Z"

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
IN_TOTO = "application/vnd.in-toto+json"

REF_NAME = "org.opencontainers.image.ref.name"

ENTRYPOINT_SCRIPT = b"""#!/bin/sh
# Stand-in for the Lambda base image's entrypoint in a test fixture.
exec /var/runtime/bootstrap "$@"
"""
BOOTSTRAP = b"#!/bin/sh\necho 'fixture image: no runtime here' >&2\nexit 1\n"
LAMBDA_JS = b"exports.handler = async () => ({ statusCode: 200, body: 'ok' });\n"
PACKAGE_JSON = b'{"name":"check-fixture","version":"1.0.0","main":"lambda.js"}\n'
CONFIG_JSON = b'{"table":"orders"}\n'
UTIL_JS = b"exports.double = (n) => n * 2;\n"


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def directory(name, mode=0o755):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    return info, None


def regular_file(name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, data


def whiteout(name):
    return regular_file(name, b"")


def make_tar(entries):
    """Return an uncompressed tar of (TarInfo, data) pairs, owned by root with a fixed mtime."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for info, data in entries:
            info.mtime = EPOCH
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def gzip_bytes(data):
    buffer = io.BytesIO()
    # filename="" and mtime=0 keep the gzip header free of anything that changes between runs.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as out:
        out.write(data)
    return buffer.getvalue()


def zstd_stored(data):
    """Return a zstd frame (RFC 8878) that stores DATA in raw blocks, without compression."""
    block_size = 128 * 1024
    # Magic number, then a frame header descriptor of 0 (no content size, no checksum, no
    # dictionary, not single-segment), then a window descriptor of 2**17 bytes (exponent 7).
    frame = bytearray(b"\x28\xb5\x2f\xfd\x00\x38")
    blocks = [data[i : i + block_size] for i in range(0, len(data), block_size)] or [b""]
    for number, block in enumerate(blocks):
        last = 1 if number == len(blocks) - 1 else 0
        # Block header: bit 0 last block, bits 1-2 type (0 = raw), bits 3-23 size.
        frame += (last | len(block) << 3).to_bytes(3, "little") + block
    return bytes(frame)


def os_layer():
    return make_tar(
        [
            directory("etc/"),
            regular_file("etc/os-release", b'NAME="check fixture"\n'),
            regular_file("lambda-entrypoint.sh", ENTRYPOINT_SCRIPT, 0o755),
            directory("var/"),
            directory("var/runtime/"),
            regular_file("var/runtime/bootstrap", BOOTSTRAP, 0o755),
            directory("var/task/"),
        ]
    )


def app_entries():
    return [
        regular_file("var/task/lambda.js", LAMBDA_JS),
        regular_file("var/task/package.json", PACKAGE_JSON),
    ]


def app_layer(extra=()):
    return make_tar([directory("var/"), directory("var/task/"), *app_entries(), *extra])


class Layer:
    """A layer's tar and its blob under one compression."""

    def __init__(self, tar, compression="gzip"):
        self.tar = tar
        self.diff_id = sha256_digest(tar)
        self.blob = {"gzip": gzip_bytes, "tar": bytes, "zstd": zstd_stored}[compression](tar)


class Layout:
    """An OCI image layout being written: blobs/sha256/<hex>, index.json and oci-layout."""

    def __init__(self, path):
        self.path = path
        self.entries = []
        # Blobs from an earlier run that this run does not write would break byte-identity.
        shutil.rmtree(os.path.join(path, "blobs"), ignore_errors=True)
        os.makedirs(os.path.join(path, "blobs", "sha256"))

    def add_blob(self, media_type, data, **extra):
        """Write a blob and return its descriptor."""
        digest = sha256_digest(data)
        with open(os.path.join(self.path, "blobs", "sha256", digest[len("sha256:") :]), "wb") as out:
            out.write(data)
        descriptor = {"mediaType": media_type, "digest": digest, "size": len(data)}
        descriptor.update(extra)
        return descriptor

    def tag(self, name, descriptor):
        self.entries.append(dict(descriptor, annotations={REF_NAME: name}))

    def finish(self):
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.entries}
        with open(os.path.join(self.path, "index.json"), "wb") as out:
            out.write(canonical_json(index))
        with open(os.path.join(self.path, "oci-layout"), "wb") as out:
            out.write(canonical_json({"imageLayoutVersion": "1.0.0"}))


def image_config(layers, architecture="amd64", **container):
    config = {
        "Env": ["PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin", "LAMBDA_TASK_ROOT=/var/task"],
        "Entrypoint": ["/lambda-entrypoint.sh"],
        "Cmd": ["lambda.handler"],
        "WorkingDir": "/var/task",
    }
    for key, value in container.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return {
        "architecture": architecture,
        "os": "linux",
        "created": CREATED,
        "config": config,
        "history": [
            {"created": CREATED, "created_by": f"fixture layer {number}"}
            for number in range(1, len(layers) + 1)
        ],
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }


def write_image(layout, layers, config, layer_types, manifest_type=OCI_MANIFEST, config_type=OCI_CONFIG,
                with_media_type=True):
    """Write config, layers and manifest, and return the manifest's descriptor."""
    manifest = {
        "schemaVersion": 2,
        "config": layout.add_blob(config_type, canonical_json(config)),
        "layers": [layout.add_blob(media_type, layer.blob) for layer, media_type in zip(layers, layer_types)],
    }
    if with_media_type:
        manifest["mediaType"] = manifest_type
    return layout.add_blob(manifest_type, canonical_json(manifest))


def attestation_manifest(layout, subject):
    """Write a buildx-style provenance attestation for SUBJECT and return its index entry."""
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "fixture", "digest": {"sha256": subject["digest"][len("sha256:") :]}}],
        "predicate": {"builder": {"id": "make-fixtures.py"}},
    }
    statement_bytes = canonical_json(statement)
    config = {
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(statement_bytes)]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": layout.add_blob(OCI_CONFIG, canonical_json(config)),
        "layers": [
            layout.add_blob(
                IN_TOTO,
                statement_bytes,
                annotations={"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
            )
        ],
    }
    return layout.add_blob(
        OCI_MANIFEST,
        canonical_json(manifest),
        annotations={
            "vnd.docker.reference.digest": subject["digest"],
            "vnd.docker.reference.type": "attestation-manifest",
        },
        platform={"architecture": "unknown", "os": "unknown"},
    )


def main():
    script_dir = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default=script_dir, help="folder to write images/ into")
    args = parser.parse_args()

    layout = Layout(os.path.join(args.output_dir, "images"))
    base = Layer(os_layer())
    app = Layer(app_layer())
    layers = [base, app]
    gzip_types = [OCI_LAYER_GZIP, OCI_LAYER_GZIP]

    def oci_case(name, case_layers=None, types=None, **config_changes):
        case_layers = case_layers or layers
        architecture = config_changes.pop("architecture", "amd64")
        config = image_config(case_layers, architecture, **config_changes)
        descriptor = write_image(layout, case_layers, config, types or [OCI_LAYER_GZIP] * len(case_layers))
        layout.tag(name, descriptor)
        return descriptor

    clean = write_image(layout, layers, image_config(layers), gzip_types)
    layout.tag("clean", clean)
    docker_types = [DOCKER_LAYER_GZIP, DOCKER_LAYER_GZIP]
    layout.tag(
        "clean-docker",
        write_image(layout, layers, image_config(layers), docker_types, DOCKER_MANIFEST, DOCKER_CONFIG),
    )

    amd64 = dict(clean, platform={"architecture": "amd64", "os": "linux"})
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [amd64, attestation_manifest(layout, clean)],
    }
    layout.tag("buildx", layout.add_blob(OCI_INDEX, canonical_json(index)))

    oci_case("zstd-layer", [base, Layer(app.tar, "zstd")], [OCI_LAYER_GZIP, OCI_LAYER_ZSTD])
    oci_case("uncompressed-layer", [base, Layer(app.tar, "tar")], [OCI_LAYER_GZIP, OCI_LAYER_TAR])
    layout.tag(
        "mixed-families",
        write_image(
            layout, layers, image_config(layers), [DOCKER_LAYER_GZIP, OCI_LAYER_GZIP], DOCKER_MANIFEST, DOCKER_CONFIG
        ),
    )
    layout.tag(
        "missing-media-type",
        write_image(layout, layers, image_config(layers), gzip_types, with_media_type=False),
    )
    oci_case("missing-parents", [base, Layer(make_tar(app_entries()))])
    oci_case("unreadable-file", [base, Layer(app_layer([regular_file("var/task/config.json", CONFIG_JSON, 0o600)]))])
    oci_case(
        "unsearchable-directory",
        [base, Layer(app_layer([directory("var/task/lib/", 0o750), regular_file("var/task/lib/util.js", UTIL_JS)]))],
    )
    oci_case("no-entrypoint", Entrypoint=None)
    relative = oci_case("relative-entrypoint", Entrypoint=["lambda-entrypoint.sh"])
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [dict(relative, platform={"architecture": "amd64", "os": "linux"})],
    }
    layout.tag("index-with-defect", layout.add_blob(OCI_INDEX, canonical_json(index)))
    oci_case("two-element-cmd", Cmd=["lambda.handler", "--verbose"])
    oci_case("arm64", architecture="arm64")
    oci_case("handler-module-missing", Cmd=["missing.handler"])
    oci_case("handler-not-exported", Cmd=["lambda.main"])
    deletion = Layer(make_tar([directory("var/"), directory("var/task/"), whiteout("var/task/.wh.lambda.js")]))
    oci_case("deleted-handler", [base, app, deletion])

    history = image_config(layers)
    history["history"].append({"created": CREATED, "created_by": "a layer that is not there"})
    layout.tag("history-mismatch", write_image(layout, layers, history, gzip_types))
    wrong = image_config(layers)
    wrong["rootfs"]["diff_ids"][1] = base.diff_id
    layout.tag("diff-id-mismatch", write_image(layout, layers, wrong, gzip_types))

    layout.finish()
    for entry in layout.entries:
        print(f"{entry['annotations'][REF_NAME]} {entry['digest']}")


if __name__ == "__main__":
    main()
