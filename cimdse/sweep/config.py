"""Sweep configs: the YAML schema (pydantic), its checks, and the copy kept beside the results.

A config names ``models``, ``archs``, a ``grid`` of dotted arch keys with value lists
(the cross product is taken), and uniform ``bits`` ("W,A") and/or per-layer
``policies`` files; an optional ``search:`` section runs the mixed-precision search
per point. Every problem is found here, before any point runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from cimdse import arch as arch_mod
from cimdse.errors import CimdseError
from cimdse.files import read_yaml, write_text
from cimdse.policy import parse_bits

CONFIG_COPY = "sweep.yaml"
Scalar = str | int | float | bool | None


class SearchOptions(BaseModel):
    """``search:`` section. Only ``episodes`` is checked here; the other keys belong to
    the search module, which checks them all before any point runs
    (:func:`cimdse.sweep.evaluate.check_search_options`)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    episodes: StrictInt = Field(gt=0)  # strict: YAML's ``true`` is not 1


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str] = Field(min_length=1, description="zoo names or path/to/file.py:factory")
    input: str | dict[str, str] | None = Field(
        None, description="one shape for all models, or a mapping model -> shape; default: the zoo's"
    )
    archs: list[str] = Field(min_length=1, description="presets or YAML files")
    grid: dict[str, list[Scalar]] = Field(default_factory=dict, description="dotted arch key -> values")
    bits: list[str] = Field(default_factory=list, description='uniform "W,A" pairs')
    policies: list[str] = Field(default_factory=list, description="per-layer policy files")
    search: SearchOptions | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _input(cls, v: Any) -> Any:
        """Shapes may be written 1x8x8, [1, 8, 8] or 40; they are kept as text."""

        def text(shape: Any) -> str:
            if isinstance(shape, int) and not isinstance(shape, bool):
                return str(shape)
            if isinstance(shape, list) and shape and all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
                return "x".join(map(str, shape))
            if isinstance(shape, str):
                return shape
            raise ValueError(f"{shape!r}: expected a shape like 1x8x8, [1, 8, 8] or 40")

        if v is None:
            return v
        if isinstance(v, dict):
            return {str(k): text(s) for k, s in v.items()}
        return text(v)

    @field_validator("models", "archs", "bits", "policies")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        seen = set()
        for item in v:
            if item in seen:
                raise ValueError(f"{item!r} is listed twice")
            seen.add(item)
        return v

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                parse_bits(item, where="bits")
            except CimdseError as err:
                raise ValueError(str(err)) from None
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for key, values in v.items():
            check_grid_key(key)
            if not values:
                raise ValueError(f"grid key {key!r} has an empty value list")
            if len(set(map(json.dumps, values))) != len(values):
                raise ValueError(f"grid key {key!r} lists a value twice")
        return v

    @model_validator(mode="after")
    def _something_to_evaluate(self) -> SweepConfig:
        if not self.bits and not self.policies and self.search is None:
            raise ValueError("give at least one of 'bits', 'policies' or 'search'")
        return self


def check_grid_key(key: str) -> None:
    """A grid key must name a field of the arch spec (``crossbar.rows``), so a typo is
    caught before any point runs rather than reported at every point."""
    model: type[BaseModel] = arch_mod.ArchSpec
    parts = key.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[:i]) or "the spec"
        fields = model.model_fields
        if part not in fields:
            raise ValueError(f"grid key {key!r}: {where} has no field {part!r} (fields: {', '.join(fields)})")
        ann = fields[part].annotation
        is_section = isinstance(ann, type) and issubclass(ann, BaseModel)
        if i == len(parts) - 1:
            if is_section:
                raise ValueError(f"grid key {key!r} is a section; name a field inside it")
            return
        if is_section:
            model = ann
        elif get_origin(ann) is dict:  # free-form mapping, e.g. crossbar.costs.<constant>
            return
        else:
            raise ValueError(f"grid key {key!r}: {'.'.join(parts[: i + 1])} is a value, not a section")


def load_config(path: str | Path) -> SweepConfig:
    path = Path(path)
    data = read_yaml(path, "sweep config")
    if not isinstance(data, dict):
        raise CimdseError(f"{path}: expected a mapping with 'models', 'archs' and 'bits' or 'policies'")
    try:
        return SweepConfig.model_validate(data)
    except ValidationError as err:
        raise CimdseError(arch_mod.format_validation(err, str(path), list(SweepConfig.model_fields))) from None


def save_config(cfg: SweepConfig, out_dir: str | Path, source: str | Path | None = None) -> Path:
    """Keep the config beside its results (``sweep.yaml``), for the record and the report."""
    path = Path(out_dir) / CONFIG_COPY
    head = f"# copy of {Path(source).resolve()}; relative paths are relative to that file\n" if source else ""
    text = head + yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), sort_keys=False)
    write_text(text, path, durable=True)
    return path
