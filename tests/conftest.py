import json
from pathlib import Path

import pytest

REFS = Path(__file__).parent / "data" / "refs"


def load_ref(name: str) -> dict:
    with open(REFS / name) as fh:
        return json.load(fh)


@pytest.fixture(scope="session")
def refs_dir() -> Path:
    return REFS
