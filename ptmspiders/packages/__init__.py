"""Model packages: the repositories' files themselves, verified, deduplicated, pinned.

``blobs`` is the content-addressed store (``dest/blobs/sha256/<2 hex>/<sha256>``), ``fetch``
streams one file into it with Range resume and hashing on the way, ``layout`` makes each
package a folder of hard links (``dest/<hub>/<owner>/<name>/<revision>/<path>``), ``selection``
decides what a run downloads, ``hf`` and ``onnx`` turn a hub's listing into file specs, and
``verify`` re-hashes the blobs against the records. The spider (``spiders/packages.py``) only
wires them to Scrapy.
"""
