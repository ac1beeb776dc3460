"""ml.yaml: load and validate a lab's configuration (SPEC 2) and edit its inputs.

Validation works on PyYAML's node tree, so every problem carries the line and column
it was found at, and all problems of a file are reported together. Malformed input of
any kind ends as a ``ConfigError``, never as another exception.

``exclude`` defaults to ``DEFAULT_EXCLUDE``: hidden files, ``__pycache__``, the
``inputs/`` and ``outputs/`` folders an execution creates in its workspace, and a
lab's own ``.venv``. An ``exclude`` in ml.yaml replaces the default (as ML's
``cli.exclude`` did); ``exclude: []`` snapshots everything.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

from mldesk.agent.errors import UserError

from mldesk.core.metricsconfig import MetricsConfig, MetricsConfigError, compile_pattern
from mldesk.core.value import FrozenValue

DEFAULT_IMAGE = "keras_v2-0-x_python_3-1"
ML_IMAGE_IDS = (
    "keras_v2-0-x_python_3-1",
    "keras_v2-0-x_python_2-1",
    "tensorflow_v1-4-x-gpu_python_3-1",
    "tensorflow_v1-4-x-gpu_python_2-1",
)
DEFAULT_EXCLUDE = (".*", "__pycache__", "outputs", "inputs", ".venv")
HARDWARE_TYPES = ("cpu", "gpu")
URL_SCHEMES = ("http", "https", "file")

_TAG = "tag:yaml.org,2002:"
yaml = None  # PyYAML, imported on the first parse (_import_yaml): an unchanged ml.yaml comes from the cache
_TOP_KEYS = ("dockerImageId", "hardwareType", "gpus", "parameters", "inputs", "exclude", "cli", "metrics",
             "network")
_GPUS_HINT = "write gpus: 1 for any one GPU, or gpus: [0, 2] for those (nvidia-smi indices)"
NETWORKS = ("none", "bridge", "host")
MAX_CONFIG_BYTES = 1 << 20  # a bigger ml.yaml is refused before it is parsed
MAX_PARAMETERS = 10_000
MAX_INPUTS = 10_000

# A Docker image reference (distribution/reference), or a name of the alias table:
# [registry[:port]/]path[:tag][@digest]; never starting with "-" (it would read as a flag)
_IMAGE_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]+)?/)?"
    r"[A-Za-z0-9]+(?:(?:[._]|__|-+)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[._]|__|-+)[A-Za-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")


def image_problem(image: str) -> str | None:
    """Why ``image`` is not a Docker image reference, or None."""
    if not image or len(image) > 512 or not _IMAGE_RE.match(image):
        return f"{image!r} is not a Docker image reference (like python:3.11-slim or registry.example.org/team/image:tag)"
    return None
_ML_ONLY = {"mounts": "use inputs to fetch the files instead"}
_KINDS = {"str": "a string", "null": "empty", "bool": "true/false", "int": "a number", "float": "a number",
          "timestamp": "a date", "seq": "a list", "map": "a mapping"}
_PARAM_HINT = "write each parameter as: - pass-as: '--flag=value'"
_INPUT_HINT = "write each input as: - name: data.csv  url: https://example.org/data.csv"
_EXCLUDE_HINT = "write exclude: ['.*', '__pycache__'] or a single pattern"
_METRICS_KEYS = ("patterns", "replace_defaults", "ignore", "primary")
_METRICS_HINT = "write metrics: {patterns: ['(?P<key>\\w+) is (?P<value>\\S+)'], ignore: [v_num], primary: val/acc}"
_PATTERN_HINT = "write a regex with (?P<value>...) and (?P<key>...) groups, or {regex: 'acc (?P<value>\\S+)', key: acc}"


class InputSpec(FrozenValue):
    _fields = __slots__ = ("name", "url")

    def __init__(self, name: str, url: str):
        self._set("name", name)
        self._set("url", url)


@functools.total_ordering
class Problem(FrozenValue):
    """Ordered by its fields in order (line, column, message, hint, severity)."""

    _fields = __slots__ = ("line", "column", "message", "hint", "severity")

    def __init__(self, line: int, column: int, message: str, hint: str, severity: str):
        self._set("line", line)  # 1-based
        self._set("column", column)  # 1-based
        self._set("message", message)
        self._set("hint", hint)
        self._set("severity", severity)  # 'error' | 'warning'

    def __lt__(self, other):
        if other.__class__ is self.__class__:
            return self._key() < other._key()
        return NotImplemented

    def __str__(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"ml.yaml:{self.line}:{self.column}: {self.message}{hint}"


class LabConfig(FrozenValue):
    _fields = __slots__ = ("docker_image_id", "hardware_type", "parameters", "inputs", "exclude", "metrics",
                           "warnings", "path", "gpus", "network")

    def __init__(
        self,
        docker_image_id: str = DEFAULT_IMAGE,
        hardware_type: str = "cpu",
        parameters: tuple[str, ...] = (),
        inputs: tuple[InputSpec, ...] = (),
        exclude: tuple[str, ...] = DEFAULT_EXCLUDE,
        metrics: MetricsConfig = MetricsConfig(),
        warnings: tuple[Problem, ...] = (),
        path: Path | None = None,
        # how many GPUs (any free ones), or which ones (nvidia-smi indices)
        gpus: int | tuple[int, ...] = 0,
        network: str | None = None,  # none | bridge | host: the container's network (None: the host's setting)
    ):
        self._set("docker_image_id", docker_image_id)
        self._set("hardware_type", hardware_type)
        self._set("parameters", parameters)
        self._set("inputs", inputs)
        self._set("exclude", exclude)
        self._set("metrics", metrics)
        self._set("warnings", warnings)
        self._set("path", path)
        self._set("gpus", gpus)
        self._set("network", network)

    def argv(self) -> list[str]:
        """Arguments for ``main.py``: each pass-as split like a POSIX shell splits words,
        without expansion, globbing or substitution. Never give them to a shell."""
        return [word for p in self.parameters for word in shlex.split(p)]


class ConfigError(UserError):
    """ml.yaml has errors; ``problems`` holds every one, in file order."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(map(str, self.problems)))


def validate_input_name(name: str) -> str | None:
    """Why ``name`` cannot be a file directly inside ``inputs/``, or None if it can
    (the agent's check: the host applies the same rule)."""
    from mldesk.agent.inputs import validate_name

    return validate_name(name)


def _url_problem(url: str) -> tuple[str, str] | None:
    """(message, hint) when ``url`` cannot be fetched as an input, else None."""
    full = "write a full URL: https://example.org/data.csv or file:///absolute/path/data.csv"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"url {url!r} is not valid: {exc}", full
    scheme = parts.scheme.lower()
    if not scheme:
        return f"url {url!r} has no scheme", full
    if scheme not in URL_SCHEMES:
        return f"unsupported URL scheme {scheme!r} in {url!r}", "use an http://, https:// or file:// URL"
    if scheme != "file" and not parts.netloc:
        return f"url {url!r} has no host", full
    return None


def _kind(node: yaml.Node) -> str:
    suffix = node.tag.rsplit(":", 1)[-1]
    return _KINDS.get(suffix, f"a {node.tag.replace(_TAG, '!!')} value")


def _suggest(name: str, known: tuple[str, ...]) -> str:
    import difflib

    folded = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), folded, 1, 0.6)
    return f"did you mean {folded[close[0]]!r}?" if close else "known keys: " + ", ".join(known)


class _Checker:
    """Walks the node tree of one ml.yaml, collecting problems."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, node: yaml.Node, message: str, hint: str, severity: str = "error") -> None:
        mark = node.start_mark
        self.problems.append(Problem(mark.line + 1, mark.column + 1, message, hint, severity))

    def fields(self, node: yaml.MappingNode, known: tuple[str, ...], where: str) -> dict[str, yaml.Node]:
        """The known keys of a mapping and their value nodes; others are reported."""
        found: dict[str, yaml.Node] = {}
        seen: set[str] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                self.add(key, f"{_kind(key)} cannot be a key{where}; ignored", "keys are plain names", "warning")
                continue
            name = key.value
            if name in seen:
                self.add(key, f"duplicate key {name!r}{where}", "remove one of them")
            elif name in known:
                found[name] = value
            elif name in _ML_ONLY:
                self.add(key, f"{name!r} is not supported by mldesk and is ignored", _ML_ONLY[name], "warning")
            else:
                self.add(key, f"unknown key {name!r}{where} is ignored", _suggest(name, known), "warning")
            seen.add(name)
        return found

    def text(self, node: yaml.Node, what: str, hint: str, numbers: bool = False) -> str | None:
        tags = (_TAG + "str", _TAG + "int", _TAG + "float") if numbers else (_TAG + "str",)
        if isinstance(node, yaml.ScalarNode) and node.tag in tags:
            return node.value
        kind = "a string or a number" if numbers else "a string"
        self.add(node, f"{what} must be {kind}, not {_kind(node)}", hint)
        return None

    def items(self, node: yaml.Node, what: str, hint: str) -> list[yaml.Node]:
        if isinstance(node, yaml.SequenceNode):
            return node.value
        self.add(node, f"{what} must be a list, not {_kind(node)}", hint)
        return []

    def mapping_items(self, node: yaml.Node, what: str, hint: str) -> list[yaml.MappingNode]:
        good = []
        for item in self.items(node, what, hint):
            if isinstance(item, yaml.MappingNode):
                good.append(item)
            else:
                self.add(item, f"each {what} item must be a mapping, not {_kind(item)}", hint)
        return good

    def config(self, root: yaml.Node | None, path: Path | None) -> LabConfig:
        if root is None or root.tag == _TAG + "null":
            return LabConfig(path=path)
        if not isinstance(root, yaml.MappingNode):
            self.add(root, f"the top level must be a mapping of keys, not {_kind(root)}",
                     "start with lines like  dockerImageId: " + DEFAULT_IMAGE)
            return LabConfig(path=path)
        values = {k: v for k, v in self.fields(root, _TOP_KEYS, "").items() if v.tag != _TAG + "null"}
        image, hardware = DEFAULT_IMAGE, "cpu"
        if "dockerImageId" in values:
            node = values["dockerImageId"]
            image = self.text(node, "dockerImageId", "put the image name in quotes")
            if image is not None and not image.strip():
                self.add(node, "dockerImageId is empty", f"use {DEFAULT_IMAGE} or a Docker image reference")
            elif image is not None and image_problem(image):
                self.add(node, f"dockerImageId {image_problem(image)}", f"use {DEFAULT_IMAGE} or a Docker image reference")
                image = None
        network = None
        if "network" in values:
            node = values["network"]
            network = self.text(node, "network", "use none, bridge or host")
            if network is not None and network not in NETWORKS:
                self.add(node, f"network must be none, bridge or host, not {network!r}",
                         "none: no network at all; bridge: Docker's default; host: the host's network")
                network = None
        if "hardwareType" in values:
            node = values["hardwareType"]
            hardware = self.text(node, "hardwareType", "use cpu or gpu")
            if hardware is not None and hardware.lower() not in HARDWARE_TYPES:
                self.add(node, f"hardwareType must be cpu or gpu, not {hardware!r}", "use cpu or gpu")
        exclude = []
        if "exclude" in values:
            exclude += self.patterns(values["exclude"], "exclude")
        if "cli" in values:
            cli = values["cli"]
            if isinstance(cli, yaml.MappingNode):
                found = self.fields(cli, ("exclude",), " in cli")
                if "exclude" in found:
                    exclude += self.patterns(found["exclude"], "cli.exclude")
            else:
                self.add(cli, f"cli must be a mapping, not {_kind(cli)}", "write cli: {exclude: ['.*']}")
        gpus: int | tuple[int, ...] = 1 if hardware and hardware.lower() == "gpu" else 0
        if "gpus" in values:
            given = self.gpus(values["gpus"])
            if given is not None:
                if hardware and hardware.lower() == "cpu" and "hardwareType" in values and given:
                    self.add(values["hardwareType"], "hardwareType is cpu but gpus asks for GPUs; gpus wins",
                             "remove hardwareType, or set it to gpu", "warning")
                elif hardware and hardware.lower() == "gpu" and not given:
                    self.add(values["gpus"], "gpus is 0 but hardwareType is gpu; gpus wins",
                             "remove hardwareType, or ask for gpus: 1", "warning")
                gpus = given
                hardware = "gpu" if given else "cpu"
        parameters = self.parameters(values["parameters"]) if "parameters" in values else []
        inputs = self.inputs(values["inputs"]) if "inputs" in values else []
        metrics = self.metrics(values["metrics"]) if "metrics" in values else MetricsConfig()
        return LabConfig(
            docker_image_id=image,
            hardware_type=hardware and hardware.lower(),
            parameters=tuple(parameters),
            inputs=tuple(inputs),
            gpus=gpus,
            exclude=tuple(exclude) if "exclude" in values or "cli" in values else DEFAULT_EXCLUDE,
            metrics=metrics,
            network=network,
            warnings=tuple(sorted(p for p in self.problems if p.severity == "warning")),
            path=path,
        )

    def gpus(self, node: yaml.Node) -> int | tuple[int, ...] | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "int":
            try:
                n = int(node.value, 0)
            except ValueError:
                n = -1
            if n < 0:
                self.add(node, f"gpus must be a count of 0 or more, not {node.value}", _GPUS_HINT)
                return None
            return n
        if isinstance(node, yaml.SequenceNode):
            out: list[int] = []
            for item in node.value:
                value = None
                if isinstance(item, yaml.ScalarNode) and item.tag == _TAG + "int":
                    try:
                        value = int(item.value, 0)
                    except ValueError:
                        value = None
                if value is None or value < 0:
                    self.add(item, f"each gpus item must be a GPU index (0, 1, ...), not "
                                   f"{item.value if isinstance(item, yaml.ScalarNode) else _kind(item)}", _GPUS_HINT)
                    return None
                if value in out:
                    self.add(item, f"GPU {value} is listed twice in gpus", "list each GPU once")
                    return None
                out.append(value)
            return tuple(sorted(out))
        shown = repr(node.value) if isinstance(node, yaml.ScalarNode) else _kind(node)
        self.add(node, f"gpus must be a number or a list of GPU indices, not {shown}", _GPUS_HINT)
        return None

    def patterns(self, node: yaml.Node, what: str) -> list[str]:
        nodes = [node] if isinstance(node, yaml.ScalarNode) else self.items(node, what, _EXCLUDE_HINT)
        out = []
        for item in nodes:
            pattern = self.text(item, f"{what} pattern", "put the pattern in quotes: '*.ckpt'")
            if pattern == "":
                self.add(item, f"{what} pattern is empty", "remove it")
            elif pattern is not None:
                out.append(pattern)
        return out

    def parameters(self, node: yaml.Node) -> list[str]:
        out: list[str] = []
        if isinstance(node, yaml.SequenceNode) and len(node.value) > MAX_PARAMETERS:
            self.add(node, f"parameters has {len(node.value)} items; at most {MAX_PARAMETERS} are allowed",
                     "pass many values through a file in the lab instead")
            return out
        for item in self.mapping_items(node, "parameters", _PARAM_HINT):
            fields = self.fields(item, ("pass-as",), " in a parameters item")
            if "pass-as" not in fields:
                self.add(item, "parameters item has no pass-as", _PARAM_HINT)
                continue
            value_node = fields["pass-as"]
            value = self.text(value_node, "pass-as", "put it in quotes: pass-as: '--flag=value'", numbers=True)
            if value is None:
                continue
            if "\0" in value:
                self.add(value_node, "pass-as contains a NUL character", "program arguments cannot hold NUL; remove it")
            try:
                shlex.split(value)
            except ValueError as exc:
                self.add(value_node, f"pass-as {value!r} cannot be split into arguments: {exc}",
                         "close the quote, or escape a literal quote with a backslash: \\'")
            out.append(value)
        return out

    def metrics(self, node: yaml.Node) -> MetricsConfig:
        """The ``metrics:`` section (see mldesk.core.metrics and the README)."""
        if not isinstance(node, yaml.MappingNode):
            self.add(node, f"metrics must be a mapping, not {_kind(node)}", _METRICS_HINT)
            return MetricsConfig()
        found = {k: v for k, v in self.fields(node, _METRICS_KEYS, " in metrics").items() if v.tag != _TAG + "null"}
        patterns: list[tuple[str, str | None]] = []
        if "patterns" in found:
            value = found["patterns"]
            items = [value] if isinstance(value, (yaml.ScalarNode, yaml.MappingNode)) else \
                self.items(value, "metrics.patterns", _PATTERN_HINT)
            for item in items:
                regex_node, key = item, None
                if isinstance(item, yaml.MappingNode):
                    fields = self.fields(item, ("regex", "key"), " in a metrics pattern")
                    if "regex" not in fields:
                        self.add(item, "metrics pattern has no regex", _PATTERN_HINT)
                        continue
                    regex_node = fields["regex"]
                    if "key" in fields:
                        key = self.text(fields["key"], "metrics pattern key", "write key: val/acc")
                        if key is None:
                            continue
                        if not key.strip():
                            self.add(fields["key"], "metrics pattern key is empty", "write key: val/acc")
                            continue
                regex = self.text(regex_node, "metrics pattern", "put the regex in single quotes")
                if regex is None:
                    continue
                try:
                    compile_pattern(regex, key)
                except MetricsConfigError as exc:
                    self.add(regex_node, f"metrics pattern {regex!r}: {exc}", _PATTERN_HINT)
                    continue
                patterns.append((regex, key))
        replace = False
        if "replace_defaults" in found:
            rnode = found["replace_defaults"]
            if rnode.tag == _TAG + "bool":
                replace = rnode.value.lower() in ("true", "yes", "on", "y")
            else:
                self.add(rnode, f"metrics.replace_defaults must be true/false, not {_kind(rnode)}", "write true or false")
        ignore = self.patterns(found["ignore"], "metrics.ignore") if "ignore" in found else []
        primary = goal = None
        if "primary" in found:
            pnode = found["primary"]
            key_node = pnode
            if isinstance(pnode, yaml.MappingNode):
                fields = self.fields(pnode, ("key", "goal"), " in metrics.primary")
                key_node = fields.get("key")
                if key_node is None:
                    self.add(pnode, "metrics.primary has no key", "write primary: {key: val/acc, goal: max}")
                if "goal" in fields:
                    goal = self.text(fields["goal"], "metrics.primary.goal", "use min or max")
                    if goal is not None and goal.lower() not in ("min", "max"):
                        self.add(fields["goal"], f"metrics.primary.goal must be min or max, not {goal!r}",
                                 "min: lower is better (a loss), max: higher is better (an accuracy)")
                        goal = None
                    goal = goal and goal.lower()
            if key_node is not None:
                primary = self.text(key_node, "metrics.primary", "write primary: val/acc", numbers=True)
                if primary is not None and not primary.strip():
                    self.add(key_node, "metrics.primary is empty", "write primary: val/acc")
                    primary = None
        return MetricsConfig(patterns=tuple(patterns), replace_defaults=replace, ignore=tuple(ignore),
                             primary=primary, goal=goal)

    def inputs(self, node: yaml.Node) -> list[InputSpec]:
        out: list[InputSpec] = []
        if isinstance(node, yaml.SequenceNode) and len(node.value) > MAX_INPUTS:
            self.add(node, f"inputs has {len(node.value)} items; at most {MAX_INPUTS} are allowed",
                     "fetch an archive and unpack it in main.py instead")
            return out
        seen: dict[str, tuple[str, int]] = {}
        for item in self.mapping_items(node, "inputs", _INPUT_HINT):
            fields = self.fields(item, ("name", "url"), " in an inputs item")
            url = name = None
            if "url" in fields:
                url = self.text(fields["url"], "url", "put the URL in quotes")
                problem = url is not None and _url_problem(url)
                if problem:
                    self.add(fields["url"], *problem)
            else:
                self.add(item, "inputs item has no url", "add url: https://... or file:///...")
            if "name" in fields:
                name_node = fields["name"]
                name = self.text(name_node, "name", "put the name in quotes")
                problem = name is not None and validate_input_name(name)
                if problem:
                    self.add(name_node, problem, "use a plain file name such as data.csv; it is saved as inputs/NAME")
                elif name is not None and name.casefold() in seen:
                    first, line = seen[name.casefold()]
                    if first == name:
                        self.add(name_node, f"duplicate input name {name!r}", f"already used on line {line}; rename one")
                    else:
                        self.add(name_node, f"input names {first!r} (line {line}) and {name!r} differ only in case",
                                 "they collide on case-insensitive file systems; rename one", "warning")
                elif name is not None:
                    seen[name.casefold()] = (name, name_node.start_mark.line + 1)
            else:
                base = (url or "").rstrip("/").rsplit("/", 1)[-1] or "data.csv"
                self.add(item, "inputs item has no name", f"add name: {base} (the file name under inputs/)")
            if name is not None and url is not None:
                out.append(InputSpec(name, url))
        return out


def _yaml_problem(exc: Exception, text: str) -> Problem:
    """A Problem for any exception raised while reading YAML text."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
    else:  # a ReaderError names the offending character; anything else points at the start
        char = getattr(exc, "character", None)
        pos = max(text.find(chr(char)), 0) if isinstance(char, int) else 0
        line, column = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
    problem, context = getattr(exc, "problem", None) or "", getattr(exc, "context", None) or ""
    if problem:
        message = "not valid YAML: " + ", ".join(filter(None, (context, problem)))
    elif isinstance(exc, yaml.YAMLError):
        message = "not valid YAML: " + str(exc).split("\n")[0]
    else:
        message = f"YAML could not be read: {type(exc).__name__}: {exc}"
    at = (text.split("\n")[line - 1:line] or [""])[0][column - 1:column]
    if "tab" in problem or at == "\t":
        hint = "indent with spaces, not tabs"
    elif any(word in context for word in ("alias", "anchor", "tag")):
        hint = "quote values that start with *, & or !, e.g. '*.pyc'"
    else:
        hint = "check the indentation, colons and quotes here"
    return Problem(line, column, message, hint, "error")


def _import_yaml() -> None:
    global yaml
    if yaml is None:
        import yaml as module

        yaml = module


def parse_config(text: str, path: Path | str | None = None) -> LabConfig:
    """Validate ml.yaml text; raises ConfigError holding every error."""
    text = text.removeprefix("\ufeff")
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([Problem(1, 1, f"ml.yaml is over {MAX_CONFIG_BYTES:,} characters",
                                   "keep ml.yaml small: put data in files the lab reads", "error")])
    _import_yaml()
    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except Exception as exc:  # malformed input of any kind is the user's to fix, never a traceback
        raise ConfigError([_yaml_problem(exc, text)]) from None
    checker = _Checker()
    config = checker.config(root, Path(path) if path is not None else None)
    errors = sorted(p for p in checker.problems if p.severity == "error")
    if errors:
        raise ConfigError(errors)
    return config


def parse_gpus_option(text: str) -> int | tuple[int, ...]:
    """``--gpus``: ``N`` (any N free GPUs) or ``0,2`` (those indices)."""
    text = text.strip()
    try:
        if "," in text or text.startswith("["):
            values = [int(v) for v in text.strip("[]").split(",") if v.strip()]
            if any(v < 0 for v in values) or len(set(values)) != len(values):
                raise ValueError
            return tuple(sorted(values))
        n = int(text)
        if n < 0:
            raise ValueError
        return n
    except ValueError:
        raise ValueError(f"--gpus takes a count (2) or GPU indices (0,2), not {text!r}") from None


def find_config(lab_dir: Path | str) -> Path | None:
    """The lab's ml.yaml, its name matched case-insensitively (``ml.yaml`` preferred)."""
    names = sorted(e.name for e in os.scandir(lab_dir) if e.name.lower() == "ml.yaml" and e.is_file())
    if not names:
        return None
    return Path(lab_dir) / ("ml.yaml" if "ml.yaml" in names else names[0])


def _read_bytes(path: Path) -> bytes:
    """The file's bytes (at most MAX_CONFIG_BYTES)."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError([Problem(1, 1, f"ml.yaml is {size:,} bytes; at most {MAX_CONFIG_BYTES:,} are read",
                                       "keep ml.yaml small: put data in files the lab reads", "error")])
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError([Problem(1, 1, f"ml.yaml is over {MAX_CONFIG_BYTES:,} bytes",
                                       "keep ml.yaml small: put data in files the lab reads", "error")])
    except OSError as exc:
        raise ConfigError([Problem(1, 1, f"cannot read {path}: {exc.strerror}", "check the file's permissions", "error")])
    return data


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line, column = before.count(b"\n") + 1, len(before.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")) + 1
        raise ConfigError([Problem(line, column, "ml.yaml is not UTF-8 text", "save it as UTF-8", "error")]) from None


def _read(path: Path) -> str:
    """The file's text, a BOM kept (parse_config drops it), line endings untouched."""
    return _decode(_read_bytes(path))


# -- the parse cache -------------------------------------------------------------------
# ``load_lab_config(lab, cache=FILE)`` (the engine's runs) keeps the parsed result of the
# ml.yaml texts it saw, keyed by the sha256 of the file's exact bytes, so an unchanged
# ml.yaml costs no YAML parse, and no PyYAML import (~12 ms of every `mldesk run`).
# Only a valid ml.yaml is kept (one with errors is parsed again, its ConfigError fresh).
# The file is JSON, written atomically and owner-only; one that cannot be read, or was
# written by another mldesk (``_CACHE_VERSION`` and the validating code's files), is
# ignored and replaced.
_CACHE_FORMAT = 1
_CACHE_ENTRIES = 64  # texts kept (the most recently added)


def _cache_version() -> str:
    from mldesk import __version__

    here = os.path.dirname(os.path.abspath(__file__))
    stamps = []
    # the validating code (this module, the metrics patterns' check, the input names'
    # rule), so that a changed rule parses again even where the version stayed
    for file in (__file__, os.path.join(here, "metricsconfig.py"), os.path.join(here, "..", "agent", "inputs.py")):
        try:
            st = os.stat(file)
            stamps.append(f"{st.st_size}.{st.st_mtime_ns}")
        except OSError:
            stamps.append("-")
    return f"{_CACHE_FORMAT}:{__version__}:{':'.join(stamps)}"


def _config_to_json(config: LabConfig) -> list:
    m = config.metrics
    return [
        config.docker_image_id, config.hardware_type, list(config.parameters),
        [[i.name, i.url] for i in config.inputs], list(config.exclude),
        [[[r, k] for r, k in m.patterns], m.replace_defaults, list(m.ignore), m.primary, m.goal],
        [[p.line, p.column, p.message, p.hint, p.severity] for p in config.warnings],
        list(config.gpus) if isinstance(config.gpus, tuple) else config.gpus,
        config.network,
    ]


def _config_from_json(data: list, path: Path) -> LabConfig:
    image, hardware, parameters, inputs, exclude, metrics, warnings, gpus, network = data
    patterns, replace, ignore, primary, goal = metrics
    return LabConfig(
        docker_image_id=image, hardware_type=hardware, parameters=tuple(parameters),
        inputs=tuple(InputSpec(name, url) for name, url in inputs), exclude=tuple(exclude),
        metrics=MetricsConfig(patterns=tuple((r, k) for r, k in patterns), replace_defaults=replace,
                              ignore=tuple(ignore), primary=primary, goal=goal),
        warnings=tuple(Problem(*p) for p in warnings),
        path=path, gpus=tuple(gpus) if isinstance(gpus, list) else gpus, network=network,
    )


def _cached_config(data: bytes, path: Path, cache: Path) -> LabConfig:
    import hashlib
    import json

    from mldesk.agent.fsutil import read_json, write_bytes

    key = hashlib.sha256(data).hexdigest()
    version = _cache_version()
    stored = read_json(cache)
    entries = stored.get("entries") if isinstance(stored, dict) and stored.get("version") == version else None
    if not isinstance(entries, dict):
        entries = {}
    if key in entries:
        try:
            return _config_from_json(entries[key], path)
        except (TypeError, ValueError):  # not what this code writes: parse again
            pass
    config = parse_config(_decode(data), path)
    entries.pop(key, None)
    entries[key] = _config_to_json(config)
    for old in list(entries)[:-_CACHE_ENTRIES]:
        del entries[old]
    try:
        cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_bytes(cache, json.dumps({"version": version, "entries": entries}).encode("utf-8"), 0o600)
    except OSError:  # a cache only
        pass
    return config


def load_lab_config(lab_dir: Path | str, *, cache: Path | None = None) -> LabConfig:
    """The lab's configuration; all defaults when it has no ml.yaml. With ``cache``
    (a file), the result for an ml.yaml whose bytes were seen before comes from it."""
    path = find_config(lab_dir)
    if path is None:
        others = sorted(e.name for e in os.scandir(lab_dir) if e.name.lower() == "ml.yaml")
        if others:  # a folder (or a broken link) named ml.yaml is a mistake, not "no config"
            raise ConfigError([Problem(1, 1, f"{others[0]} in {lab_dir} is not a file",
                                       "ml.yaml must be a file; rename or remove that folder", "error")])
        return LabConfig()
    if cache is not None:
        return _cached_config(_read_bytes(path), path, cache)
    return parse_config(_read(path), path)


def _edit_inputs(lab_dir: Path | str, edit) -> None:
    """Apply ``edit(inputs_seq)`` to ml.yaml with a ruamel round trip (comments, key
    order, quoting, indentation, BOM and line endings kept), check the result and
    write it atomically. A file that is already broken is refused, untouched."""
    from ruamel.yaml import YAML, CommentedMap, CommentedSeq
    from ruamel.yaml.util import load_yaml_guess_indent

    path = find_config(lab_dir) or Path(lab_dir) / "ml.yaml"
    original = _read(path) if path.exists() else ""
    parse_config(original, path)
    bom, crlf = original.startswith("\ufeff"), "\r\n" in original
    text = original.removeprefix("\ufeff").replace("\r\n", "\n")
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    try:
        data, indent, offset = load_yaml_guess_indent(text, yaml=rt) if text.strip() else (None, None, None)
    except Exception as exc:  # ruamel (YAML 1.2) refusing what PyYAML accepted
        raise ConfigError([_yaml_problem(exc, text)]) from None
    rt.indent(mapping=indent or 2, sequence=indent or 2, offset=offset or 0)
    prefix = ""
    if data is None:  # empty or only comments: keep the text, append the key
        data, prefix = CommentedMap(), text + ("\n" if text and not text.endswith("\n") else "")
    if data.get("inputs") is None:
        data["inputs"] = CommentedSeq()
    seq = data["inputs"]
    if not seq:
        seq.fa.set_block_style()
    edit(seq)
    if not seq:  # an empty block sequence cannot be written: `inputs: []`
        seq.fa.set_flow_style()
    out = io.StringIO()
    rt.dump(data, out)
    new_text = prefix + out.getvalue()
    parse_config(new_text, path)
    new_text = ("\ufeff" if bom else "") + (new_text.replace("\n", "\r\n") if crlf else new_text)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(new_text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _index(seq, name: str) -> int:
    for i, item in enumerate(seq):
        if isinstance(item, dict) and item.get("name") == name:
            return i
    raise ConfigError([Problem(1, 1, f"ml.yaml has no input named {name!r}", "reload the lab", "error")])


def _check_new_names(entries) -> None:
    """Names are checked before they are written: YAML would turn some (NEL, LS, PS) into
    other text, and the file read back could then not show the problem."""
    problems = [Problem(1, 1, why, "choose a plain file name", "error")
                for why in (validate_input_name(e.name) for e in entries) if why]
    if problems:
        raise ConfigError(problems)


def add_inputs(lab_dir: Path | str, entries: list[InputSpec]) -> None:
    """Append inputs to ml.yaml (created when missing); duplicates are a ConfigError."""
    from ruamel.yaml import CommentedMap

    _check_new_names(entries)
    _edit_inputs(lab_dir, lambda seq: seq.extend(CommentedMap(name=e.name, url=e.url) for e in entries))


def remove_input(lab_dir: Path | str, name: str) -> None:
    _edit_inputs(lab_dir, lambda seq: seq.pop(_index(seq, name)))


def replace_input(lab_dir: Path | str, old_name: str, new: InputSpec) -> None:
    _check_new_names([new])

    def edit(seq) -> None:
        item = seq[_index(seq, old_name)]
        item["name"], item["url"] = new.name, new.url

    _edit_inputs(lab_dir, edit)
