"""Architecture specs: a crossbar tile and the chip built from it.

A spec is a readable YAML file with two sections, ``crossbar:`` and ``chip:``
(see ``cimdse/presets/*.yaml``). Specs are validated with pydantic: unknown keys,
impossible values and inconsistent combinations are rejected with a message naming
the file, the field and the rule broken. A boolean is not a number (YAML's ``true``
and ``yes`` would otherwise become 1), and a crossbar must hold the columns of one
output at the widest weight a policy gives (8 bits): a weight's columns stay on one
crossbar, as the generated RTL tile requires.
"""

from __future__ import annotations

import math
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cimdse.constants import CONSTANTS
from cimdse.errors import CimdseError
from cimdse.files import read_yaml, write_text
from cimdse.policy import MAX_BITS as MAX_WEIGHT_BITS
from cimdse.seeds import SEED_MAX

Mapping = Literal["differential-column", "differential-row", "offset"]
AdcMode = Literal["ideal", "full_range", "clip"]
AdcModel = Literal["sar", "linear"]
Encoding = Literal["plain", "flip"]

PRESET_NAMES = ("demo", "cim-aq", "isaac", "puma")


def _numeric(annotation: Any) -> bool:
    """Whether a field takes a number and not a boolean (``int``, ``float | None``,
    ``Literal[...] | int``; not ``bool``)."""
    args = (
        typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
        else (annotation,)
    )
    return bool({int, float} & set(args)) and bool not in args


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, v: Any, info: Any) -> Any:
        """pydantic takes ``true`` for 1; a spec saying ``rows: true`` is a mistake."""
        if isinstance(v, bool) and _numeric(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{str(v).lower()} is a boolean, not a number")
        return v


class Timing(_Strict):
    """Crossbar timings. ``op_ns`` fixes the time of one crossbar operation (one input
    slice through one crossbar) instead of deriving it from reads and conversions;
    ``cycle_ns`` times it at the generated RTL tile's cycle level instead (one cycle
    per row-group read and per ADC step, ``cimdse.costs.tile_slice_cycles``)."""

    read_ns: float = Field(CONSTANTS["read_ns"].value, gt=0)
    write_us: float = Field(CONSTANTS["write_us"].value, ge=0)
    op_ns: float | None = Field(None, gt=0)
    cycle_ns: float | None = Field(None, gt=0)
    adc_overlap: bool = Field(
        False, description="sample-and-hold lets the next read overlap the conversions (ISAAC's pipeline)"
    )

    @model_validator(mode="after")
    def _one_override(self) -> Timing:
        if self.op_ns is not None and self.cycle_ns is not None:
            raise ValueError("give op_ns or cycle_ns, not both")
        return self


class Nonideal(_Strict):
    """Device non-idealities; all off by default. Rates are fractions of cells."""

    conductance_sigma: float = Field(0.0, ge=0, lt=1, description="relative, fixed per programmed crossbar")
    stuck_on_rate: float = Field(0.0, ge=0, le=1)
    stuck_off_rate: float = Field(0.0, ge=0, le=1)
    read_noise_sigma: float = Field(0.0, ge=0, lt=1, description="relative, per cell and read")
    seed: int = Field(0, ge=0, le=SEED_MAX)

    @property
    def any(self) -> bool:
        return any((self.conductance_sigma, self.stuck_on_rate, self.stuck_off_rate, self.read_noise_sigma))

    @model_validator(mode="after")
    def _rates(self) -> Nonideal:
        if self.stuck_on_rate + self.stuck_off_rate > 1:
            raise ValueError("stuck_on_rate + stuck_off_rate must be at most 1")
        return self


class CrossbarSpec(_Strict):
    """One crossbar tile. ``adc_bits=None`` is an ideal ADC; ``adc_mode`` picks the
    shift applied before the ADC: 0 (``clip``), the full-range shift, or an explicit one.
    ``adc_model`` picks the ADC's time/energy/area law (``cimdse.costs``); ``encoding:
    flip`` is ISAAC's flipped-column encoding (one extra column per crossbar)."""

    rows: int = Field(gt=0, le=4096)
    cols: int = Field(gt=0, le=4096)
    cell_bits: int = Field(2, ge=1, le=8)
    dac_bits: int = Field(1, ge=1, le=8)
    adc_bits: int | None = Field(None, ge=1, le=16)
    adc_mode: AdcMode | int = Field("ideal", description="defaults to full_range when adc_bits is set")
    adcs: int = Field(1, ge=1)
    active_rows: int | None = Field(None, ge=1, description="rows driven at once; null = all rows")
    adc_model: AdcModel = Field("sar", description="sar: (bits+1) cycles; linear: time per bit (PUMA)")
    mapping: Mapping = "differential-column"
    encoding: Encoding = Field("plain", description="flip: ISAAC's flipped columns plus a unit column")
    count_sign_bit: bool = Field(False, description="cells per weight counted as ceil(b / c), as CIM-AQ's tables do")
    timing: Timing = Timing()
    nonideal: Nonideal = Nonideal()
    costs: dict[str, float] = Field(default_factory=dict, description="overrides of cimdse.constants.CONSTANTS")

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("adc_bits") is not None and "adc_mode" not in data:
            data = {**data, "adc_mode": "full_range"}
        return data

    @field_validator("adc_mode")
    @classmethod
    def _shift(cls, v: AdcMode | int) -> AdcMode | int:
        if isinstance(v, int) and not 0 <= v <= 32:
            raise ValueError("an explicit ADC shift must be between 0 and 32")
        return v

    @field_validator("costs", mode="before")
    @classmethod
    def _cost_numbers(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for key, value in v.items():
                if isinstance(value, bool):
                    raise ValueError(f"{key}: {value!r} is not a number")
        return v

    @field_validator("costs")
    @classmethod
    def _known_costs(cls, v: dict[str, float]) -> dict[str, float]:
        """Every key names a constant of ``cimdse.constants.CONSTANTS``; every value is a
        finite number > 0 (a zero rate is a division by zero, a negative power a negative
        energy), or >= 0 for the constants whose 0 means "not counted" (``zero_ok``)."""
        unknown = sorted(set(v) - set(CONSTANTS))
        if unknown:
            raise ValueError(f"unknown cost constant(s) {unknown}; known: {sorted(CONSTANTS)}")
        for key, value in v.items():
            if key in Timing.model_fields:  # the constant is only the field's default
                raise ValueError(f"{key} is set by crossbar.timing.{key}, not here (it would have no effect)")
            const = CONSTANTS[key]
            if not (math.isfinite(value) and (value > 0 or (value == 0 and const.zero_ok))):
                rule = ">= 0" if const.zero_ok else "> 0"
                raise ValueError(f"{key} = {value}: must be a finite number {rule} ({const.unit})")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> CrossbarSpec:
        if (self.adc_bits is None) != (self.adc_mode == "ideal"):
            raise ValueError("adc_mode 'ideal' goes with adc_bits null, and only with it")
        if self.adcs > self.cols:
            raise ValueError(f"adcs ({self.adcs}) cannot exceed cols ({self.cols})")
        if self.active_rows is not None and self.active_rows > self.rows:
            raise ValueError(f"active_rows ({self.active_rows}) cannot exceed rows ({self.rows})")
        if self.mapping == "differential-row" and self.rows < 2:
            raise ValueError("differential-row mapping needs at least 2 rows")
        if self.mapping == "differential-row" and self.active_rows == 1:
            raise ValueError("differential-row mapping needs active_rows >= 2 (a row pair)")
        if self.encoding == "flip" and self.mapping == "differential-row":
            raise ValueError("encoding 'flip' needs unsigned column sums (offset or differential-column mapping)")
        per_out = self.polarities * self.cells_per_weight(MAX_WEIGHT_BITS)
        if self.cols < per_out:
            raise ValueError(
                f"cols ({self.cols}) cannot hold one output of an {MAX_WEIGHT_BITS}-bit weight: it takes {per_out} "
                f"columns ({self.cells_per_weight(MAX_WEIGHT_BITS)} cell(s) of {self.cell_bits} bit(s)"
                f"{' x 2 polarities' if self.polarities == 2 else ''}, {self.mapping} mapping)"
            )
        return self

    @property
    def active_rows_or_all(self) -> int:
        return self.active_rows if self.active_rows is not None else self.rows

    @property
    def polarities(self) -> int:
        """Column polarities: W+ and W- columns for differential-column, one otherwise."""
        return 2 if self.mapping == "differential-column" else 1

    def cells_per_weight(self, w_bits: int) -> int:
        """Cells per weight per polarity: ceil(m / c), m = b - 1 (magnitude) for
        differential mappings, b for offset, or b when the spec counts the sign bit."""
        m = w_bits if self.mapping == "offset" or self.count_sign_bit else w_bits - 1
        return max(1, math.ceil(m / self.cell_bits))


class Component(_Strict):
    """A tile- or chip-level part not derived from the crossbar (eDRAM, router...)."""

    name: str
    count: float = Field(1.0, gt=0)
    area_mm2: float = Field(ge=0, description="each")
    power_mw: float = Field(ge=0, description="each")
    source: str = "user"


class ChipSpec(_Strict):
    """The chip: tiles of crossbars. ``parallel_writes`` is how many crossbars are
    programmed at once (null: one per tile), for resident and re-programmed weights
    alike; ``digital_lanes`` the element ops per cycle of one tile's digital unit;
    ``native_bits`` the weight/input precision its peak figures assume."""

    tiles: int = Field(1, ge=1)
    crossbars_per_tile: int = Field(1, ge=1)
    clock_ghz: float = Field(1.0, gt=0)
    schedule: Literal["sequential", "pipelined"] = "sequential"
    parallel_writes: int | None = Field(None, ge=1, description="crossbars programmed at once; null = one per tile")
    digital_lanes: int = Field(1, ge=1, description="element ops per cycle of one tile's digital unit")
    native_bits: int = Field(8, ge=1, le=16, description="weight and input bits of the peak figures")
    tile_components: list[Component] = Field(default_factory=list)
    chip_components: list[Component] = Field(default_factory=list)

    @property
    def crossbars(self) -> int:
        return self.tiles * self.crossbars_per_tile

    @property
    def writes_at_once(self) -> int:
        return self.parallel_writes if self.parallel_writes is not None else self.tiles


class ArchSpec(_Strict):
    name: str = "custom"
    description: str = ""
    crossbar: CrossbarSpec
    chip: ChipSpec = ChipSpec()


# ---------------------------------------------------------------- loading
def format_validation(err: ValidationError, origin: str, known: list[str] | None = None) -> str:
    """One line per broken rule: ``origin: field.path: rule``. An unknown key is
    called out as such (with the ``known`` keys, when given): typos must not pass."""
    lines = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key (known: {', '.join(known)})" if known else "unknown key (a typo?)"
        lines.append(f"{origin}: {field}: {msg}")
    return "\n".join(lines)


def from_dict(data: Any, origin: str = "<spec>") -> ArchSpec:
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise CimdseError(f"{origin}: expected a mapping with sections 'crossbar' and 'chip', got {kind}")
    try:
        return ArchSpec.model_validate(data)
    except ValidationError as err:
        raise CimdseError(format_validation(err, origin)) from None


def preset_path(name: str) -> Path:
    return Path(str(resources.files("cimdse.presets").joinpath(f"{name}.yaml")))


def load(name_or_path: str | Path, overrides: list[str] | None = None) -> ArchSpec:
    """A preset by name or a YAML file by path, with ``key.path=value`` overrides."""
    text = str(name_or_path)
    if text in PRESET_NAMES:
        path = preset_path(text)
    else:
        path = Path(text)
        if not path.exists():
            raise CimdseError(f"{text}: no such architecture file or preset (presets: {', '.join(PRESET_NAMES)})")
    data = read_yaml(path, "architecture")
    if isinstance(data, dict):
        data = _one_adc_setting(apply_overrides(data, overrides or []), overrides or [])
    origin = str(path) if text not in PRESET_NAMES else f"preset {text}"
    return from_dict(data, origin + (" (with --set)" if overrides else ""))


def _one_adc_setting(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """An ideal ADC is one setting: overriding ``adc_bits`` alone or ``adc_mode`` alone
    brings the other along (a file that gives both must make them agree).

    ``adc_bits=null`` makes the mode ``ideal``; a number of bits on an ideal ADC makes
    the mode the default for a real one (``full_range``), and keeps a clip, full-range
    or explicit shift otherwise; ``adc_mode=ideal`` makes ``adc_bits`` null."""
    keys = {item.partition("=")[0].strip() for item in overrides}
    xbar = data.get("crossbar")
    if not isinstance(xbar, dict):
        return data
    bits, mode = "crossbar.adc_bits" in keys, "crossbar.adc_mode" in keys
    if bits and not mode:
        if xbar.get("adc_bits") is None:
            xbar["adc_mode"] = "ideal"
        elif xbar.get("adc_mode") == "ideal":
            xbar.pop("adc_mode")
    elif mode and not bits and xbar.get("adc_mode") == "ideal":
        xbar["adc_bits"] = None
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``crossbar.rows=128``-style overrides; values are parsed as YAML scalars."""
    data = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CimdseError(f"--set {item!r}: expected KEY=VALUE, e.g. crossbar.rows=128")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part) if isinstance(node, dict) else None
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise CimdseError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def to_yaml(arch: ArchSpec) -> str:
    return yaml.safe_dump(arch.model_dump(mode="json"), sort_keys=False)


def save(arch: ArchSpec, path: str | Path) -> None:
    write_text(to_yaml(arch), path)
