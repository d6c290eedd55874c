"""Every option reads a value written as text (the CLI, and the ini and
environment readers to come) through the converter its entry carries, chosen
by its check function itself rather than by that function's name."""

from __future__ import annotations

import pytest
from rwsgi.options import OPTIONS, OptionError, text_bool


@pytest.mark.parametrize(
    "option",
    [o for o in OPTIONS if o.default is not None and not isinstance(o.default, list)],
    ids=lambda o: o.name,
)
def test_each_default_reads_back_from_its_text(option) -> None:
    value = option.from_text(str(option.default))
    assert option.check(option.name, value) == option.check(option.name, option.default)


def test_text_that_is_not_of_the_type_names_the_option() -> None:
    workers = next(o for o in OPTIONS if o.name == "workers")
    with pytest.raises(OptionError, match=r"^workers: 'four' is not a valid int$"):
        workers.from_text("four")


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("Yes", True), ("1", True), ("on", True), ("False", False), ("no", False)],
)
def test_booleans_as_ini_files_write_them(text: str, value: bool) -> None:
    assert text_bool(text) is value


def test_a_boolean_that_is_none_of_those_is_refused() -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        text_bool("maybe")


# Options the Python side alone applies (before the app is imported).
PYTHON_ONLY = {"chdir", "pythonpath"}


def test_the_rust_config_reads_exactly_the_tables_options() -> None:
    """src/config.rs reads each option by name from the normalized dict: it must
    read every option the table defines (bar PYTHON_ONLY) and no other name."""
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / "src" / "config.rs").read_text()
    read = set(re.findall(r'\(dict, "([a-z_]+)"\)', source))
    read |= set(re.findall(r'\("([a-z_]+)", ListenerProtocol', source))
    assert read == {option.name for option in OPTIONS} - PYTHON_ONLY


def test_the_readmes_option_table_is_the_tables() -> None:
    from pathlib import Path

    from rwsgi.options import markdown_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    begin = readme.index("-->\n", readme.index("<!-- options table:")) + 4
    end = readme.index("<!-- end of options table -->")
    fix = "regenerate it: python python/rwsgi/options.py README.md"
    assert readme[begin:end] == markdown_table(), fix


def test_no_two_options_claim_one_ini_key() -> None:
    keys = [key for option in OPTIONS for key in option.ini]
    assert len(keys) == len(set(keys))
