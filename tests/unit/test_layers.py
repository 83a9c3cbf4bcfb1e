"""The layering of docs/architecture.md holds: import-linter contracts in pyproject.toml."""

import shutil
import subprocess
import sys
from pathlib import Path


def test_import_contracts_kept():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    result = subprocess.run([exe], cwd=Path(__file__).parents[2], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
