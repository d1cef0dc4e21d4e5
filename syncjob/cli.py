"""`--help` and `--version` for the images' entry points, which are configured by environment variables only.

Running an image with `--help` should say what it is and what it reads, without a cluster or a database: the
help lists each pydantic-settings field as its environment variable, with its description and default.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from pydantic_settings import BaseSettings


def package_version() -> str:
    try:
        return version("syncjob-operator")
    except PackageNotFoundError:
        return "unknown"


def settings_help(settings: type[BaseSettings]) -> str:
    prefix = str(settings.model_config.get("env_prefix", "") or "")
    lines = ["environment:"]
    for name, info in settings.model_fields.items():
        default = "" if info.is_required() else f" (default: {info.get_default(call_default_factory=True)!r})"
        lines.append(f"  {(prefix + name).upper()}: {info.description or ''}{default}".rstrip())
    return "\n".join(lines)


def parse(prog: str, description: str, settings: type[BaseSettings], argv: Sequence[str] | None) -> None:
    """Answer --help and --version; anything else is an error (configuration comes from the environment)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=settings_help(settings),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.parse_args(argv)
