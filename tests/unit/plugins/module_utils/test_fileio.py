# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""fileio.list_dir: the names of a directory, or an error that names what and where."""

import pytest

from ansible_collections.prairiefyre.updater.plugins.module_utils.errors import (
    ManifestError,
    UpdaterError,
)
from ansible_collections.prairiefyre.updater.plugins.module_utils.fileio import list_dir


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
