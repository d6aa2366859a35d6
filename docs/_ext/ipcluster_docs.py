"""Write the configuration and command-line references from the code, at build time.

Three directives, used from MyST pages::

    ```{ipcluster-config} ipcluster.controller.app.ControllerApp
    ```
    ```{ipcluster-launchers}
    ```
    ```{ipcluster-cli} ipcluster
    ```

``ipcluster-config`` imports each named traitlets class and writes one section per class: every
``config=True`` trait with its type, default, command-line alias and help. For an ``Application``
it also documents the ipcluster classes in the app's ``classes`` list (once per page).
``ipcluster-launchers`` does the same for each class registered in the ``ipcluster.launchers``
entry-point group. ``ipcluster-cli`` runs a console script of the installed ``ipcluster``
distribution with ``--help`` (and each of its subcommands) and shows the output.

A module that does not exist yet (or that imports an ipcluster module that does not) becomes a
placeholder sentence, so the site builds while the package is being written; set
``ipcluster_docs_require_all = True`` in ``conf.py`` (or ``IPCLUSTER_DOCS_STRICT=1``) to make that
a warning. Anything else that fails (a missing third-party package, a syntax error, a command that
exits non-zero) is a warning, which fails a ``-W`` build.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

HELP_TIMEOUT = 60.0  # seconds for one `<command> --help`


class NotWrittenYet(Exception):
    """The module (or the name in it) that a directive documents does not exist yet."""


def import_object(module_name: str, attr: str | None = None) -> Any:
    """Import ``module_name`` (and get ``attr`` from it).

    Raises NotWrittenYet when the module, an ipcluster module it imports, or the attribute does
    not exist; any other error (a missing third-party package, a syntax error) propagates.
    """
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            if missing != "ipcluster":
                raise NotWrittenYet(f"module {module_name} does not exist yet") from e
        elif missing.startswith("ipcluster."):  # a part of the package still being written
            raise NotWrittenYet(f"{module_name} imports {missing}, which does not exist yet") from e
        raise
    if attr is None:
        return module
    try:
        return getattr(module, attr)
    except AttributeError:
        raise NotWrittenYet(f"{module_name} does not define {attr} yet") from None


def split_path(path: str) -> tuple[str, str]:
    """``a.b:C`` or ``a.b.C`` -> ``("a.b", "C")``."""
    if ":" in path:
        module, _, attr = path.partition(":")
    else:
        module, _, attr = path.rpartition(".")
    return module, attr


INLINE = re.compile(r"(?::[\w:]+:)?``?~?([^`]+?)``?|(https?://[^\s<>]+[^\s<>.,;:)])")


def inline(text: str) -> list[nodes.Node]:
    """Text with RST-style ``code``, `code`, :role:`target` and bare URLs as docutils nodes."""
    out: list[nodes.Node] = []
    pos = 0
    for m in INLINE.finditer(text):
        if m.start() > pos:
            out.append(nodes.Text(text[pos : m.start()]))
        if m.group(2):
            out.append(nodes.reference(m.group(2), m.group(2), refuri=m.group(2)))
        else:
            out.append(nodes.literal(text=m.group(1)))
        pos = m.end()
    if pos < len(text):
        out.append(nodes.Text(text[pos:]))
    return out


def help_nodes(text: str) -> list[nodes.Node]:
    """Render a trait's help or a docstring: paragraphs, bullet lists and indented code blocks
    (the small part of RST that help texts use)."""
    out: list[nodes.Node] = []
    for block in re.split(r"\n[ \t]*\n", inspect.cleandoc(text or "")):
        lines = block.rstrip().splitlines()
        if not lines:
            continue
        if re.match(r"\.\. (code-block|code|sourcecode)::", lines[0].strip()):
            continue  # the code itself is the indented block that follows
        if all(line.startswith((" ", "\t")) for line in lines if line.strip()):
            code = textwrap.dedent(block).strip("\n") + "\n"
            if out and isinstance(out[-1], nodes.literal_block):  # blank line inside the code
                code = out.pop().astext() + "\n" + code
            out.append(literal_block(code))
        elif lines[0].lstrip().startswith(("* ", "- ")):
            bullets = nodes.bullet_list()
            for line in lines:
                stripped = line.strip()
                if stripped[:2] in ("* ", "- "):
                    bullets += nodes.list_item("", nodes.paragraph("", "", *inline(stripped[2:])))
                elif len(bullets):
                    para = bullets[-1][0]
                    para.extend(inline(" " + stripped))
            out.append(bullets)
        else:
            joined = " ".join(line.strip() for line in lines)
            if joined.endswith("::"):
                joined = joined[:-1]
            out.append(nodes.paragraph("", "", *inline(joined)))
    return out


def summary(cls: type) -> list[nodes.Node]:
    """The first paragraph of the class's own docstring (or an app's ``description``)."""
    doc = vars(cls).get("__doc__") or vars(cls).get("description") or ""
    if not isinstance(doc, str):
        return []
    return help_nodes(doc)[:1]


def is_ipcluster(obj: Any) -> bool:
    return (getattr(obj, "__module__", "") or "").split(".")[0] == "ipcluster"


class ReferenceDirective(SphinxDirective):
    """Shared helpers: placeholders, sections with stable ids."""

    def strict(self) -> bool:
        return bool(self.config.ipcluster_docs_require_all) or os.environ.get("IPCLUSTER_DOCS_STRICT") == "1"

    def placeholder(self, what: str, reason: str) -> nodes.paragraph:
        if self.strict():
            logger.warning("%s is not documented: %s", what, reason, location=self.get_location())
        else:
            logger.info("placeholder for %s: %s", what, reason, location=self.get_location())
        para = nodes.paragraph()
        para += nodes.literal(text=what)
        para += nodes.Text(
            f" is not available in this build ({reason}), so its reference is not generated here yet."
        )
        return para

    def section(self, title: str, ident: str, suffix: str = "") -> nodes.section:
        sec = nodes.section()
        ident = nodes.make_id(ident)
        if ident in self.state.document.ids:
            ident = nodes.make_id(f"{ident}-{len(self.state.document.ids)}")
        sec["ids"].append(ident)
        sec["names"].append(nodes.fully_normalize_name(title + suffix))
        title_node = nodes.title()
        title_node += nodes.literal(text=title)
        if suffix:
            title_node += nodes.Text(suffix)
        sec += title_node
        self.state.document.note_implicit_target(sec, sec)
        return sec


class ConfigDirective(ReferenceDirective):
    """Document the configurable traits of the named traitlets classes."""

    required_arguments = 1
    optional_arguments = 20

    def run(self) -> list[nodes.Node]:
        self.env.note_reread()  # generated from the code: rebuild it every time
        out: list[nodes.Node] = []
        for path in self.arguments:
            out.append(self.document_path(path))
        return out

    def seen(self) -> dict[str, str]:
        """Classes already documented on this page: qualified name -> section id."""
        return self.env.temp_data.setdefault("ipcluster_config_seen", {})

    def document_path(self, path: str, suffix: str = "") -> nodes.section:
        module, attr = split_path(path)
        sec = self.section(attr, f"config-{attr}", suffix)
        try:
            cls = import_object(module, attr)
        except NotWrittenYet as e:
            sec += self.placeholder(path.replace(":", "."), str(e))
            return sec
        except Exception as e:
            logger.warning("cannot import %s: %s: %s", path, type(e).__name__, e, location=self.get_location())
            sec += nodes.paragraph(text=f"{path} could not be imported: {type(e).__name__}: {e}")
            return sec
        qualname = f"{cls.__module__}.{cls.__qualname__}"
        if qualname in self.seen():
            para = nodes.paragraph(text="Documented above: ")
            para += nodes.reference("", "", nodes.literal(text=qualname), internal=True, refid=self.seen()[qualname])
            para += nodes.Text(".")
            sec += para
        else:
            self.document_class(cls, sec)
        return sec

    def document_class(self, cls: type, sec: nodes.section, aliases: dict[str, list[str]] | None = None) -> None:
        """Fill ``sec`` with ``cls``'s traits; ``aliases`` are the command-line flags of the app that owns it."""
        from traitlets.config import Application, Configurable

        qualname = f"{cls.__module__}.{cls.__qualname__}"
        self.seen()[qualname] = sec["ids"][0]
        intro = nodes.paragraph()
        intro += nodes.literal(text=qualname)
        sec += intro
        sec.extend(summary(cls))
        if not (isinstance(cls, type) and issubclass(cls, Configurable)):
            logger.warning("%s is not a traitlets Configurable", qualname, location=self.get_location())
            return

        if issubclass(cls, Application):
            aliases = aliases_of(cls)
        aliases = aliases or {}
        # A trait that an earlier class on this page shares (same definition, same default) is
        # listed by name with a link, not described again.
        described = self.env.temp_data.setdefault("ipcluster_config_traits", {})
        fresh, repeated = [], []
        for name, trait in sorted(cls.class_traits(config=True).items()):
            owner = defining_class(cls, name)
            key = (owner, name, default_repr(cls, name, trait))
            if key in described:
                repeated.append((name, described[key]))
            else:
                fresh.append((name, trait))
                described[key] = nodes.make_id(f"{cls.__name__}.{name}")
        if fresh:
            dl = nodes.definition_list()
            for name, trait in fresh:
                dl += self.trait_item(cls, name, trait, aliases)
            sec += dl
        if repeated:
            para = nodes.paragraph(text="Also " if fresh else "Options ")
            para += nodes.Text("described above: ")
            for i, (name, ident) in enumerate(repeated):
                if i:
                    para += nodes.Text(", ")
                para += nodes.reference("", "", nodes.literal(text=f"{cls.__name__}.{name}"), internal=True, refid=ident)
            para += nodes.Text(".")
            sec += para
        if not fresh and not repeated:
            sec += nodes.paragraph(text="This class has no configurable options.")

        if issubclass(cls, Application):
            components = [c for c in [*app_classes(cls), *subcommand_classes(cls)] if c is not cls]
            others = sorted({f"{c.__module__}.{c.__qualname__}" for c in components if not is_ipcluster(c)})
            if others:  # body text goes before the subsections
                para = nodes.paragraph(text="Also configurable through this command (see their own projects' documentation): ")
                for i, name in enumerate(others):
                    if i:
                        para += nodes.Text(", ")
                    para += nodes.literal(text=name)
                para += nodes.Text(".")
                sec += para
            for comp in components:
                if is_ipcluster(comp) and f"{comp.__module__}.{comp.__qualname__}" not in self.seen():
                    sub = self.section(comp.__name__, f"config-{comp.__name__}")
                    self.document_class(comp, sub, aliases)
                    sec += sub

    def trait_item(self, cls: type, name: str, trait: Any, aliases: dict[str, list[str]]) -> nodes.definition_list_item:
        item = nodes.definition_list_item()
        term = nodes.term()
        ident = nodes.make_id(f"{cls.__name__}.{name}")
        if ident not in self.state.document.ids:
            term["ids"].append(ident)
            self.state.document.ids[ident] = term
        term += nodes.literal(text=f"{cls.__name__}.{name}")
        term += nodes.Text(f" : {trait_type(trait)}")
        item += term

        body = nodes.definition()
        facts = nodes.paragraph()
        facts += nodes.Text("Default: ")
        default = default_repr(cls, name, trait)
        facts += nodes.literal(text=default) if default is not None else nodes.emphasis(text="computed at start-up")
        flags = [flag for target, fl in aliases.items() if target_matches(target, cls, name) for flag in fl]
        if flags:
            facts += nodes.Text(". Command line: ")
            for i, flag in enumerate(flags):
                if i:
                    facts += nodes.Text(", ")
                facts += nodes.literal(text=flag)
        owner = defining_class(cls, name)
        if owner is not None and not is_ipcluster(owner):
            facts += nodes.Text(". Inherited from ")
            facts += nodes.literal(text=f"{owner.__module__}.{owner.__qualname__}")
        facts += nodes.Text(".")
        body += facts
        body.extend(help_nodes(trait.help) or [nodes.paragraph(text="(No description.)")])
        item += body
        return item


class LaunchersDirective(ConfigDirective):
    """Document every class in the ``ipcluster.launchers`` entry-point group."""

    required_arguments = 0
    optional_arguments = 0

    def run(self) -> list[nodes.Node]:
        self.env.note_reread()
        eps = sorted(entry_points(group="ipcluster.launchers"), key=lambda ep: ep.name)
        if not eps:
            return [self.placeholder("ipcluster.launchers", "no launcher is registered in this environment")]
        return [self.document_path(ep.value, suffix=f" ({ep.name})") for ep in eps]


class CliDirective(ReferenceDirective):
    """Show ``<prog> --help`` and ``<prog> <subcommand> --help`` for a console script."""

    required_arguments = 1
    option_spec = {"app": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        self.env.note_reread()
        prog = self.arguments[0]
        sec = self.section(prog, f"cli-{prog}")
        script = console_script(prog)
        if script is None:
            sec += self.placeholder(prog, "the command is not registered by the installed ipcluster package")
            return [sec]
        module_name, func_name = split_path(script)
        try:
            func = import_object(module_name, func_name)
            app_cls = find_app(func, self.options.get("app"))
        except NotWrittenYet as e:
            sec += self.placeholder(prog, str(e))
            return [sec]
        except Exception as e:
            logger.warning("cannot import %s: %s: %s", script, type(e).__name__, e, location=self.get_location())
            sec += nodes.paragraph(text=f"{script} could not be imported: {type(e).__name__}: {e}")
            return [sec]

        subcommands = getattr(app_cls, "subcommands", None)
        subcommands = subcommands if isinstance(subcommands, dict) else {}
        commands = [[], *([sub] for sub in subcommands)]
        with tempfile.TemporaryDirectory(prefix="ipcluster-docs-") as tmp:
            with ThreadPoolExecutor(max_workers=4) as pool:
                outputs = list(pool.map(lambda args: self.run_help(prog, module_name, func_name, args, tmp), commands))

        sec += literal_block(outputs[0])
        for sub, text in zip(subcommands, outputs[1:]):
            sub_sec = self.section(f"{prog} {sub}", f"cli-{prog}-{sub}")
            sub_help = subcommands[sub][1] if isinstance(subcommands[sub], (tuple, list)) else ""
            sub_sec.extend(help_nodes(sub_help) if isinstance(sub_help, str) else [])
            sub_sec += literal_block(text)
            sec += sub_sec
        return [sec]

    def run_help(self, prog: str, module_name: str, func_name: str, args: list[str], tmp: str) -> str:
        code = (
            f"import sys; sys.argv[0] = {prog!r}; "
            f"from {module_name} import {func_name} as main; sys.exit(main())"
        )
        env = {**os.environ, "IPYTHONDIR": os.path.join(tmp, "ipython"), "JUPYTER_PLATFORM_DIRS": "1"}
        argv = [sys.executable, "-c", code, *args, "--help"]
        shown = " ".join([prog, *args, "--help"])
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=HELP_TIMEOUT, cwd=tmp, env=env,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            logger.warning("`%s` did not finish in %.0f s", shown, HELP_TIMEOUT, location=self.get_location())
            return f"$ {shown}\n(timed out)"
        if proc.returncode != 0 or not proc.stdout.strip():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            logger.warning("`%s` exited with %s:\n%s", shown, proc.returncode, tail, location=self.get_location())
        return f"$ {shown}\n{proc.stdout.rstrip()}"


# --- helpers on traitlets classes ------------------------------------------------------------
def trait_type(trait: Any) -> str:
    kind = type(trait).__name__
    values = getattr(trait, "values", None)
    if "Enum" in kind and values is not None:
        return f"{kind}: one of " + ", ".join(repr(v) for v in values)
    inner = getattr(trait, "_trait", None)
    if inner is not None:
        return f"{kind} of {type(inner).__name__}"
    return kind


def defining_class(cls: type, name: str) -> type | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    return None


def default_repr(cls: type, name: str, trait: Any) -> str | None:
    """The static default as text, or None when a ``@default`` method computes it."""
    for klass in cls.__mro__:
        if name in vars(klass).get("_trait_default_generators", {}) or f"_{name}_default" in vars(klass):
            return None
        if name in vars(klass):
            break
    try:
        text = trait.default_value_repr()
    except Exception:
        return None
    return text if len(text) <= 80 else text[:77] + "..."


def aliases_of(app_cls: type) -> dict[str, list[str]]:
    """``{"Class.trait": ["--flag", ...]}`` from an Application's ``aliases``."""
    raw = getattr(app_cls, "aliases", None)
    out: dict[str, list[str]] = {}
    if not isinstance(raw, dict):
        return out
    for keys, target in raw.items():
        target = target[0] if isinstance(target, (tuple, list)) else target
        if not isinstance(target, str):
            continue
        names = keys if isinstance(keys, (tuple, list)) else (keys,)
        out.setdefault(target, []).extend(("-" if len(k) == 1 else "--") + k for k in names)
    return out


def target_matches(target: str, cls: type, name: str) -> bool:
    owner, _, trait = target.rpartition(".")
    return trait == name and owner in {k.__name__ for k in cls.__mro__}


def app_classes(app_cls: type) -> Iterable[type]:
    classes = getattr(app_cls, "classes", None)
    return [c for c in classes if isinstance(c, type)] if isinstance(classes, (list, tuple)) else []


def subcommand_classes(app_cls: type) -> list[type]:
    """The Application classes behind an app's subcommands (``{"start": (IPClusterStart, help)}``)."""
    subcommands = getattr(app_cls, "subcommands", None)
    found = []
    for value in subcommands.values() if isinstance(subcommands, dict) else ():
        target = value[0] if isinstance(value, (tuple, list)) else value
        if isinstance(target, str):
            try:
                target = import_object(*split_path(target))
            except Exception:  # the CLI reference reports a subcommand that does not load
                continue
        if isinstance(target, type):
            found.append(target)
    return found


def console_script(prog: str) -> str | None:
    for ep in entry_points(group="console_scripts", name=prog):
        dist = getattr(ep, "dist", None)
        if dist is not None and dist.name == "ipcluster":
            return ep.value
    return None


def find_app(func: Any, explicit: str | None) -> type | None:
    from traitlets.config import Application

    if explicit:
        return import_object(*split_path(explicit))
    owner = getattr(func, "__self__", None)  # main = SomeApp.launch_instance
    if isinstance(owner, type) and issubclass(owner, Application):
        return owner
    module = sys.modules.get(getattr(func, "__module__", ""))
    candidates = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Application) and obj.__module__ == module.__name__
    ] if module else []
    return candidates[0] if len(candidates) == 1 else None


def literal_block(text: str) -> nodes.literal_block:
    text = textwrap.dedent(text).rstrip() + "\n"
    block = nodes.literal_block(text, text)
    block["language"] = "text"
    return block


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("ipcluster_docs_require_all", False, "env", types=[bool])
    app.add_directive("ipcluster-config", ConfigDirective)
    app.add_directive("ipcluster-launchers", LaunchersDirective)
    app.add_directive("ipcluster-cli", CliDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
