"""Files of a Hugging Face checkpoint folder, opened without trusting the folder: a name must be a
plain file name, and the file a regular file whose real path (symlinks resolved) stays inside the
folder."""
from __future__ import annotations

import json
import os


def path_in(folder: str, name: str, what: str, error) -> str:
    """The path of `name` in `folder`; `what` (who names it) and `error` (the exception class) word
    the refusal."""
    if os.path.basename(name) != name or name in ("", ".", ".."):
        raise error(f"{what} names {name!r}, not a file of the checkpoint folder")
    path = os.path.join(folder, name)
    if not os.path.lexists(path):
        raise error(f"{what} names {name}, which is missing" if what != name else f"{name} is missing")
    if not os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep):
        raise error(f"{name} is a symlink leading outside the checkpoint folder")
    if not os.path.isfile(path):
        raise error(f"{name} is not a regular file")
    return path


def read_json(folder: str, name: str, required: bool, error):
    """`name` parsed as a JSON object; None when absent and not required."""
    if not required and not os.path.lexists(os.path.join(folder, name)):
        return None
    path = path_in(folder, name, name, error)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{name}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise error(f"{name}: not a JSON object")
    return doc
