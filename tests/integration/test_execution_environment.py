"""meta/execution-environment.yml: `ansible-builder create` writes a build context whose requirements are
the collection's, and the image build's own introspection of the installed collection finds the same ones."""

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys

import yaml
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def requirement_lines(path):
    with open(path) as handle:
        return [line.split("#")[0].strip() for line in handle if line.split("#")[0].strip()]


def dev_pin(name):
    for line in requirement_lines(os.path.join(ROOT, "requirements", "dev.txt")):
        if re.split(r"[=<>\[ ]", line)[0].lower() == name:
            return line
    raise AssertionError(name + " is not pinned in requirements/dev.txt")


def third_party_imports():
    """Top-level modules the plugins import that are neither stdlib nor Ansible."""
    found = set()
    for folder, _dirs, files in os.walk(os.path.join(ROOT, "plugins")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name)) as handle:
                    tree = ast.parse(handle.read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        found.update(alias.name.split(".")[0] for alias in node.names)
                    elif isinstance(node, ast.ImportFrom) and not node.level:
                        found.add(node.module.split(".")[0])
    return {name for name in found
            if name not in sys.stdlib_module_names and name not in ("ansible", "ansible_collections", "__future__")}


def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def with_dependencies(names):
    """The distributions ``names`` install, transitively (as installed here)."""
    seen, todo = set(), [normalise(name) for name in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(normalise(requirement.name))
    return seen


def test_build_context_requirements_match_the_collection(tmp_path):
    # The definition refers to ../build/dist/keyops-lifecycle.tar.gz: lay out the same shape in tmp.
    (tmp_path / "meta").mkdir()
    for name in ("execution-environment.yml", "requirements.txt", "bindep.txt", "ee-extras.txt"):
        shutil.copy(os.path.join(ROOT, "meta", name), tmp_path / "meta" / name)
    dist = tmp_path / "build" / "dist"
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(dist), ROOT],
                   check=True, capture_output=True, text=True)
    (built,) = dist.glob("keyops-lifecycle-*.tar.gz")
    shutil.copy(built, dist / "keyops-lifecycle.tar.gz")

    context = tmp_path / "context"
    subprocess.run([os.path.join(BIN, "ansible-builder"), "create", "-f", str(tmp_path / "meta" / "execution-environment.yml"),
                    "-c", str(context), "--output-filename", "Containerfile"], check=True, capture_output=True, text=True)
    build = context / "_build"

    # Python and system requirements: the collection's files, byte for byte.
    collection_python = requirement_lines(os.path.join(ROOT, "requirements.txt"))
    assert requirement_lines(build / "requirements.txt") == collection_python
    assert requirement_lines(build / "bindep.txt") == requirement_lines(os.path.join(ROOT, "bindep.txt"))
    # ... and they are what the tests run with (runtime.txt includes the same file).
    assert "-r ../requirements.txt" in requirement_lines(os.path.join(ROOT, "requirements", "runtime.txt"))

    # Every third-party module the plugins import comes from a pinned requirement.
    distributions = importlib.metadata.packages_distributions()
    available = with_dependencies({re.split(r"[=<>\[ ]", line)[0] for line in collection_python} | {"ansible-core"})
    for module in third_party_imports():
        providers = {normalise(dist) for dist in distributions.get(module, [])}
        assert providers & available, "plugins import %s, which no requirement brings (%s)" % (module, providers)

    # The collection itself goes in from the tarball copied into the context.
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    assert galaxy["collections"] == [{"name": "collections/keyops-lifecycle.tar.gz", "type": "file"}]
    assert (build / "collections" / "keyops-lifecycle.tar.gz").read_bytes() == built.read_bytes()

    # ansible-core and ansible-runner are the versions the tests use.
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG ANSIBLE_INSTALL_REFS="%s %s"' % (dev_pin("ansible-core"), dev_pin("ansible-runner")) in containerfile

    # The image's optional extras (mitogen, for the mitogen_linear fast path): installed in the final stage at
    # the version the tests run mitogen_linear with, and not requirements of the collection.
    extras = requirement_lines(os.path.join(ROOT, "meta", "ee-extras.txt"))
    assert extras == [dev_pin("mitogen")]
    assert requirement_lines(build / "extras" / "ee-extras.txt") == extras
    final = containerfile.split("FROM base AS final")[1]
    assert "COPY _build/extras/ee-extras.txt /output/ee-extras.txt" in final
    assert "RUN $PYCMD -m pip install --no-cache-dir -r /output/ee-extras.txt" in final
    assert "ln -s \"$strategies\" /usr/share/ansible/plugins/strategy" in final
    assert final.index("ee-extras.txt") < final.index("RUN rm -rf /output")
    extra_names = {normalise(Requirement(line).name) for line in extras}
    assert not extra_names & {normalise(Requirement(line).name) for line in collection_python}

    # The image build runs introspect.py over the installed collections: it must find our requirements
    # through the collection's own meta/execution-environment.yml.
    installed = tmp_path / "installed"
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--force", str(built), "-p", str(installed)],
                   check=True, capture_output=True, text=True)
    found = subprocess.run([sys.executable, str(build / "scripts" / "introspect.py"), "introspect", str(installed)],
                           check=True, capture_output=True, text=True).stdout
    introspected = yaml.safe_load(found)
    assert [line.split("#")[0].strip() for line in introspected["python"]] == collection_python
    assert [line.split("#")[0].strip() for line in introspected["system"]] == requirement_lines(os.path.join(ROOT, "bindep.txt"))
    assert all("from collection keyops.lifecycle" in line for line in introspected["python"])
