"""``python -m ptmspiders.schema``: regenerate the published JSON Schemas from the documents."""

from ptmspiders.schema import write

for changed in write():
    print(f"wrote {changed}")
