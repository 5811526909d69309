"""Errors of the folders domain."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound


class FolderNotFound(NotFound):
    """No such folder, or the caller may not see it."""

    type = "folder-not-found"
    title = "Folder not found"


class FolderNameTaken(Conflict):
    """A sibling folder already has this name."""

    type = "folder-name-taken"
    title = "A folder with this name already exists here"


class FolderCycle(Conflict):
    """A folder cannot be moved into itself or below itself."""

    type = "folder-cycle"
    title = "A folder cannot be moved below itself"


class FolderNotEmpty(Conflict):
    """The folder holds folders, products or devices; delete with `recursive=true`."""

    type = "folder-not-empty"
    title = "Folder is not empty"
