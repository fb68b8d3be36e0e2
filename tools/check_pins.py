"""Exit 0 when every ``name==version`` argument is installed at exactly that version.

Used by the ``tools/install_*.sh`` scripts to skip pip when nothing needs installing.
"""

import sys
from importlib.metadata import PackageNotFoundError, version

bad = []
for requirement in sys.argv[1:]:
    name, wanted = requirement.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        bad.append(f"{name} (missing)")
        continue
    if have != wanted:
        bad.append(f"{name} ({have} != {wanted})")
if bad:
    print("to install:", ", ".join(bad))
    sys.exit(1)
