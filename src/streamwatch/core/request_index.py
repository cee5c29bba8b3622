"""An index from request id to arrival number, kept in numpy arrays (a hash table).

The predictions awaiting labels are found by request id: up to hundreds of thousands of them
per partition. A ``dict`` from id to arrival number kept each id's string (~80 bytes), a boxed
number (32) and a dict entry (~50), and inserting into one that large cost ~250 ns an id, most
of it cache misses. Here an id is a 64-bit key, Python's own string hash, and the table is two
int64 arrays probed linearly, a whole batch of keys per numpy operation: ~40 bytes an entry.

Keys are SipHash values seeded per process (``PYTHONHASHSEED``), so they are never stored:
whoever restores the index from stored ids computes them again. Two different ids share a key
with probability ~n²/2⁶⁵ among n pending ones (~10⁻⁹ at 200,000); a seeded hash keeps anyone
from making that happen on purpose. The key 0 marks an empty slot (a hash of 0 is read as 1).

Pure numpy; knows nothing of predictions (see :mod:`.labels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from streamwatch.core.columns import BoolArray, IntArray

#: The arrival number of a key that is in no slot, or whose entry was forgotten.
ABSENT: Final = -1
#: Slots per entry kept free: probes stay short (a table above :data:`_MAX_LOAD` is rebuilt).
_MAX_LOAD: Final = 0.5
_MIN_CAPACITY: Final = 1024
#: A batch's last rows to place are probed one by one: the rounds of long probe chains would
#: each cost a dozen numpy calls for a handful of rows.
_SCALAR_TAIL: Final = 32


def request_keys(request_ids: Sequence[str]) -> IntArray:
    """The index keys of some request ids."""
    keys = np.fromiter(map(hash, request_ids), np.int64, len(request_ids))
    if not keys.all():
        keys[keys == 0] = 1
    return keys


def request_key(request_id: str) -> int:
    """The index key of one request id."""
    return hash(request_id) or 1


class SeqIndex:
    """Request keys to arrival numbers (``seq``, from 0): the newest one given for each key.

    A forgotten entry keeps its slot, empty of a seq, until the table is rebuilt: that happens
    when slots in use would pass half the capacity, and keeps live entries only.
    """

    __slots__ = ("_filled", "_keys", "_live", "_mask", "_stored", "_table")

    def __init__(self, capacity: int = _MIN_CAPACITY) -> None:
        """Create an empty index with room for ``capacity`` slots (rounded up to a power of 2)."""
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        size = _MIN_CAPACITY
        while size < capacity:
            size *= 2
        # A key and its seq side by side: a probe's one cache miss brings both. The table
        # holds seq + 1, so that zeros (pages the kernel maps on first touch) are all empty.
        table = np.zeros((size, 2), np.int64)
        self._table = table
        self._keys: IntArray = table[:, 0]
        self._stored: IntArray = table[:, 1]
        self._mask = size - 1
        self._filled = 0  # slots holding a key, live or forgotten
        self._live = 0

    def __len__(self) -> int:
        return self._live

    @property
    def capacity(self) -> int:
        """Slots in the table."""
        return self._mask + 1

    def put(self, keys: IntArray, seqs: IntArray) -> int:
        """Point each key at its seq; return how many entries replaced a live one.

        Seqs must be greater than every seq put before (arrival order); a key given twice
        keeps its later seq, and its earlier one counts as replaced.
        """
        n = int(keys.size)
        if n == 0:
            return 0
        if self._filled + n > self.capacity * _MAX_LOAD:
            self._rebuild(n)
        table_keys, stored, mask = self._keys, self._stored, self._mask
        values = seqs + 1
        rows = np.arange(1, n + 1, dtype=np.int64)  # claim marks: never 0 (empty)
        slots = keys & mask
        replaced = 0
        while rows.size > _SCALAR_TAIL:
            held = table_keys[slots]
            found = held == keys
            free = held == 0
            if found.any():
                at = slots[found]
                revived = stored[at] == 0
                replaced += int(revived.size - np.count_nonzero(revived))
                if revived.any():
                    # A forgotten key given again is live anew, once per slot.
                    dead = at[revived]
                    distinct = int(np.unique(dead).size) if dead.size > 1 else 1
                    replaced += int(dead.size) - distinct
                    self._live += distinct
                np.maximum.at(stored, at, values[found])  # a key twice here: the later wins
            won = np.zeros(rows.size, np.bool_)
            if free.any():
                # A free slot's seq is unused: the rows that want it write their mark there and
                # one write wins, whatever numpy's order; the winner then fills the slot.
                at, marks = slots[free], rows[free]
                stored[at] = marks
                winners = stored[at] == marks
                won[np.flatnonzero(free)[winners]] = True
                taken = at[winners]
                table_keys[taken] = keys[won]
                stored[taken] = values[won]
                self._filled += int(taken.size)
                self._live += int(taken.size)
            # Losers of a claim look at the same slot again (it now holds a key, maybe their
            # own); rows that met another key probe the next slot.
            again = ~(found | won)
            slots = np.where(free[again], slots[again], (slots[again] + 1) & mask)
            keys, values, rows = keys[again], values[again], rows[again]
        for key, value, slot in zip(keys.tolist(), values.tolist(), slots.tolist(), strict=True):
            replaced += self._put_one(key, value, slot)
        return replaced

    def _put_one(self, key: int, value: int, slot: int) -> int:
        """:meth:`put` for one key (stored value ``value``), probing from ``slot``."""
        table_keys, stored, mask = self._keys, self._stored, self._mask
        while True:
            held = int(table_keys[slot])
            if held == key:
                before = int(stored[slot])
                stored[slot] = max(before, value)
                if before:
                    return 1
                self._live += 1
                return 0
            if held == 0:
                table_keys[slot] = key
                stored[slot] = value
                self._filled += 1
                self._live += 1
                return 0
            slot = (slot + 1) & mask

    def lookup(self, keys: IntArray) -> IntArray:
        """The seq of each key (:data:`ABSENT` for keys not in the index)."""
        found = self._slots_of(keys)
        out = np.zeros(keys.size, np.int64)
        present = found >= 0
        out[present] = self._stored[found[present]]
        out -= 1
        return out

    def forget(self, keys: IntArray) -> None:
        """Forget the entries of ``keys`` (distinct keys; those not live are passed over)."""
        found = self._slots_of(keys)
        found = found[found >= 0]
        found = found[self._stored[found] != 0]
        self._stored[found] = 0
        self._live -= int(found.size)

    def get(self, key: int) -> int:
        """The seq of one key (:data:`ABSENT` if not in the index)."""
        slot = self._slot_of(key)
        return ABSENT if slot < 0 else int(self._stored[slot]) - 1

    def pop(self, key: int) -> int:
        """Forget one key's entry and return its seq (:data:`ABSENT` if not in the index)."""
        slot = self._slot_of(key)
        if slot < 0:
            return ABSENT
        seq = int(self._stored[slot]) - 1
        if seq != ABSENT:
            self._stored[slot] = 0
            self._live -= 1
        return seq

    def _slot_of(self, key: int) -> int:
        table_keys, mask = self._keys, self._mask
        slot = key & mask
        while True:
            held = int(table_keys[slot])
            if held == key:
                return slot
            if held == 0:
                return -1
            slot = (slot + 1) & mask

    def _slots_of(self, keys: IntArray) -> IntArray:
        """The slot of each key, -1 where it has none."""
        table_keys, mask = self._keys, self._mask
        out = np.full(keys.size, -1, np.int64)
        rows = np.arange(keys.size)
        slots = keys & mask
        while rows.size:
            held = table_keys[slots]
            found = held == keys
            out[rows[found]] = slots[found]
            going = ~found & (held != 0)
            rows, keys, slots = rows[going], keys[going], (slots[going] + 1) & mask
        return out

    def _rebuild(self, incoming: int) -> None:
        """Start a table with the live entries only, a quarter full at most with ``incoming``.

        Forgotten entries are dropped here; a table never shrinks between rebuilds.
        """
        live = self._stored != 0
        keys, seqs = self._keys[live], self._stored[live] - 1
        self._allocate(4 * (int(keys.size) + incoming))
        self.put(keys, seqs)  # distinct keys: their order does not matter


def pending_rows(index: SeqIndex, keys: IntArray, first_seq: int) -> BoolArray:
    """Which of consecutive rows (seqs ``first_seq``, ``first_seq + 1``, ...) are live."""
    live: BoolArray = index.lookup(keys) == np.arange(first_seq, first_seq + keys.size)
    return live
