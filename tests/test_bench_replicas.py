"""bench/replicas.py: the exactly-once count of `bench/run.py --replicas N` and its CPU-by-service
grouping (pure functions; the benchmark itself is not part of the suite)."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_replicas", REPO / "bench" / "replicas.py")
replicas = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(replicas)


def test_every_accepted_email_stored_and_announced_once_is_exactly_once():
    accepted = ["a@x", "b@x"]
    result = replicas.exactly_once(accepted, stored=["<A@x>", "b@x"], added_events={"a@x": {"e1"}, "b@x": {"e2"}},
                                   deliveries=3, timeline=["a@x", "b@x"])
    assert result["ok"]
    assert (result["stored_once"], result["duplicated"], result["missing_count"]) == (2, 0, 0)
    # the same event delivered again is a redelivery consumers de-duplicate, not a duplicate
    assert (result["message_added_redelivered"], result["message_added_duplicated"]) == (1, 0)


def test_a_row_twice_a_missing_row_and_an_event_published_twice_are_each_counted():
    result = replicas.exactly_once(["a", "b", "c"], stored=["a", "a", "c"],
                                   added_events={"a": {"e1", "e2"}, "c": {"e3"}}, deliveries=3,
                                   timeline=["a", "a", "c"])
    assert not result["ok"]
    assert (result["duplicated"], result["duplicated_ids"]) == (1, ["a"])
    assert (result["missing"], result["missing_count"], result["stored_once"]) == (["b"], 1, 1)
    assert (result["message_added_duplicated"], result["message_added_missing"]) == (1, 1)
    assert (result["timeline_duplicated"], result["timeline_missing"]) == (1, 1)


def test_a_message_stored_that_no_listener_accepted_is_not_exactly_once():
    result = replicas.exactly_once(["a"], stored=["a", "z"], added_events={"a": {"e1"}, "z": {"e2"}}, deliveries=2)
    assert not result["ok"]
    assert result["stored_not_accepted"] == ["z"]


def test_cpu_per_email_is_summed_over_a_services_replicas_and_kept_per_process():
    cpu = {"ingest": 2.0, "ingest-2": 1.5, "contacts": 1.0, "smtp": 0.5, "smtp-2": 0.25, "postgres": 9.0,
           "machine_busy": 20.0}
    table = replicas.cpu_by_service(cpu, ["ingest", "contacts", "conversations", "smtp"])
    assert table == {"ingest": {"total": 3.5, "per_process": {"ingest": 2.0, "ingest-2": 1.5}},
                     "contacts": {"total": 1.0, "per_process": {"contacts": 1.0}},
                     "smtp": {"total": 0.75, "per_process": {"smtp": 0.5, "smtp-2": 0.25}}}
