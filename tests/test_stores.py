"""The same store contract on SQLite, mongomock and (with PTM_TEST_MONGO_URI) real MongoDB."""

import sqlite3

import orjson
import pytest

from ptmspiders.stores import StoreError, driver_message, open_store, redact_uri
from ptmspiders.stores import sqlite as sqlite_store
from ptmspiders.stores.base import Encoded, decoded, doc_id


def doc(i, first="2026-01-01T00:00:00Z", last=None, **kw):
    d = {"_id": f"huggingface:o/m{i}", "hub": "huggingface", "owner": "o", "downloads": i,
         "tags": ["t"], "raw": {"model-index": None, "a.b": 1},
         "crawl": {"first_seen": first, "last_seen": last or first, "source_url": "u"}}
    d.update(kw)
    return d


def test_upsert_inserts_then_updates_without_duplicates(store):
    assert store.upsert("models", [doc(i) for i in range(5)]) == 5
    store.upsert("models", [doc(i, first="2026-02-02T00:00:00Z", downloads=100 + i)
                            for i in range(3, 8)])
    assert store.count("models") == 8
    assert store.get("models", "huggingface:o/m4")["downloads"] == 104


def test_recrawl_keeps_first_seen_and_moves_last_seen(store):
    store.upsert("models", [doc(1)])
    store.upsert("models", [doc(1, first="2026-03-03T00:00:00Z")])
    crawl = store.get("models", "huggingface:o/m1")["crawl"]
    assert crawl["first_seen"] == "2026-01-01T00:00:00Z"
    assert crawl["last_seen"] == "2026-03-03T00:00:00Z"


def test_documents_round_trip_unchanged(store):
    original = doc(2, extra={"nested": {"x": [1, None, "y"]}}, gated=False, license=None)
    store.upsert("models", [original])
    assert store.get("models", original["_id"]) == original


def test_encoded_documents_are_stored_as_plain_ones(store):
    """What a store's encode() makes on the crawl's thread, its upsert takes like the dict
    (first_seen kept), also mixed with plain documents in one batch; and every store takes
    an Encoded document, whichever store made it."""
    store.upsert("models", [doc(1)])
    third = doc(3, extra={"n": [1, None]})
    assert store.upsert("models", [store.encode(doc(1, first="2026-03-03T00:00:00Z")),
                                   doc(2), Encoded(third["_id"], orjson.dumps(third))]) == 3
    assert store.get("models", "huggingface:o/m1")["crawl"] == {
        "first_seen": "2026-01-01T00:00:00Z", "last_seen": "2026-03-03T00:00:00Z",
        "source_url": "u"}
    assert store.get("models", "huggingface:o/m3") == doc(3, extra={"n": [1, None]})
    assert decoded(store.encode(doc(4))) == doc(4)
    assert doc_id(store.encode(doc(4))) == "huggingface:o/m4"


def test_sqlite_encodes_on_the_callers_thread_and_refuses_what_json_cannot_hold(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/ptm.sqlite")
    encoded = store.encode(doc(1))
    assert isinstance(encoded, Encoded) and encoded.decode() == doc(1)
    with pytest.raises(TypeError):
        store.encode(doc(2, downloads=2**70))
    store.close()


def test_find_count_ids_by_dotted_equality(store):
    store.upsert("models", [doc(i, hub="tfhub" if i % 2 else "huggingface") for i in range(6)])
    assert store.count("models", {"hub": "tfhub"}) == 3
    assert [d["_id"] for d in store.find("models", {"hub": "tfhub"})] == [
        "huggingface:o/m1", "huggingface:o/m3", "huggingface:o/m5"]
    assert store.ids("models", {"crawl.source_url": "u", "hub": "huggingface"}) == {
        "huggingface:o/m0", "huggingface:o/m2", "huggingface:o/m4"}
    assert store.get("models", "nope") is None


def test_get_many_with_projection(store):
    store.upsert("models", [doc(i) for i in range(3)])
    got = store.get_many("models", ["huggingface:o/m0", "huggingface:o/m2", "missing"],
                         fields=["downloads", "crawl.first_seen"])
    assert got == {
        "huggingface:o/m0": {"downloads": 0, "crawl.first_seen": "2026-01-01T00:00:00Z"},
        "huggingface:o/m2": {"downloads": 2, "crawl.first_seen": "2026-01-01T00:00:00Z"},
    }


def test_delete_and_collections_are_separate(store):
    store.upsert("models", [doc(1)])
    store.upsert("owners", [{"_id": "huggingface:o", "hub": "huggingface", "name": "o",
                             "crawl": {"first_seen": "x", "last_seen": "x", "source_url": None}}])
    assert store.count("owners") == 1 and store.count("models") == 1
    assert store.delete("models", ["huggingface:o/m1"]) == 1
    assert store.count("models") == 0 and store.count("owners") == 1


def test_sqlite_store_persists_across_connections(tmp_path):
    uri = f"sqlite:///{tmp_path}/sub/ptm.sqlite"
    with open_store(uri) as s:
        s.upsert("models", [doc(1)])
    with open_store(uri) as s:
        assert s.count("models") == 1
        mode = s.conn.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_sqlite_indexes_exist(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/x.sqlite") as s:
        s.upsert("models", [doc(1)])
        names = {r[0] for r in s.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"ix_models_hub", "ix_models_owner", "ix_models_last_modified",
            "ix_models_downloads"} <= names


def test_mongo_indexes_exist():
    s = open_store("mongomock://localhost/ptm_idx")
    s.upsert("models", [doc(1)])
    keys = {next(iter(v["key"]))[0] for v in s.db["models"].index_information().values()}
    assert {"hub", "owner", "last_modified", "downloads"} <= keys


@pytest.mark.parametrize("uri", ["postgres://x", "sqlite://", "mongodb://h/bad.name"])
def test_bad_uris_are_clear_errors(uri):
    with pytest.raises(StoreError):
        open_store(uri)


def test_driver_message_is_one_line_without_pymongo_s_topology():
    from pymongo.errors import ServerSelectionTimeoutError

    exc = ServerSelectionTimeoutError(
        "db:27017: [Errno 111] Connection refused (configured timeouts: socketTimeoutMS: "
        "20000.0ms, connectTimeoutMS: 20000.0ms), Timeout: 5.0s, Topology Description: "
        "<TopologyDescription id: 1, topology_type: Unknown, servers: [...]>")
    assert driver_message(exc) == "db:27017: [Errno 111] Connection refused"
    assert driver_message(sqlite3.OperationalError("database is locked")) == \
        "database is locked"


def test_redact_uri_hides_passwords():
    assert redact_uri("mongodb://me:s3cret@db:27017/ptm") == "mongodb://me:***@db:27017/ptm"
    assert redact_uri("sqlite:///data/ptm.sqlite") == "sqlite:///data/ptm.sqlite"


def test_exists_stops_at_a_match(store):
    assert store.exists("models", {"hub": "huggingface"}) is False
    store.upsert("models", [doc(1), doc(2)])
    assert store.exists("models", {"hub": "huggingface"}) is True
    assert store.exists("models", {"hub": "tfhub"}) is False
    assert store.exists("models") is True
    assert store.exists("owners") is False


def test_a_grouped_write_that_fails_undoes_only_itself(tmp_path):
    """Inside begin()..commit() each upsert is a savepoint: a batch that fails after its first
    statement leaves no half behind, and the batches around it commit."""
    with open_store(f"sqlite:///{tmp_path}/t.sqlite") as s:
        reader = s.for_thread()
        assert s.count("models") == 0  # the table exists before the transaction
        assert reader.count("models") == 0
        s.begin()
        s.upsert("models", [doc(1)])
        rows = sqlite_store._ROWS_PER_STATEMENT
        bad = [doc(i) for i in range(100, 200 + rows)]
        bad[rows + 50]["downloads"] = 2**70  # orjson cannot encode it: the second statement fails
        with pytest.raises(TypeError):
            s.upsert("models", bad)
        s.upsert("models", [doc(2)])
        assert reader.count("models") == 0  # not committed yet: other connections see nothing
        s.commit()
        assert reader.ids("models") == {"huggingface:o/m1", "huggingface:o/m2"}
        reader.close()


def test_a_transaction_lost_behind_the_writers_back_is_an_error(tmp_path):
    """SQLite rolls the whole transaction back on some errors (full disk, I/O); a write or
    commit after that must not pretend the earlier writes of the group are still there."""
    from ptmspiders.stores.base import TransactionLost

    with open_store(f"sqlite:///{tmp_path}/t.sqlite") as s:
        s.begin()
        s.upsert("models", [doc(1)])
        s.conn.execute("ROLLBACK")  # what SQLite does itself after SQLITE_FULL
        with pytest.raises(TransactionLost):
            s.upsert("models", [doc(2)])
        with pytest.raises(TransactionLost):
            s.commit()
        s.upsert("models", [doc(3)])  # after commit/rollback, writes are their own again
        assert s.ids("models") == {"huggingface:o/m3"}


def test_begin_rollback_and_commit_on_every_store(store):
    """SQLite undoes what a rolled-back transaction wrote; a store without transactions has
    written it already (the writer then reports each batch at once)."""
    store.upsert("models", [doc(1)])
    store.begin()
    store.upsert("models", [doc(2)])
    store.rollback()
    kept = {"huggingface:o/m1"} if store.transactions else {"huggingface:o/m1",
                                                            "huggingface:o/m2"}
    assert store.ids("models") == kept
    store.begin()
    store.upsert("models", [doc(3)])
    store.commit()
    store.rollback()  # nothing open: nothing undone
    assert store.ids("models") == kept | {"huggingface:o/m3"}


def _wait_for(predicate, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _rows_in_database_file(path):
    """Rows the database file itself holds, ignoring the WAL (what a checkpoint copied)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM models").fetchone()[0]
    except sqlite3.OperationalError:  # not even the table has been checkpointed
        return 0
    finally:
        conn.close()


def test_the_writer_connection_leaves_checkpoints_to_its_own_thread(tmp_path):
    """The writer's commits are copied into the database file by a checkpoint thread, not by
    the writer (whose automatic checkpoint is only a backstop, far above one commit)."""
    from ptmspiders.stores import sqlite as sqlite_store

    path = tmp_path / "t.sqlite"
    with open_store(f"sqlite:///{path}") as s:
        assert s.checkpointer is None
        writer = s.for_thread()
        assert writer.checkpointer is not None
        assert writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == \
            sqlite_store._WRITER_BACKSTOP_PAGES
        writer.begin()
        writer.upsert("models", [doc(i) for i in range(50)])
        assert _rows_in_database_file(path) == 0
        writer.commit()
        _wait_for(lambda: writer.checkpointer.runs >= 1)
        assert _rows_in_database_file(path) == 50
        assert writer.counters()["checkpoints"] >= 1
        assert s.count("models") == 50
        thread = writer.checkpointer.thread
        writer.close()
        assert not thread.is_alive()
        assert writer.checkpointer is None


def test_a_failed_checkpoint_is_logged_and_counted_and_the_writes_stay(tmp_path, caplog):
    import sqlite3

    class BrokenDisk:
        def execute(self, sql):
            raise sqlite3.OperationalError("disk I/O error")

        def close(self):
            pass

    path = tmp_path / "t.sqlite"
    with open_store(f"sqlite:///{path}") as s:
        writer = s.for_thread()
        writer.checkpointer.conn = BrokenDisk()
        writer.upsert("models", [doc(1)])  # a write outside begin() commits by itself
        _wait_for(lambda: writer.checkpointer.failures >= 1)
        assert writer.counters()["checkpoint_failures"] == 1
        assert "WAL checkpoint failed: disk I/O error" in caplog.text
        assert s.ids("models") == {"huggingface:o/m1"}  # committed, in the WAL
        writer.close()


def test_a_checkpoint_busy_with_another_is_counted_not_logged(tmp_path, caplog):
    """A passive checkpoint never waits: while another connection checkpoints, SQLite answers
    SQLITE_BUSY, and the next commit simply tries again."""
    import sqlite3

    class Busy:
        def execute(self, sql):
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise exc

        def close(self):
            pass

    with open_store(f"sqlite:///{tmp_path}/t.sqlite") as s:
        writer = s.for_thread()
        writer.checkpointer.conn = Busy()
        writer.upsert("models", [doc(1)])
        _wait_for(lambda: writer.checkpointer.busy >= 1)
        counters = writer.counters()
        assert (counters["checkpoints_busy"], counters["checkpoint_failures"]) == (1, 0)
        assert "checkpoint" not in caplog.text
        writer.close()


def test_without_a_checkpoint_connection_the_writer_checkpoints_itself(tmp_path, monkeypatch,
                                                                      caplog):
    import sqlite3

    from ptmspiders.stores import sqlite as sqlite_store

    def refuse(path):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite_store, "_Checkpointer", refuse)
    with open_store(f"sqlite:///{tmp_path}/t.sqlite") as s:
        writer = s.for_thread()
        assert writer.checkpointer is None
        assert writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == \
            sqlite_store._WAL_AUTOCHECKPOINT_PAGES
        assert "No checkpoint thread" in caplog.text
        writer.upsert("models", [doc(1)])
        assert s.ids("models") == {"huggingface:o/m1"}
        writer.close()


def test_stores_without_a_checkpoint_thread_report_no_counters(store, tmp_path):
    assert store.counters() == {}
    with open_store(f"sqlite:///{tmp_path}/t.sqlite") as s:
        assert s.counters() == {}
