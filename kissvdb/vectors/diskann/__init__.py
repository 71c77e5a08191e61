"""A disk-resident vector index (issue 11): a usearch int8 graph and float32 rows served from
memory-mapped files, a mutable segment for new rows, a delete mask, crash-safe builds.

Synchronous core: never imports trio. See index.py for the owner's API and files.py for the
on-disk layout and its crash guarantees.
"""

from kissvdb.vectors.diskann.builder import BuildStopped
from kissvdb.vectors.diskann.files import CorruptIndex
from kissvdb.vectors.diskann.index import BuildJob, BuildRunning, DiskAnnIndex
from kissvdb.vectors.diskann.params import DiskAnnParams

__all__ = ["BuildJob", "BuildRunning", "BuildStopped", "CorruptIndex", "DiskAnnIndex", "DiskAnnParams"]
