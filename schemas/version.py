"""One version number for every data contract in `schemas/`.

History (what a reader of an older output must undo is in `schemas/compat.py`):
    1.0  the third branch was named `sound` in the annotation (`sound`, `sound_caption`, `other_share`,
         `sound_tags`, model keys `sound.*`)
    2.0  one name per branch: speech, music, general (`general`, `general_caption`, `general_share`, `general_tags`)
"""

SCHEMA_VERSION = "2.0"
PREVIOUS_SCHEMA_VERSIONS = ("1.0",)
