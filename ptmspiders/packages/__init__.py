"""Model packages: download, verify, store and scan the repositories themselves.

``blobs`` is the content-addressed store (``dest/blobs/sha256/<2 hex>/<sha256>``), ``fetch``
streams one file into it with Range resume and hashing on the way, ``layout`` makes each
package a folder of hard links (``dest/<hub>/<owner>/<name>/<revision>/<path>``), ``selection``
decides what a run downloads, ``hf``, ``onnx`` and ``archive`` turn a hub's listing or archive
into files, ``scan`` reads pickles without loading them, and ``verify`` re-hashes the blobs
against the records. ``crawler`` and the ``crawl_*`` mixins are the crawl's steps; the spider
(``spiders/packages.py``) puts them together.
"""
