"""The markers follow the fixtures a test reaches (conftest.py), also those reached at run
time: the guard's rule, and the pytest behaviour it relies on."""

import pytest

from conftest import FIXTURE_MARKERS, markers_missing


def test_a_fixture_reached_without_its_marker_is_named():
    assert markers_missing({"twin_stack", "tmp_path"}, set()) == {"stack": ["twin_stack"]}
    assert markers_missing({"twin_stack", "tmp_path"}, {"stack"}) == {}
    assert markers_missing({"standin_images"}, {"stack"}) == {"docker": ["standin_images"]}
    assert markers_missing({"tmp_path"}, set()) == {}
    assert all(markers_missing(fixtures, set()).keys() == {marker} | {
        other for other, named in FIXTURE_MARKERS.items() if named & fixtures}
        for marker, fixtures in FIXTURE_MARKERS.items())


@pytest.fixture
def reached_later():
    return "reached"


@pytest.fixture
def reaching(request):
    return request.getfixturevalue("reached_later")


def test_the_guard_sees_fixtures_reached_at_run_time(request, reaching):
    """request.fixturenames, which the guard reads after each test, lists a fixture that
    another fixture reached with getfixturevalue, and one the test reached itself."""
    assert reaching == "reached" and "reached_later" in request.fixturenames
    assert "tmp_path_factory" not in request.fixturenames
    request.getfixturevalue("tmp_path_factory")
    assert "tmp_path_factory" in request.fixturenames
