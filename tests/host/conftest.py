import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """test_leftovers.py checks what the others left: it runs after all of them (their module
    fixtures, which take the host down, are finished by then)."""
    items.sort(key=lambda item: item.path.name == "test_leftovers.py")
