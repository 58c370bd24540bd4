"""What a bioimage.io import may read, checked before bioimageio.spec opens anything.

bioimageio.spec follows every file entry of an rdf.yaml wherever it points and parses YAML with aliases
expanded, so a hostile package could make LabelFree read files outside it, hang on a "billion laughs"
rdf.yaml, or unpack a few kilobytes into gigabytes. ``check_package`` refuses, with one sentence:

* a package (zip or folder) that is not bounded: an rdf.yaml over ``MAX_RDF_BYTES``, or one whose
  YAML, aliases expanded, holds more than ``MAX_YAML_NODES`` values or nests deeper than Python can walk;
  a zip with more than ``MAX_MEMBERS`` files, a member name that is absolute or climbs out (``../``), a
  member that unpacks more than ``MAX_RATIO`` times its stored size (a zip bomb), or files that together
  unpack to more than ``MAX_PACKAGE_BYTES`` (the weights are read whole into memory);
* a file entry (``source``, ``documentation``, ``covers``, test and sample tensors, attachments...) that is
  a URL, an absolute path or a path out of the package: only files inside the package are used.
"""

from __future__ import annotations

import posixpath
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterator

import yaml

from labelfree_app.errors import ModelError

MAX_RDF_BYTES = 1 << 20  # a real rdf.yaml is a few kilobytes
MAX_YAML_NODES = 100_000  # values in the document with aliases expanded
MAX_PACKAGE_BYTES = 512 << 20  # what the files may unpack to; weights and test tensors are read whole
MAX_MEMBERS = 10_000
MAX_RATIO = 100  # weights compress ~1.1×, images a few ×; only a bomb unpacks 100× (files over 1 MiB)
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml", "model.yaml")
# Parts bioimageio.spec never opens as files (free-form config, citations, people, badges' web icons).
NOT_FILES = frozenset({"config", "cite", "authors", "maintainers", "badges", "links", "training_data"})
# Keys whose string values (or lists of them, or dicts with "source") name files of the package.
FILE_KEYS = frozenset({"source", "documentation", "covers", "test_inputs", "test_outputs", "sample_inputs",
                       "sample_outputs", "files", "architecture", "dependencies", "environment_file", "icon"})


class BioimageioPackageError(ModelError):
    """A bioimage.io package that reaches outside itself or would unpack or parse without bound."""


def _refuse(source: Path, why: str) -> BioimageioPackageError:
    return BioimageioPackageError(f"The bioimage.io model {source} cannot be imported: {why}.", path=source)


def _rdf_name(names: list[str]) -> str | None:
    """The package's rdf file among ``names`` (top level), as bioimageio.spec picks it."""
    for wanted in RDF_NAMES:
        for name in sorted(names):
            if "/" not in name and (name == wanted or name.endswith("." + wanted)):
                return name
    return None


def check_package(source: Path) -> None:
    """Refuse ``source`` (a zip, a folder, or its rdf.yaml) unless it is bounded and names only its own files."""
    source = Path(source)
    if source.is_file() and zipfile.is_zipfile(source):
        _check_zip(source)
    elif source.is_dir():
        name = _rdf_name([p.name for p in source.iterdir()])
        if name is not None:
            _check_folder(source, source / name)
    elif source.is_file():
        _check_folder(source, source, root=source.parent)


def _check_zip(source: Path) -> None:
    try:
        with zipfile.ZipFile(source) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise _refuse(source, f"it holds {len(members)} files, more than the {MAX_MEMBERS} a model may have")
            total = 0
            for member in members:
                _check_relative(source, member.filename, "holds a file named")
                total += member.file_size
                if member.file_size > (1 << 20) and member.file_size > MAX_RATIO * max(1, member.compress_size):
                    raise _refuse(source, f"its file {member.filename} unpacks {member.file_size // max(1, member.compress_size)} "
                                          "times larger than it is stored, which only a zip bomb does")
            if total > MAX_PACKAGE_BYTES:
                raise _refuse(source, f"it unpacks to {total / 1e6:.0f} MB, more than the {MAX_PACKAGE_BYTES >> 20} MB "
                                      "a model package may hold (LabelFree reads its weights whole into memory)")
            names = {posixpath.normpath(m.filename) for m in members if not m.is_dir()}
            rdf = _rdf_name(sorted(names))
            if rdf is None:
                return  # bioimageio.spec says what is missing
            info = archive.getinfo(next(m.filename for m in members if posixpath.normpath(m.filename) == rdf))
            if info.file_size > MAX_RDF_BYTES:
                raise _too_long(source, info.file_size)
            text = archive.read(info)
    except zipfile.BadZipFile as exc:
        raise _refuse(source, f"it is a damaged zip file ({exc})") from exc
    except OSError as exc:
        raise _refuse(source, f"it cannot be read ({exc.strerror or exc})") from exc
    for entry in _file_entries(_load_yaml(source, text)):
        name = _check_relative(source, entry, "names a file")
        if name not in names:
            continue  # a missing file: bioimageio.spec names it


def _check_folder(source: Path, rdf: Path, root: Path | None = None) -> None:
    root = (root or source).resolve()
    size = rdf.stat().st_size
    if size > MAX_RDF_BYTES:
        raise _too_long(source, size)
    total = 0
    for entry in _file_entries(_load_yaml(source, rdf.read_bytes())):
        _check_relative(source, entry, "names a file")
        path = (root / entry).resolve()
        if path != root and root not in path.parents:
            raise _outside(source, entry)  # a link inside the package that leads out of it
        try:
            info = path.stat()
        except OSError:
            continue  # a missing file: bioimageio.spec names it
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(source, f"its file entry {entry} is not a regular file (a folder, pipe or device)")
        total += info.st_size
    if total > MAX_PACKAGE_BYTES:
        raise _refuse(source, f"its files hold {total / 1e6:.0f} MB, more than the {MAX_PACKAGE_BYTES >> 20} MB "
                              "a model package may hold (LabelFree reads its weights whole into memory)")


def _too_long(source: Path, size: int) -> BioimageioPackageError:
    return _refuse(source, f"its rdf.yaml is {size / 1e6:.1f} MB, more than the {MAX_RDF_BYTES >> 20} MB a model "
                           "description may be")


def _outside(source: Path, entry: str) -> BioimageioPackageError:
    return _refuse(source, f"it names the file {entry} outside the package, and LabelFree uses only files inside "
                           "the package (a bioimage.io zip as downloaded)")


def _check_relative(source: Path, name: str, what: str) -> str:
    """``name`` normalized, when it is a relative path that stays inside the package; refused otherwise."""
    if "://" in name or name.startswith(("file:", "~")) or PureWindowsPath(name).is_absolute() or \
            PurePosixPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise _outside(source, name)
    normal = posixpath.normpath(name.replace("\\", "/"))
    if normal == ".." or normal.startswith("../"):
        raise _outside(source, name)
    return normal


def _load_yaml(source: Path, text: bytes) -> Any:
    """The rdf's content by YAML's safe loader, once its size with aliases expanded is known to be bounded."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None
        _count_nodes(source, node)
        return yaml.safe_load(text)
    except RecursionError as exc:
        raise _refuse(source, "its rdf.yaml nests deeper than a model description can") from exc
    except yaml.YAMLError as exc:
        raise _refuse(source, f"its rdf.yaml is not valid YAML ({str(exc).splitlines()[0][:200]})") from exc


def _count_nodes(source: Path, root: yaml.Node) -> None:
    """Refuse a document whose expanded size (an alias counts as all it stands for) passes ``MAX_YAML_NODES``."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(sizes.get(id(child), 0) for child in children)
        if sizes[id(node)] > MAX_YAML_NODES:
            raise _refuse(source, f"its rdf.yaml expands (through YAML aliases) to more than {MAX_YAML_NODES} "
                                  "values, far more than a model description holds")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _file_entries(document: Any) -> Iterator[str]:
    """Every string under a file key of the document (a "conda:"/"pip:" prefix and a 0.4 ":Class" suffix dropped)."""
    def strings(value: Any) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, dict) and "source" in value:
            yield from strings(value["source"])

    stack: list[Any] = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key in NOT_FILES:
                    continue
                if key in FILE_KEYS:
                    yield from (_file_part(key, s) for s in strings(item) if _names_file(key, s))
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)


def _names_file(key: str, value: str) -> bool:
    """False for values under a file key that are not files: an emoji icon, an 0.5 import_from module."""
    return bool(value.strip()) and not (key == "icon" and len(value) <= 2)


def _file_part(key: str, value: str) -> str:
    value = value.strip()
    if key == "dependencies" and value.split(":", 1)[0] in ("conda", "pip"):
        value = value.split(":", 1)[1]
    if key == "architecture" and re.fullmatch(r"[^:]+\.py:\w+", value):
        value = value.rsplit(":", 1)[0]  # 0.4 "file.py:ClassName"
    return value
