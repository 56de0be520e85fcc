from __future__ import annotations

import shutil

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dciodvfy: needs dicom3tools' dciodvfy on PATH")


@pytest.fixture(scope="session")
def dciodvfy() -> str:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed; scripts/test installs it when it can")
    return exe
