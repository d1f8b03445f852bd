"""Reading `mailserver.yaml` and `policy.yaml` with errors an operator can act on.

Every error names the file, the line and the key path
(`policy.yaml:12 quota.default: "2 gigs" is not a size`) and all errors of
both files are reported at once, so one `mailserver config check` run shows
everything to fix. An invalid configuration never starts a server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from policy.errors import ConfigError, ConfigProblem
from policy.model import Policy
from policy.settings import Settings

DEFAULT_CONFIG = Path("/etc/mailserver/mailserver.yaml")
ENV_CONFIG = "MAILSERVER_CONFIG"

PathKey = tuple[str | int, ...]


@dataclass
class Loaded:
    settings: Settings
    policy: Policy
    config_file: Path | None
    policy_file: Path | None


def _format_path(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _compose(text: str, fname: str) -> tuple[Any, dict[PathKey, int], list[ConfigProblem]]:
    """Parse YAML keeping the line of every key, and catch duplicate keys."""
    problems: list[ConfigProblem] = []
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(e, "problem", None) or str(e)
        return None, {}, [ConfigProblem(fname, line, "", f"not valid YAML: {problem}")]
    if node is None:
        return {}, {}, []
    marks: dict[PathKey, int] = {}
    loader = yaml.SafeLoader("")

    def walk(n: yaml.Node, path: PathKey) -> Any:
        marks.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for knode, vnode in n.value:
                key = loader.construct_object(knode, deep=True)
                kpath = (*path, key)
                if key in result:
                    problems.append(
                        ConfigProblem(fname, knode.start_mark.line + 1, _format_path(kpath), "duplicate key")
                    )
                marks[kpath] = knode.start_mark.line + 1
                result[key] = walk(vnode, kpath)
            return result
        if isinstance(n, yaml.SequenceNode):
            return [walk(item, (*path, i)) for i, item in enumerate(n.value)]
        return loader.construct_object(n, deep=True)

    try:
        data = walk(node, ())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        return None, {}, [ConfigProblem(fname, mark.line + 1 if mark else None, "", f"not valid YAML: {e}")]
    return data, marks, problems


def _line_for(marks: dict[PathKey, int], loc: PathKey) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in marks:
            return marks[loc[:cut]]
    return None


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "value_error":
        return str(err["ctx"]["error"]) if "ctx" in err else err["msg"]
    if kind == "missing":
        return "is required"
    value = err.get("input")
    shown = f'"{value}" ' if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    return f"{shown}{err['msg'][0].lower()}{err['msg'][1:]}"


def _validate(
    model: type[BaseModel], data: Any, fname: str, marks: dict[PathKey, int]
) -> tuple[Any, list[ConfigProblem]]:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [ConfigProblem(fname, 1, "", "the file must be a mapping of keys to values")]
    try:
        return model.model_validate(data), []
    except ValidationError as e:
        problems = []
        for err in e.errors():
            # pydantic adds validator tags to `loc` that are not keys of the file
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            problems.append(ConfigProblem(fname, _line_for(marks, loc), _format_path(loc), _message(err)))
        return None, sorted(problems, key=lambda p: p.line or 0)


def _read(path: Path) -> tuple[Any, dict[PathKey, int], list[ConfigProblem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, {}, [ConfigProblem(str(path), None, "", "file not found")]
    except (OSError, UnicodeDecodeError) as e:
        return None, {}, [ConfigProblem(str(path), None, "", f"cannot read: {e}")]
    return _compose(text, path.name)


def find_config(explicit: str | os.PathLike[str] | None) -> Path | None:
    """`--config`, then $MAILSERVER_CONFIG, then /etc/mailserver/mailserver.yaml, then none."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    if DEFAULT_CONFIG.exists():
        return DEFAULT_CONFIG
    return None


def load(explicit: str | os.PathLike[str] | None = None) -> Loaded:
    """Load and validate both files; raise ConfigError listing every problem."""
    config_file = find_config(explicit)
    problems: list[ConfigProblem] = []
    settings: Settings | None = Settings()
    if config_file is not None:
        data, marks, problems = _read(config_file)
        settings = None
        if data is not None:
            settings, vproblems = _validate(Settings, data, config_file.name, marks)
            problems += vproblems
        if settings is not None:
            settings.resolve_paths(config_file.resolve().parent)
            policy_file = settings.policy_file
        else:
            # Still check the policy file so one run reports both files' errors.
            raw = data.get("policy_file") if isinstance(data, dict) else None
            policy_file = config_file.resolve().parent / raw if isinstance(raw, str) else None
    else:
        policy_file = None
    policy: Policy | None = Policy()
    if policy_file is not None:
        pdata, pmarks, pproblems = _read(policy_file)
        policy = None
        if pdata is not None:
            policy, vproblems = _validate(Policy, pdata, policy_file.name, pmarks)
            pproblems += vproblems
        problems += pproblems
    if problems or settings is None or policy is None:
        raise ConfigError(problems)
    return Loaded(settings=settings, policy=policy, config_file=config_file, policy_file=policy_file)


def load_policy_file(path: Path) -> Policy:
    data, marks, problems = _read(path)
    policy = None
    if data is not None:
        policy, vproblems = _validate(Policy, data, path.name, marks)
        problems += vproblems
    if problems or policy is None:
        raise ConfigError(problems)
    return policy
