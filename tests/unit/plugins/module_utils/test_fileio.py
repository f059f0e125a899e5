# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fileio.list_dir: the names of a directory, or an error that names what and where.

fileio.read_json_object: a state file's object, None when it is missing, the caller's verdict
when it is damaged."""

import pytest

from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    ManifestError,
    UpdaterError,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import (
    list_dir,
    read_json_object,
)


def test_lists_the_names(tmp_path):
    (tmp_path / "a.json").write_text("{}", encoding="utf-8")
    (tmp_path / "b").mkdir()

    assert sorted(list_dir(tmp_path, "the records")) == ["a.json", "b"]


def test_a_missing_directory_is_left_to_the_caller(tmp_path):
    with pytest.raises(FileNotFoundError):
        list_dir(tmp_path / "nowhere", "the records")


@pytest.mark.bad_input
def test_a_file_in_place_of_the_directory_names_what_and_where(tmp_path):
    path = tmp_path / "leases"
    path.write_text("not a directory\n", encoding="utf-8")

    with pytest.raises(ManifestError) as raised:
        list_dir(path, "the lease record directory", ManifestError)

    assert str(raised.value) == f"cannot list the lease record directory {path}: Not a directory"
    assert raised.value.context == {"file": path}
    assert isinstance(raised.value, UpdaterError)


def refuse(error):
    raise UpdaterError(f"damaged: {error}")


def test_reads_the_object(tmp_path):
    path = tmp_path / "journal.json"
    path.write_text('{"op": "swap", "ids": [1, 2]}', encoding="utf-8")

    assert read_json_object(path, refuse) == {"op": "swap", "ids": [1, 2]}


def test_a_missing_file_is_none(tmp_path):
    assert read_json_object(tmp_path / "journal.json", refuse) is None


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("content", "said"),
    [
        ("{half", "damaged: Expecting property name enclosed in double quotes: line 1 column 2"),
        ("null", "damaged: it holds null, not a JSON object"),
        ("[1]", "damaged: it holds a list, not a JSON object"),
        ('"swap"', "damaged: it holds a string, not a JSON object"),
        ("7", "damaged: it holds a number, not a JSON object"),
        ("true", "damaged: it holds true/false, not a JSON object"),
    ],
)
def test_a_damaged_file_is_the_callers_to_judge(tmp_path, content, said):
    path = tmp_path / "journal.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(UpdaterError) as raised:
        read_json_object(path, refuse)

    assert str(raised.value).startswith(said)


def test_a_damaged_file_can_stand_in_a_value(tmp_path):
    path = tmp_path / "marker.json"
    path.write_text("[]", encoding="utf-8")

    assert read_json_object(path, lambda _error: {}) == {}


@pytest.mark.bad_input
def test_a_directory_in_place_of_the_file_is_damaged_not_missing(tmp_path):
    path = tmp_path / "journal.json"
    path.mkdir()

    with pytest.raises(UpdaterError) as raised:
        read_json_object(path, refuse)

    assert "Is a directory" in str(raised.value)
