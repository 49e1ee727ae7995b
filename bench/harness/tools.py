"""The tools under test, each as a group of scenarios that one benchmark run goes through.

Each group starts with its cold scenario, which gets a new target registry with empty storage.
lambda-image also gets an empty cache folder, and buildah and umoci get empty storage folders.
Every group pushes to 127.0.0.1:PORT/app:bench, and after each push the harness checks, outside
the timed region, that the registry now serves that manifest.
"""

import os
import re
import shlex
import tempfile
import urllib.request

from .measure import Scenario, StepFailed, flush_disks, remove_tree, run_untimed
from .registry import Registry

REPOSITORY = "app"
TAG = "bench"
HANDLER = "lambda.handler"
PUSHED_REFERENCE = re.compile(r"^\S+@sha256:[0-9a-f]{64}$")
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


class Context:
    """Inputs of every group: the app, the base image and the folder for temporary files."""

    def __init__(self, app_dir, edit_file, base_reference, registry_binary, scratch_dir):
        self.app_dir = app_dir
        # The file that the one-file-changed scenario appends a comment to. AppEdit restores it.
        self.edit_file = edit_file
        self.base_reference = base_reference
        self.registry_binary = registry_binary
        self.scratch_dir = scratch_dir

    def new_registry(self, name):
        return Registry(self.registry_binary, os.path.join(self.scratch_dir, name))

    def new_folder(self, prefix):
        return tempfile.mkdtemp(prefix=prefix, dir=self.scratch_dir)


class AppEdit:
    """A context manager that appends a comment to the app's edit file and restores the original on exit."""

    def __init__(self, path, run_number):
        self.path = path
        self.comment = f"\n// bench: one-file-changed, run {run_number}\n".encode()

    def __enter__(self):
        with open(self.path, "rb") as original:
            self.original = original.read()
        with open(self.path, "ab") as edited:
            edited.write(self.comment)

    def __exit__(self, *exc_info):
        with open(self.path, "wb") as restored:
            restored.write(self.original)


def check_manifest(registry, reference=TAG):
    """Raise StepFailed unless REGISTRY serves app:REFERENCE."""
    url = f"{registry.url}/v2/{REPOSITORY}/manifests/{reference}"
    request = urllib.request.Request(url, method="HEAD", headers={"Accept": MANIFEST_ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            if response.status == 200:
                return
            status = response.status
    except OSError as error:
        status = error
    raise StepFailed(["HEAD", url], f"the pushed manifest is not in the registry: {status}")


class LambdaImage:
    name = "lambda-image"
    scenarios = ("cold", "warm", "one-file-changed")

    def __init__(self, binary, extra_arguments):
        self.binary = binary
        # Flags that depend on the binary's version, such as --node-modules local.
        self.extra_arguments = list(extra_arguments)

    def run_group(self, context, run_number, record):
        cache = context.new_folder("lambda-image-cache-")
        environment = dict(os.environ, XDG_CACHE_HOME=cache)
        try:
            with context.new_registry("target-lambda-image") as target:
                image = f"{target.host}/{REPOSITORY}:{TAG}"
                argv = [self.binary, "push", "--quiet", *self.extra_arguments,
                        context.app_dir, image, "--base", context.base_reference]
                record("cold", lambda: self.push(argv, environment, target))
                record("warm", lambda: self.push(argv, environment, target))
                with AppEdit(context.edit_file, run_number):
                    record("one-file-changed", lambda: self.push(argv, environment, target))
        finally:
            remove_tree(cache)

    @staticmethod
    def push(argv, environment, target):
        flush_disks()
        scenario = Scenario(environment)
        output = scenario.run(argv).strip()
        if not PUSHED_REFERENCE.match(output):
            raise StepFailed(argv, f"stdout is not one REF@sha256:<digest> line: {output[-500:]!r}")
        check_manifest(target)
        return scenario


class Pipeline:
    """tar, pigz and sha256sum on the app folder: the cost of packing and compressing its files."""

    name = "pipeline"
    scenarios = ("pack",)

    def run_group(self, context, run_number, record):
        command = f"set -o pipefail; tar -cf - -C {shlex.quote(context.app_dir)} . | pigz -p2 -6 | sha256sum"
        record("pack", lambda: self.pack(command))

    @staticmethod
    def pack(command):
        flush_disks()
        scenario = Scenario()
        scenario.run(["bash", "-c", command])
        return scenario


class Buildah:
    """buildah with the vfs storage driver and its storage in a folder of ours."""

    name = "buildah"
    scenarios = ("cold", "warm", "one-file-changed")

    def run_group(self, context, run_number, record):
        storage = context.new_folder("buildah-")
        buildah = ["buildah", "--storage-driver", "vfs",
                   "--root", os.path.join(storage, "root"), "--runroot", os.path.join(storage, "runroot")]
        try:
            with context.new_registry("target-buildah") as target:
                destination = f"docker://{target.host}/{REPOSITORY}:{TAG}"
                record("cold", lambda: self.build_and_push(buildah, context, "bench-app", destination, target))
                record("warm", lambda: self.push(buildah, "bench-app", destination, target))
                with AppEdit(context.edit_file, run_number):
                    record("one-file-changed",
                           lambda: self.build_and_push(buildah, context, "bench-app-changed", destination, target))
        finally:
            remove_tree(storage)

    @staticmethod
    def build_and_push(buildah, context, image_name, destination, target):
        flush_disks()
        scenario = Scenario()
        container = scenario.run(buildah + ["from", "--quiet", "--tls-verify=false",
                                            f"docker://{context.base_reference}"]).strip()
        scenario.run(buildah + ["copy", "--quiet", container, context.app_dir, "/var/task"])
        scenario.run(buildah + ["config", "--cmd", HANDLER, container])
        scenario.run(buildah + ["commit", "--quiet", container, image_name])
        scenario.run(buildah + ["push", "--quiet", "--tls-verify=false", image_name, destination])
        check_manifest(target)
        return scenario

    @staticmethod
    def push(buildah, image_name, destination, target):
        flush_disks()
        scenario = Scenario()
        scenario.run(buildah + ["push", "--quiet", "--tls-verify=false", image_name, destination])
        check_manifest(target)
        return scenario


class UmociSkopeo:
    """skopeo copies the base into an OCI layout, umoci adds the app layer, skopeo pushes."""

    name = "umoci + skopeo"
    scenarios = ("cold", "warm", "one-file-changed")

    def run_group(self, context, run_number, record):
        folder = context.new_folder("umoci-")
        layout = os.path.join(folder, "oci")
        try:
            with context.new_registry("target-umoci") as target:
                destination = f"docker://{target.host}/{REPOSITORY}:{TAG}"
                record("cold", lambda: self.build_and_push(context, layout, "app", destination, target, pull=True))
                record("warm", lambda: self.push(layout, "app", destination, target))
                with AppEdit(context.edit_file, run_number):
                    record("one-file-changed",
                           lambda: self.build_and_push(context, layout, "app-changed", destination, target, pull=False))
        finally:
            remove_tree(folder)

    def build_and_push(self, context, layout, tag, destination, target, pull):
        flush_disks()
        scenario = Scenario()
        if pull:
            scenario.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                          f"docker://{context.base_reference}", f"oci:{layout}:base"])
        scenario.run(["umoci", "tag", "--image", f"{layout}:base", tag])
        scenario.run(["umoci", "insert", "--image", f"{layout}:{tag}", context.app_dir, "/var/task"])
        scenario.run(["umoci", "config", "--image", f"{layout}:{tag}", "--config.cmd", HANDLER])
        self.copy(scenario, layout, tag, destination)
        check_manifest(target)
        return scenario

    def push(self, layout, tag, destination, target):
        flush_disks()
        scenario = Scenario()
        self.copy(scenario, layout, tag, destination)
        check_manifest(target)
        return scenario

    @staticmethod
    def copy(scenario, layout, tag, destination):
        scenario.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:{tag}", destination])


def lambda_image_extra_arguments(binary):
    """Return flags for `push` that this binary needs to measure packing alone.

    When the binary can install dependencies itself, `--node-modules local` makes it pack the
    node_modules folder that the benchmark installed, so every tool packs the same files.
    """
    help_text = run_untimed([binary, "push", "--help"])
    option = re.search(r"--node-modules\b.*?(?=\n\s*-)", help_text, re.DOTALL)
    if option and re.search(r"\blocal\b", option.group(0)):
        return ["--node-modules", "local"]
    return []
