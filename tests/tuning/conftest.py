import pytest
from tune_helpers import write_base_config


@pytest.fixture
def base_config(tmp_path):
    return write_base_config(tmp_path)
