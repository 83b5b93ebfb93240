"""notebooks/quickstart.ipynb runs top to bottom from a clean checkout (outputs are not stored)."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from nowcast.types import repo_root

NOTEBOOK = repo_root() / "notebooks" / "quickstart.ipynb"


def test_quickstart_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.get("outputs") and not c.get("execution_count") for c in code)


@pytest.mark.slow
def test_quickstart_executes(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
