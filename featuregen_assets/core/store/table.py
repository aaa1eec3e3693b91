"""`Table`: the column-oriented rows that assets hand to the pgvector IO manager."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pgvector import Vector


def _as_array(value: Any) -> Any:
    """pgvector's `Vector` values as float32 arrays; anything else unchanged."""
    return value.to_numpy() if isinstance(value, Vector) else value


@dataclass
class Table:
    """Named columns of equal length; a vector column is a 2-D float32 array (rows × dim)."""

    columns: dict[str, Sequence[Any] | np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        lengths = {name: len(values) for name, values in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns differ in length: {lengths}")
        for name, values in self.columns.items():
            if isinstance(values, np.ndarray) and values.ndim == 2:
                self.columns[name] = np.ascontiguousarray(values, dtype=np.float32)

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> Table:
        """Build a table from row mappings; vector values are stacked into 2-D arrays."""
        columns: dict[str, Sequence[Any] | np.ndarray] = {}
        for name in names:
            values = [_as_array(row[name]) for row in rows]
            if values and isinstance(values[0], np.ndarray):
                columns[name] = np.stack(values).astype(np.float32)
            else:
                columns[name] = values
        return cls(columns)

    @classmethod
    def concat(cls, tables: Sequence[Table]) -> Table:
        """The rows of `tables` (same columns, in the same order) one after another."""
        names = tables[0].names
        return cls(
            {
                name: np.concatenate([t.columns[name] for t in tables])
                if all(isinstance(t.columns[name], np.ndarray) for t in tables)
                else [value for t in tables for value in t.columns[name]]
                for name in names
            }
        )

    @property
    def names(self) -> list[str]:
        """The column names, in order."""
        return list(self.columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def take(self, rows: Sequence[int]) -> Table:
        """A table of the given rows, in that order."""
        index = np.asarray(rows, dtype=np.intp)
        return Table(
            {
                name: values[index] if isinstance(values, np.ndarray) else [values[i] for i in rows]
                for name, values in self.columns.items()
            }
        )

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """The rows as tuples in column order."""
        return zip(*self.columns.values(), strict=True)

    def vector_dims(self) -> dict[str, int]:
        """The dimension of each vector column."""
        return {
            name: values.shape[1]
            for name, values in self.columns.items()
            if isinstance(values, np.ndarray) and values.ndim == 2
        }
