"""Filling job-script templates without touching the shell syntax around the placeholders.

Job scripts are full of braces that are not ours: ``${HOME}``, ``awk '{print $1}'``, Slurm's
``%j``. ``str.format`` would choke on them, so only ``{name}`` for a *known* name, not preceded
by ``$``, is replaced; ``{{`` and ``}}`` become single braces, as in the str.format-style
templates ipyparallel users already have.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from ..error import LauncherError

_FIELD = re.compile(r"\{\{|\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_template(text: str, values: Mapping[str, str]) -> str:
    """``text`` with every ``{name}`` in ``values`` replaced; everything else left as written."""

    def replace(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = m.group(1)
        return values[name] if name in values else token

    return _FIELD.sub(replace, text)


#: the job script when the user gives no template: directives, then setup, prologue and the fan-out
DEFAULT_TEMPLATE = """\
#!/bin/sh
{directives}
{setup}
{prologue}
{launch}
"""


def template_text(template: str, template_file: str) -> str:
    """The job-script template: ``template`` itself, else ``template_file``'s text, else the default."""
    if template:
        return template
    if template_file:
        try:
            return Path(template_file).expanduser().read_text()
        except OSError as e:
            raise LauncherError(f"cannot read the job template {template_file}: {e}") from e
    return DEFAULT_TEMPLATE
