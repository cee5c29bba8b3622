from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamwatch.core.request_index import (
    ABSENT,
    SeqIndex,
    pending_rows,
    request_key,
    request_keys,
)


def keys(*values: int) -> Any:
    return np.array(values, dtype=np.int64)


def test_request_keys_are_the_ids_hashes_and_never_zero() -> None:
    ids = ["a", "req-1", ""]  # hash("") == 0: the empty-slot key, read as 1
    assert request_keys(ids).tolist() == [hash("a"), hash("req-1"), 1]
    assert [request_key(i) for i in ids] == [hash("a"), hash("req-1"), 1]


def test_put_counts_replacements_and_a_key_keeps_its_newest_seq() -> None:
    index = SeqIndex()
    assert index.put(keys(5, 6, 5), keys(0, 1, 2)) == 1  # 5 twice in one batch
    assert index.lookup(keys(5, 6, 7)).tolist() == [2, 1, ABSENT]
    assert index.put(keys(6), keys(3)) == 1
    assert index.pop(6) == 3 and index.pop(6) == ABSENT
    assert index.put(keys(6, 6), keys(4, 5)) == 1  # forgotten, then live anew once
    assert (len(index), index.get(6)) == (2, 5)
    index.forget(keys(5, 9))  # 9 was never there
    assert (len(index), index.get(5)) == (1, ABSENT)


def test_keys_in_one_slot_chain_past_the_end_of_the_table() -> None:
    index = SeqIndex()
    mask = index.capacity - 1
    chained = keys(*(mask + i * index.capacity for i in range(1, 40)))  # all start at the end
    index.put(chained, np.arange(39))
    assert index.lookup(chained).tolist() == list(range(39))
    assert pending_rows(index, chained, 0).all()
    assert not pending_rows(index, chained, 1).any()


def test_rebuilds_keep_live_entries_and_drop_forgotten_ones() -> None:
    index = SeqIndex()
    rng = np.random.default_rng(7)
    every = rng.choice(2**62, size=20_000, replace=False).astype(np.int64) + 1
    for start in range(0, every.size, 1_000):
        index.put(every[start : start + 1_000], np.arange(start, start + 1_000))
        index.forget(every[start : start + 500])
    assert len(index) == 10_000
    assert index.capacity < 4 * 20_000  # rebuilt on live entries, not on every key seen
    seqs = index.lookup(every)
    expected = np.where(np.arange(every.size) % 1_000 < 500, ABSENT, np.arange(every.size))
    assert seqs.tolist() == expected.tolist()


_KEY = st.one_of(st.integers(1, 40), st.integers(1, 40).map(lambda i: i * 1024))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.lists(_KEY, max_size=700)),
            st.tuples(st.just("pop"), st.lists(_KEY, max_size=5)),
            st.tuples(st.just("forget"), st.lists(_KEY, max_size=5, unique=True)),
        ),
        max_size=30,
    )
)
def test_the_index_answers_as_a_dict_would(ops: list[tuple[str, list[int]]]) -> None:
    index, model = SeqIndex(), dict[int, int]()
    seq = 0
    for op, batch in ops:
        if op == "put":
            live, replaced = set(model), 0
            for k in batch:  # each occurrence replaces what is live at its turn
                replaced += k in live
                live.add(k)
            model.update((k, seq + i) for i, k in enumerate(batch))
            assert index.put(keys(*batch), np.arange(seq, seq + len(batch))) == replaced
            seq += len(batch)
        elif op == "pop":
            for k in batch:
                assert index.pop(k) == model.pop(k, ABSENT)
        else:
            index.forget(keys(*batch))
            for k in batch:
                model.pop(k, None)
        assert len(index) == len(model)
    probe = sorted(set(range(1, 41)) | {i * 1024 for i in range(1, 41)})
    assert index.lookup(keys(*probe)).tolist() == [model.get(k, ABSENT) for k in probe]
    assert [index.get(k) for k in probe] == [model.get(k, ABSENT) for k in probe]
