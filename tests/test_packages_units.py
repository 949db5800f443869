"""Packages: the pure parts (paths, selection, tree parsing, ONNX plans, schema) and the
streaming fetcher against the mock hub with a second mock as CDN."""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path

import pytest

from ptmspiders.items import PackageItem, field_names, to_doc
from ptmspiders.middlewares.auth import origin
from ptmspiders.packages import hf, onnx
from ptmspiders.packages.blobs import BlobStore, git_blob_sha1, hash_file
from ptmspiders.packages.fetch import Expect, Streamer
from ptmspiders.packages.layout import UnsafePath, link_file, package_dir
from ptmspiders.packages.paths import safe_relpath
from ptmspiders.packages.selection import FileFilter, Selection, parse_size
from ptmspiders.pipelines.validate import load_schema, schema_error
from tests.mockhub import MockHub, MockResponse
from tests.mockhub.packages import BLOCK, Generated, PkgFile, attach_cdn

# -- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "../x", "a/../../x", "/etc/passwd", "a\\..\\b", "C:evil", "a\x00b", "./a", "a//b", "a/",
    "", "a/./b", "\u0065\u0301.txt", "x" * 256, "a/\x7fb",
])
def test_unsafe_paths_are_refused(path):
    assert safe_relpath(path) is None


@pytest.mark.parametrize("path", ["README.md", "a/b/c.bin", "onnx/model.onnx", "é.txt",
                                  "..hidden", "a..b/c"])
def test_safe_paths_are_kept_as_given(path):
    assert safe_relpath(path) == path


def test_link_file_refuses_a_symlinked_folder_that_leads_out(tmp_path):
    root = tmp_path / "pkg"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "sub").symlink_to(outside)
    blob = tmp_path / "blob"
    blob.write_bytes(b"x")
    with pytest.raises(UnsafePath):
        link_file(root, "sub/file.txt", blob)
    assert not (outside / "file.txt").exists()
    assert link_file(root, "ok/file.txt", blob).read_bytes() == b"x"


def test_package_dir_refuses_unsafe_segments(tmp_path):
    with pytest.raises(UnsafePath):
        package_dir(tmp_path, "huggingface", "..", "x", "main")
    assert package_dir(tmp_path, "huggingface", None, "gpt2", "abc") == \
        tmp_path / "huggingface" / "_" / "gpt2" / "abc"


# -- blobs ---------------------------------------------------------------------------------------

def test_git_blob_sha1_is_gits_object_id():
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_blob_store_commit_and_git_index(tmp_path):
    blobs = BlobStore(tmp_path)
    data = b"abc"
    sha = hashlib.sha256(data).hexdigest()
    path = blobs.put_bytes(data, sha)
    assert path == tmp_path / "blobs" / "sha256" / sha[:2] / sha
    assert blobs.has(sha, 3) and not blobs.has(sha, 4)
    assert hash_file(path, git=True) == (sha, git_blob_sha1(data), 3)
    oid = git_blob_sha1(data)
    assert blobs.sha256_of_git(oid) is None
    blobs.note_git(oid, sha)
    assert blobs.sha256_of_git(oid) == sha
    path.chmod(0o644)
    path.unlink()
    assert blobs.sha256_of_git(oid) is None  # the index never vouches for a missing blob


# -- selection -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [("20M", 20 << 20), ("500G", 500 << 30),
                                             ("1024", 1024), ("1.5K", 1536), ("2GiB", 2 << 30)])
def test_parse_size(text, value):
    assert parse_size(text, "max_bytes") == value


def test_parse_size_rejects_garbage():
    with pytest.raises(ValueError, match="max_bytes"):
        parse_size("lots", "max_bytes")


def test_file_filter():
    safe = FileFilter(weights="safe", exclude=("*.h5",), max_file_bytes=100)
    assert safe.skip_reason("model.safetensors", 10) is None
    assert safe.skip_reason("pytorch_model.bin", 10) == "weights"
    assert safe.skip_reason("sub/tf_model.h5", 10) == "excluded"
    assert safe.skip_reason("config.json", 101) == "max_file_bytes"
    none = FileFilter(weights="none")
    assert none.skip_reason("model.onnx", 1) == "weights"
    assert none.skip_reason("README.md", 1) is None
    only = FileFilter(include=("*.json",))
    assert only.skip_reason("a/config.json", 1) is None
    assert only.skip_reason("README.md", 1) == "excluded"


def _models(n_hf: int = 10, n_onnx: int = 4) -> list[dict]:
    docs = []
    for i in range(n_hf):
        docs.append({"_id": f"huggingface:o/m{i}", "hub": "huggingface", "hub_id": f"o/m{i}",
                     "downloads": i * 10, "likes": 0})
    for i in range(n_onnx):  # a hub without downloads: likes rank it
        docs.append({"_id": f"onnx_zoo:p{i}", "hub": "onnx_zoo", "hub_id": f"p{i}",
                     "downloads": None, "likes": i})
    docs.append({"_id": "huggingface:o/gone", "hub": "huggingface", "hub_id": "o/gone",
                 "downloads": 10**9, "removed_at": "2026-01-01T00:00:00.000Z"})
    return docs


def test_selection_top_share_per_hub(store):
    store.upsert("models", _models())
    chosen = [d["_id"] for d in Selection(hubs=["huggingface", "onnx_zoo"], top=0.2).models(
        store)]
    assert chosen == ["huggingface:o/m9", "huggingface:o/m8", "onnx_zoo:p3"]


def test_selection_filter_sort_limit(store):
    store.upsert("models", _models())
    sel = Selection(hubs=["huggingface"], filter={"downloads": {"$gte": 50}}, sort="downloads",
                    limit=2)
    assert [d["_id"] for d in sel.models(store)] == ["huggingface:o/m5", "huggingface:o/m6"]


# -- Hugging Face tree ---------------------------------------------------------------------------

def test_tree_files_reads_lfs_and_git_ids():
    entries = [
        {"type": "directory", "oid": "1" * 40, "size": 0, "path": "sub"},
        {"type": "file", "oid": "A" * 40, "size": 12, "path": "README.md"},
        {"type": "file", "oid": "b" * 40, "size": 134, "path": "sub/model.safetensors",
         "lfs": {"oid": "c" * 64, "size": 5_000_000_000, "pointerSize": 134}},
        "junk", {"type": "file"},
    ]
    files, bad = hf.tree_files(entries)
    assert bad == 2
    assert [(f.path, f.size, f.sha256, f.git_oid, f.lfs) for f in files] == [
        ("README.md", 12, None, "a" * 40, False),
        ("sub/model.safetensors", 5_000_000_000, "c" * 64, "b" * 40, True)]


def test_resolve_url_quotes_paths():
    assert hf.resolve_url("https://hf.co", "a/b", "main", "dir/x y#.bin") == \
        "https://hf.co/a/b/resolve/main/dir/x%20y%23.bin"


# -- ONNX plans ----------------------------------------------------------------------------------

def test_onnx_plan_from_a_stored_model():
    path = "validated/vision/classification/resnet/model/resnet50-v1-7.onnx"
    model = {"_id": f"onnx_zoo:{path}", "hub": "onnx_zoo", "hub_id": path,
             "github_repos": ["onnx/models"],
             "files": [{"path": path, "size": 10, "sha256": "d" * 64}],
             "extra": {"download_url": f"https://media.githubusercontent.com/media/onnx/models/"
                                       f"main/{path}"}}
    plan = onnx.package_plan(model, "http://media.test/media")
    assert plan is not None
    assert (plan.owner, plan.name, plan.revision) == ("onnx", "resnet50-v1-7", "main")
    assert plan.files[0].url == f"http://media.test/media/onnx/models/main/{path}"
    assert plan.files[0].sha256 == "d" * 64 and plan.files[0].size == 10
    assert onnx.package_plan({**model, "extra": {}}, "http://m") is None


# -- the record ----------------------------------------------------------------------------------

def test_package_item_matches_its_schema():
    schema = load_schema("package")
    assert set(field_names(PackageItem)) == set(schema["properties"])
    item = PackageItem(_id="huggingface:a/b", hub="huggingface", hub_id="a/b", revision="r",
                       files=[{"path": "x", "size": 1, "sha256": "e" * 64,
                               "blob": f"blobs/sha256/ee/{'e' * 64}", "lfs": False,
                               "verified": True, "status": "downloaded", "reason": None,
                               "scan": None}],
                       downloaded_at="2026-01-01T00:00:00.000Z", crawl={})
    assert schema_error("package", to_doc(item)) is None
    item.files[0]["status"] = "lost"
    assert schema_error("package", to_doc(item)) == "invalid_files"


def test_packages_collection_on_both_stores(store):
    doc = {"_id": "huggingface:a/b", "hub": "huggingface", "complete": True, "bytes": 3,
           "crawl": {"first_seen": "2026-01-01T00:00:00.000Z"}}
    store.upsert("packages", [doc])
    store.upsert("packages", [{**doc, "bytes": 4, "crawl": {"first_seen": "2027"}}])
    assert store.count("packages", {"complete": True}) == 1
    got = store.get("packages", "huggingface:a/b")
    assert got["bytes"] == 4 and got["crawl"]["first_seen"] == "2026-01-01T00:00:00.000Z"


# -- the streaming fetcher -----------------------------------------------------------------------

@pytest.fixture
def hub_and_cdn():
    with MockHub() as hub, MockHub(host="127.0.0.2") as cdn:
        attach_cdn(hub, cdn)
        yield hub, cdn


def _streamer(tmp_path: Path, hub: MockHub) -> Streamer:
    return Streamer(BlobStore(tmp_path), user_agent="test", timeout=10, retry_wait=0.01,
                    credentials={origin(hub.url): "Bearer hf_secret"})


def test_fetch_follows_the_cdn_redirect_without_the_token(tmp_path, hub_and_cdn):
    hub, cdn = hub_and_cdn
    f = PkgFile("w.safetensors", b"weights" * 1000, lfs=True)
    hub.packages.add("o/r", "a" * 40, [f])
    got = _streamer(tmp_path, hub).fetch(f"{hub.url}/o/r/resolve/{'a' * 40}/w.safetensors",
                                         Expect(sha256=f.sha256, size=f.size),
                                         auth_origin=origin(hub.url))
    assert got.status == "downloaded" and got.sha256 == f.sha256 and got.requests == 2
    assert (tmp_path / BlobStore(tmp_path).relpath(f.sha256)).read_bytes() == f.content
    assert hub.log[0].headers.get("authorization") == "Bearer hf_secret"
    assert cdn.log and all("authorization" not in r.headers for r in cdn.log)


def test_fetch_resumes_a_cut_transfer_with_range(tmp_path, hub_and_cdn):
    hub, _ = hub_and_cdn
    f = PkgFile("big.gguf", Generated(seed=1, size=3 * BLOCK + 7), lfs=True, cut=True)
    hub.packages.media["o/r/main/big.gguf"] = f
    got = _streamer(tmp_path, hub).fetch(f"{hub.url}/media/o/r/main/big.gguf",
                                         Expect(sha256=f.sha256, size=f.size))
    assert got.status == "downloaded" and got.resumed == 1
    ranges = [r.headers.get("range") for r in hub.log]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    # Across the two requests, every byte was sent once.
    assert got.transferred == f.size


def test_fetch_holds_a_small_file_in_memory_and_resumes_it_with_range(tmp_path, hub_and_cdn):
    hub, _ = hub_and_cdn
    f = PkgFile("small.safetensors", bytes(range(256)) * 40, lfs=True, cut=True)
    hub.packages.media["o/r/main/small.safetensors"] = f
    got = _streamer(tmp_path, hub).fetch(f"{hub.url}/media/o/r/main/small.safetensors",
                                         Expect(sha256=f.sha256, size=f.size))
    assert got.status == "downloaded" and got.resumed == 1 and got.transferred == f.size
    assert [r.headers.get("range") for r in hub.log] == [None, f"bytes={f.size // 2}-"]
    blob = BlobStore(tmp_path).path(f.sha256)
    assert blob.read_bytes() == f.content and stat.S_IMODE(blob.stat().st_mode) == 0o444
    tmp = tmp_path / "blobs" / "tmp"  # no partial file was ever written
    assert not tmp.exists() or not any(tmp.iterdir())


def test_fetch_resumes_a_partial_file_left_by_a_killed_run(tmp_path, hub_and_cdn):
    hub, _ = hub_and_cdn
    f = PkgFile("big.gguf", Generated(seed=2, size=2 * BLOCK), lfs=True)
    hub.packages.media["o/r/main/big.gguf"] = f
    blobs = BlobStore(tmp_path)
    blobs.part_path(f.sha256).write_bytes(b"".join(f.chunks())[:BLOCK + 5])
    got = _streamer(tmp_path, hub).fetch(f"{hub.url}/media/o/r/main/big.gguf",
                                         Expect(sha256=f.sha256, size=f.size))
    assert got.status == "downloaded" and got.transferred == BLOCK - 5
    assert [r.headers.get("range") for r in hub.log] == [f"bytes={BLOCK + 5}-"]


def test_fetch_retries_a_hash_mismatch_once_then_fails(tmp_path, hub_and_cdn):
    hub, _ = hub_and_cdn
    f = PkgFile("x.onnx", b"lying bytes" * 100, lfs=True, corrupt=True)
    hub.packages.media["o/r/main/x.onnx"] = f
    got = _streamer(tmp_path, hub).fetch(f"{hub.url}/media/o/r/main/x.onnx",
                                         Expect(sha256=f.sha256, size=f.size))
    assert (got.status, got.reason) == ("failed", "hash_mismatch")
    assert len(hub.log) == 2
    assert not BlobStore(tmp_path).has(f.sha256)
    tmp = tmp_path / "blobs" / "tmp"  # no half file left behind (a small file: in memory)
    assert not tmp.exists() or not any(tmp.iterdir())


def test_fetch_verifies_small_files_by_git_blob_id(tmp_path, hub_and_cdn):
    hub, _ = hub_and_cdn
    f = PkgFile("config.json", b'{"a": 1}')
    hub.packages.add("o/r", "a" * 40, [f])
    streamer = _streamer(tmp_path, hub)
    url = f"{hub.url}/o/r/resolve/{'a' * 40}/config.json"
    got = streamer.fetch(url, Expect(git_oid=f.git_oid(), size=f.size))
    assert got.status == "downloaded"
    assert BlobStore(tmp_path).sha256_of_git(f.git_oid()) == f.sha256
    bad = streamer.fetch(url, Expect(git_oid="0" * 40, size=f.size))
    assert (bad.status, bad.reason) == ("failed", "hash_mismatch")


def test_fetch_never_leaves_the_blob_writable(tmp_path, hub_and_cdn):
    hub, _ = hub_and_cdn
    f = PkgFile("a.onnx", b"onnx" * 10, lfs=True)
    hub.packages.media["o/r/main/a.onnx"] = f
    _streamer(tmp_path, hub).fetch(f"{hub.url}/media/o/r/main/a.onnx",
                                   Expect(sha256=f.sha256, size=f.size))
    mode = BlobStore(tmp_path).path(f.sha256).stat().st_mode
    assert stat.S_IMODE(mode) == 0o444  # shared by hard links: never edited in place


def test_packages_spider_keeps_the_guards_and_leaves_out_idle_middlewares():
    """Each resolve call passes every middleware: those that do nothing for hub API calls are
    off for this spider, the throttle, retries, credentials and redirect guard stay."""
    from scrapy.utils.conf import build_component_list
    from scrapy.utils.misc import load_object
    from scrapy.utils.project import get_project_settings

    from ptmspiders.addon import ProjectAddon
    from ptmspiders.spiders.packages import PackagesSpider

    settings = get_project_settings()
    PackagesSpider.update_settings(settings)
    ProjectAddon().update_settings(settings)  # after the spider's, as Scrapy runs add-ons
    downloader = {load_object(c).__name__ if isinstance(c, str) else c.__name__ for c in
                  build_component_list(settings.getwithbase("DOWNLOADER_MIDDLEWARES"))}
    spider = {load_object(c).__name__ if isinstance(c, str) else c.__name__ for c in
              build_component_list(settings.getwithbase("SPIDER_MIDDLEWARES"))}
    assert {"RateLimitMiddleware", "RetryMiddleware", "SameOriginRedirectMiddleware",
            "HubAuthMiddleware", "UserAgentMiddleware", "DownloaderStats"} <= downloader
    assert not {"DepthMiddleware", "MetaCopyDetectionMiddleware"} & spider
    assert {"HttpErrorMiddleware", "UrlLengthMiddleware"} <= spider
    assert not any(settings.getbool(k) for k in ("COOKIES_ENABLED", "METAREFRESH_ENABLED"))


# -- spider arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hub": "nohub"}, "packages: -a hub='nohub': unknown hub nohub"),
    ({"top": "10"}, "packages: -a top='10': Input should be less than or equal to 1"),
    ({"max_bytes": "lots"}, "packages: -a max_bytes='lots': a size such as 500G"),
    ({"weights": "some"}, "packages: -a weights='some': expected one of all, none, safe"),
    ({"revision": "head"}, "packages: -a revision='head': expected one of latest, pinned"),
    ({"filter": "{bad"}, "packages: -a filter='{bad': not JSON"),
    ({"filter": "[1]"}, "packages: -a filter='[1]': a JSON object"),
    ({"limit": "-1"}, "packages: -a limit='-1': Input should be greater than or equal to 0"),
    ({"sort": "-downloads,"}, "packages: -a sort='-downloads,': "),
    ({"max_byte": "1G"}, "packages: -a max_byte='1G': unknown argument (did you mean max_bytes?"),
])
def test_bad_arguments_fail_at_start(kwargs, message, tmp_path):
    from scrapy.utils.test import get_crawler

    from ptmspiders.args import ArgumentError
    from ptmspiders.spiders.packages import PackagesSpider

    crawler = get_crawler(PackagesSpider, {"PTM_STORE_URI": f"sqlite:///{tmp_path}/x.db"})
    with pytest.raises(ArgumentError, match=re.escape(message)):
        PackagesSpider.from_crawler(crawler, **kwargs)


def test_arguments_are_recorded_for_the_crawl_record(tmp_path):
    from scrapy.utils.test import get_crawler

    from ptmspiders.spiders.packages import PackagesSpider

    crawler = get_crawler(PackagesSpider, {"PTM_STORE_URI": f"sqlite:///{tmp_path}/x.db"})
    spider = PackagesSpider.from_crawler(crawler, hub="huggingface,onnx_zoo", top="0.1",
                                         weights="safe", max_bytes="500G", dest=str(tmp_path))
    assert spider.selection.hubs == ["huggingface", "onnx_zoo"]
    assert spider.max_bytes == 500 << 30 and spider.files.weights == "safe"
    assert spider.args.recorded() == {"hub": ["huggingface", "onnx_zoo"], "top": 0.1,
                                      "weights": "safe", "max_bytes": 500 << 30,
                                      "dest": str(tmp_path)}
    assert spider.args.restricted  # packages of stored models: never a whole hub listed


# -- archives ------------------------------------------------------------------------------------

def _tar(tmp_path: Path, members: list[tuple[str, bytes | None, bytes, str]]) -> Path:
    import io
    import tarfile

    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_unpack_refuses_what_could_escape_and_checks_git_ids(tmp_path):
    import tarfile

    from ptmspiders.packages.archive import unpack

    path = _tar(tmp_path, [
        ("top/ok.txt", b"ok", tarfile.REGTYPE, ""),
        ("top/bad.txt", b"bad", tarfile.REGTYPE, ""),
        ("top/../../escape.txt", b"x", tarfile.REGTYPE, ""),
        ("top/sub/ln", None, tarfile.SYMTYPE, "../../../../etc/passwd"),
        ("top/hard", None, tarfile.LNKTYPE, "top/ok.txt"),
        ("top/fifo", None, tarfile.FIFOTYPE, ""),
        ("top/skip.bin", b"zz", tarfile.REGTYPE, ""),
    ])
    blobs = BlobStore(tmp_path / "dest")
    expect = {"ok.txt": git_blob_sha1(b"ok"), "bad.txt": "0" * 40, "skip.bin": False}
    got = unpack(path, blobs, wanted=lambda p: expect.get(p, True))
    status = {m.path: (m.status, m.reason) for m in got.members}
    assert status == {
        "ok.txt": ("stored", None), "bad.txt": ("mismatch", "hash_mismatch"),
        "../../escape.txt": ("refused", "unsafe_path"), "sub/ln": ("refused", "link"),
        "hard": ("refused", "link"), "fifo": ("refused", "special_file"),
        "skip.bin": ("unwanted", None)}
    stored = sorted(p.name for p in (tmp_path / "dest" / "blobs" / "sha256").rglob("*")
                    if p.is_file())
    assert stored == [hashlib.sha256(b"ok").hexdigest()]  # nothing else was kept
    assert not (tmp_path / "escape.txt").exists()


def test_unpack_reads_dot_slash_names_as_tar_c_dot_writes_them(tmp_path):
    """Kaggle's and tfhub.dev's archives are ``tar -C model .``: ``./saved_model.pb`` is
    ``saved_model.pb``, while ``./../x`` stays refused."""
    import tarfile

    from ptmspiders.packages.archive import strip_top, unpack

    path = _tar(tmp_path, [
        ("./saved_model.pb", b"pb", tarfile.REGTYPE, ""),
        ("./variables/variables.index", b"ix", tarfile.REGTYPE, ""),
        ("./../escape.txt", b"x", tarfile.REGTYPE, ""),
    ])
    got = unpack(path, BlobStore(tmp_path / "dest"), wanted=lambda p: True, strip=0)
    assert {m.path: (m.status, m.reason) for m in got.members} == {
        "saved_model.pb": ("stored", None), "variables/variables.index": ("stored", None),
        "../escape.txt": ("refused", "unsafe_path")}
    assert strip_top("top/a.txt", 1) == "a.txt" and strip_top("top", 1) == ""


def test_unpack_refuses_an_archive_past_its_member_bound(tmp_path):
    """A million-member archive ends at the bound: refused whole, nothing past it stored."""
    import tarfile

    from ptmspiders.packages.archive import TOO_MANY_MEMBERS, ArchiveRefused, unpack

    members = [(f"top/d{i}", None, tarfile.DIRTYPE, "") for i in range(3)]
    members += [(f"top/f{i}.txt", b"%d" % i, tarfile.REGTYPE, "") for i in range(20)]
    path = _tar(tmp_path, members)
    blobs = BlobStore(tmp_path / "dest")
    with pytest.raises(ArchiveRefused) as refused:
        unpack(path, blobs, wanted=lambda p: True, max_members=10)
    assert refused.value.reason == TOO_MANY_MEMBERS
    stored = [p for p in (tmp_path / "dest" / "blobs" / "sha256").rglob("*") if p.is_file()]
    assert len(stored) == 7  # folders count as members: 3 + 7 files, then the refusal
    assert not any(blobs.tmp.iterdir())
    # At the bound exactly, the archive is unpacked.
    got = unpack(path, blobs, wanted=lambda p: True, max_members=len(members))
    assert len([m for m in got.members if m.status == "stored"]) == 20


def test_unpack_refuses_a_tar_bomb_before_writing_it(tmp_path):
    """64 MiB of zeros (a few KB compressed) and a header claiming 1 TiB: refused at the
    header, before a byte of the member is written."""
    import gzip
    import io
    import tarfile

    from ptmspiders.packages.archive import TOO_LARGE, ArchiveRefused, unpack

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("top/zeros.bin")
        info.size = 64 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(buf.getvalue())
    assert bomb.stat().st_size < 1 << 20
    claims = tarfile.TarInfo("top/huge.bin")
    claims.size = 1 << 40
    liar = tmp_path / "liar.tar.gz"
    liar.write_bytes(gzip.compress(claims.tobuf() + bytes(4096)))
    blobs = BlobStore(tmp_path / "dest")
    for path in (bomb, liar):
        with pytest.raises(ArchiveRefused) as refused:
            unpack(path, blobs, wanted=lambda p: True, max_total_bytes=16 << 20)
        assert refused.value.reason == TOO_LARGE
    assert not (tmp_path / "dest" / "blobs" / "sha256").exists()
    assert not blobs.tmp.exists() or not any(blobs.tmp.iterdir())
    # Unwanted members count too: the bound is on the archive, not on what is kept.
    with pytest.raises(ArchiveRefused):
        unpack(bomb, blobs, wanted=lambda p: False, max_total_bytes=16 << 20)


def test_tfhub_location_of_a_handle():
    from ptmspiders.packages.crawl_tfhub import tfhub_location

    assert tfhub_location("google/imagenet/mobilenet_v2_100_224/classification/5") == (
        "google", "imagenet+mobilenet_v2_100_224+classification", "5")
    assert tfhub_location("vasudevgupta7/wav2vec2/1") == ("vasudevgupta7", "wav2vec2", "1")
    for bad in ("google/bert", "google/../x/1", "google/a+b/1", "google/bert/v1", "",
                "google//bert/1", "google/bert/1/"):
        assert tfhub_location(bad) is None, bad


def test_published_md5_reads_gcs_and_content_md5():
    from ptmspiders.packages.archive import published_md5

    digest = hashlib.md5(b"x").digest()
    import base64

    b64 = base64.b64encode(digest).decode()
    assert published_md5({"x-goog-hash": f"crc32c=AAAAAA==, md5={b64}"}) == digest.hex()
    assert published_md5({"content-md5": b64}) == digest.hex()
    assert published_md5({"x-goog-hash": "crc32c=AAAAAA=="}) is None
    assert published_md5({"content-md5": "not base64!"}) is None


def test_github_target_and_kaggle_instances():
    from ptmspiders.packages.archive import github_target, kaggle_instances

    model = {"github_repos": ["https://x", "acme/vision"], "extra": {"pinned_ref": "v1"}}
    assert github_target(model) == ("acme/vision", "v1")
    assert github_target(model, latest=True) == ("acme/vision", "HEAD")
    assert github_target({**model, "latest_commit_sha": "a" * 40}) == ("acme/vision", "a" * 40)
    assert github_target({**model, "extra": {"pinned_ref": "../x"}}) == ("acme/vision", "HEAD")
    assert github_target({"github_repos": ["../etc"]}) is None
    insts = kaggle_instances({"extra": {"instances": [
        {"framework": "jax", "slug": "2b", "version_number": 2},
        {"framework": "../x", "slug": "a", "version_number": 1},
        {"framework": "jax", "slug": "7b", "version_number": None}]}})
    assert [i.prefix for i in insts] == ["jax/2b/2"]


# -- the scanner, as the spider calls it ---------------------------------------------------------

def test_scanner_results_are_recorded_per_file_and_summed(tmp_path):
    """The scanner is another module's (``ptmspiders/packages/scan.py``): here a stand-in
    with its contract shows what the spider does with its answers, not how it scans."""
    from scrapy.utils.test import get_crawler

    from ptmspiders.packages.plan import FileSpec
    from ptmspiders.packages.scanning import summary
    from ptmspiders.spiders.packages import Job, PackagesSpider

    crawler = get_crawler(PackagesSpider, {"PTM_STORE_URI": f"sqlite:///{tmp_path}/x.db"})
    spider = PackagesSpider.from_crawler(crawler, dest=str(tmp_path / "pk"))
    blobs = BlobStore(tmp_path / "pk")
    records = []
    for name, data in (("a.bin", b"evil"), ("b.pkl", b"odd"), ("c.json", b"{}")):
        sha = hashlib.sha256(data).hexdigest()
        blobs.put_bytes(data, sha)
        records.append(FileSpec(name, len(data)).record("downloaded", sha256=sha,
                                                         blob=blobs.relpath(sha)))
    calls = []

    def scan_file(path: Path, name: str) -> dict:
        calls.append((path.read_bytes(), name))
        if name == "a.bin":
            return {"status": "unsafe", "globals": ["os.system"], "dangerous": ["os.system"],
                    "scanner": "stand-in 0"}
        raise RuntimeError("scanner bug")

    spider.scanner = (lambda p: p.endswith((".bin", ".pkl")), scan_file)
    job = Job(model={"_id": "huggingface:a/b"}, hub="huggingface",
              root=tmp_path / "pk" / "huggingface" / "a" / "b" / "r")
    spider.link_and_scan(job, records)
    assert calls == [(b"evil", "a.bin"), (b"odd", "b.pkl")]  # from the blob, never c.json
    assert records[0]["scan"]["dangerous"] == ["os.system"]
    assert records[1]["scan"]["status"] == "error" and records[2]["scan"] is None
    assert summary(records) == {"scanned": 2, "unsafe": 1, "suspicious": 0, "errors": 1}
    assert (job.root / "a.bin").read_bytes() == b"evil"


def test_fetch_never_follows_a_redirect_to_another_scheme(tmp_path, hub_and_cdn):
    hub, _ = hub_and_cdn
    hub.route("GET", r"/evil", lambda h, r, m: MockResponse(
        status=302, headers=[("Location", "file:///etc/passwd")]))
    got = _streamer(tmp_path, hub).fetch(f"{hub.url}/evil", Expect(sha256="a" * 64, size=5))
    assert (got.status, got.reason, got.requests) == ("failed", "bad_redirect", 1)


def test_a_callback_error_fails_its_file_instead_of_losing_the_package(tmp_path):
    import asyncio

    from scrapy.http import Request, Response
    from scrapy.utils.test import get_crawler

    from ptmspiders.packages.plan import FileSpec
    from ptmspiders.spiders.packages import FILE, JOB, Job, PackagesSpider, guarded

    crawler = get_crawler(PackagesSpider, {"PTM_STORE_URI": f"sqlite:///{tmp_path}/x.db"})
    spider = PackagesSpider.from_crawler(crawler, dest=str(tmp_path / "pk"))
    job = Job(model={"_id": "huggingface:a/b", "hub_id": "a/b"}, hub="huggingface",
              specs=[FileSpec("x.json", 2)], records=[None], pending=1, listed=1)

    @guarded
    async def broken(self, response):
        raise ValueError("a bug")
        yield  # an async generator, like the spider's callbacks

    response = Response("http://hub/x", request=Request("http://hub/x",
                                                          meta={JOB: job, FILE: 0}))

    async def run():
        await spider.package_slots.acquire()  # as start() does for the package
        return [out async for out in broken(spider, response)]

    out = asyncio.run(run())
    assert len(out) == 1 and out[0].files[0]["reason"] == "error: ValueError"
    assert out[0].complete is False and job.finished


def test_clean_tmp_keeps_only_resumable_partial_files(tmp_path):
    blobs = BlobStore(tmp_path)
    done = blobs.put_bytes(b"done", hashlib.sha256(b"done").hexdigest())
    resumable = blobs.part_path("a" * 64)
    git_part = blobs.part_path("git-" + "b" * 40)
    stale = blobs.part_path(done.name)  # its blob is complete: nothing to resume
    leftovers = [blobs.tmp / "archive.123.part", blobs.tmp / f"{'c' * 64}.9f.new",
                 blobs.tmp / "unpack.77.new"]
    for p in (resumable, git_part, stale, *leftovers):
        p.write_bytes(b"x")
    assert blobs.clean_tmp() == 4
    assert sorted(p.name for p in blobs.tmp.iterdir()) == sorted([resumable.name,
                                                                  git_part.name])
