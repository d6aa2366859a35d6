"""Code pickled by value keeps its file name and carries its source lines (pure, in-process)."""

from __future__ import annotations

import linecache
import pickle
import traceback
import types
from pathlib import Path

import pytest

from ipcluster.protocol import codepickle
from ipcluster.protocol.serialize import serialize_object


def compile_function(source: str, filename: str, name: str) -> types.FunctionType:
    ns: dict[str, object] = {}
    exec(compile(source, filename, "exec"), ns)
    f = ns[name]
    assert isinstance(f, types.FunctionType)
    return f


def forget(filename: str) -> None:
    """What a fresh engine knows of ``filename``: nothing."""
    linecache.cache.pop(filename, None)
    codepickle._registered.pop(filename, None)


def roundtrip(f: object) -> object:
    return pickle.loads(serialize_object(f, by_value=True)[0])


def traceback_of(f: object, *args: object) -> str:
    try:
        f(*args)  # type: ignore[operator]
    except Exception as e:
        return "".join(traceback.format_exception(e))
    raise AssertionError("did not raise")


def test_file_name_and_lines_survive_by_value_pickling() -> None:
    name = "<ipython-input-900-codepickle>"
    source = "x = 1\n\ndef f(a):\n    b = a * 2\n    return b / 0  # line five\n"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)  # as IPython does
    f = compile_function(source, name, "f")
    data = serialize_object(f, by_value=True)
    forget(name)  # the engine side: no cell source
    g = pickle.loads(data[0])
    assert g.__code__.co_filename == name and g.__code__.co_firstlineno == 3
    text = traceback_of(g, 1)
    assert f'File "{name}", line 5, in f' in text
    assert "return b / 0  # line five" in text
    assert linecache.getline(name, 1) == "\n"  # only the function's own lines travelled
    forget(name)


def test_nested_code_keeps_its_name_and_lines() -> None:
    name = "<ipython-input-901-codepickle>"
    source = "def outer(k):\n    def inner(x):\n        return {}[k + x]  # inner line\n    return inner\n"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    f = compile_function(source, name, "outer")("a")
    data = serialize_object(f, by_value=True)
    forget(name)
    text = traceback_of(pickle.loads(data[0]), "b")
    assert f'File "{name}", line 3, in inner' in text and "return {}[k + x]  # inner line" in text
    forget(name)


def test_an_engine_reads_its_own_copy_of_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    raise KeyError('disk')  # client copy\n")
    f = compile_function(path.read_text(), str(path), "f")
    linecache.getlines(str(path))
    data = serialize_object(f, by_value=True)
    path.write_text("def f():\n    raise KeyError('disk')  # engine copy\n")
    linecache.cache.pop(str(path), None)
    text = traceback_of(pickle.loads(data[0]))
    assert "# engine copy" in text  # a readable file is never shadowed by lines that travelled
    assert str(path) not in codepickle._registered


def test_entries_made_by_linecache_or_ipython_are_left_alone() -> None:
    name = "<ipython-input-902-codepickle>"
    linecache.cache[name] = (4, None, ["own\n"], name)
    codepickle.register_source(name, 1, ["other\n"])
    assert linecache.getline(name, 1) == "own\n"
    linecache.cache.pop(name)


def test_lines_from_several_functions_fill_one_entry() -> None:
    name = "<ipython-input-903-codepickle>"
    forget(name)
    codepickle.register_source(name, 5, ["five\n", "six\n"])
    codepickle.register_source(name, 2, ["two\n"])
    assert [linecache.getline(name, i) for i in range(1, 7)] == ["\n", "two\n", "\n", "\n", "five\n", "six\n"]
    linecache.checkcache(name)  # a traceback does this: the entry must survive it
    assert linecache.getline(name, 6) == "six\n"
    forget(name)


def test_registered_files_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codepickle, "MAX_FILES", 3)
    names = [f"<ipython-input-91{i}-codepickle>" for i in range(5)]
    for name in names:
        forget(name)
        codepickle.register_source(name, 1, ["x\n"])
    assert [n for n in names if n in linecache.cache] == names[-3:]
    for name in names:
        forget(name)


def test_large_sources_stay_behind() -> None:
    name = "<ipython-input-904-codepickle>"
    body = "".join(f"    a{i} = {i}  # {'x' * 60}\n" for i in range(400))
    source = f"def big():\n{body}    return 1 / 0\n"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    f = compile_function(source, name, "big")
    assert codepickle.source_span(f.__code__) is None
    data = serialize_object(f, by_value=True)
    assert len(data[0]) < len(source)
    forget(name)
    g = pickle.loads(data[0])
    assert g.__code__.co_filename == name  # still the right name, without the lines


def test_code_marshal_cannot_write_falls_back_to_cloudpickle() -> None:
    f = compile_function("def f():\n    return 1\n", "<fallback>", "f")
    g = types.FunctionType(f.__code__.replace(co_consts=(*f.__code__.co_consts, frozenset({object}))), {})
    with pytest.raises(ValueError):
        import marshal

        marshal.dumps(g.__code__)
    h = roundtrip(g)
    assert h() == 1  # type: ignore[operator]
