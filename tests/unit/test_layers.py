"""The layering of docs/architecture.md holds: import-linter contracts in pyproject.toml."""

import shutil
import subprocess
import sys
from pathlib import Path


def test_import_contracts_kept():
    # The interpreter's own lint-imports first: the one on PATH may belong to another Python.
    own = Path(sys.executable).parent / "lint-imports"
    exe = str(own) if own.exists() else shutil.which("lint-imports") or str(own)
    result = subprocess.run([exe], cwd=Path(__file__).parents[2], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
