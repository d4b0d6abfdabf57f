"""Frozen, typed configuration of the gamma book and the levels computation."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from engine.core.calendar import TIME_MODELS
from engine.core.models import MODELS
from schemas.config import Config, ConfigError

GAMMA_SOURCES = ("iv", "venue")
GRID_SPACINGS = ("log", "linear")
ROOT_RULES = ("nearest", "first")
WALL_RULES = ("side", "global")


@dataclass(frozen=True, slots=True)
class LevelsConfig(Config):
    """How dealer gamma and its levels are computed (DESIGN §2.1)."""

    SECTION: ClassVar[str] = "levels"

    model: str = "long_calls_short_puts"
    gamma_source: str = "iv"  # profile always re-prices from IV; this picks GEX at spot/walls
    time_model: str = "act365"
    grid_points: int = 200
    grid_low: float = 0.8  # grid spans [low × spot, high × spot]
    grid_high: float = 1.2
    grid_spacing: str = "log"  # "log" enables the fast recurrence kernel
    root_rule: str = "nearest"  # zero gamma: root nearest spot, or the first sign change
    refine_root: bool = True  # refine the chosen root by re-pricing beyond grid resolution
    use_forwards: bool = True  # per-expiry forwards (basis kept); False prices on spot
    transition_band_bps: float = 25.0  # regime "transition" when zero gamma is this near spot
    recenter_fraction: float = 0.25  # re-centre the grid when spot leaves this part of it
    preset: str | None = None
    flow_prior_weight: float = 1.0  # --model flow: share of OI seeded in the prior direction
    # Walls (DESIGN §2.6): "side" searches the call wall at or above spot and the put wall at
    # or below it, among strikes within ±wall_window × spot; "global" is the whole chain.
    wall_rule: str = "side"
    wall_window: float = 0.15

    def __post_init__(self) -> None:
        _check_choice("model", self.model, MODELS)
        _check_choice("gamma_source", self.gamma_source, GAMMA_SOURCES)
        _check_choice("time_model", self.time_model, tuple(TIME_MODELS))
        _check_choice("grid_spacing", self.grid_spacing, GRID_SPACINGS)
        _check_choice("root_rule", self.root_rule, ROOT_RULES)
        _check_choice("wall_rule", self.wall_rule, WALL_RULES)
        window = self.wall_window
        if isinstance(window, bool) or not isinstance(window, int | float) or not 0 < window <= 1:
            raise ConfigError(f"wall_window must be in (0, 1], got {self.wall_window}")
        if not 2 <= self.grid_points <= 100_000:
            raise ConfigError(f"grid_points must be in [2, 100000], got {self.grid_points}")
        if not 0.0 < self.grid_low < 1.0 < self.grid_high:
            raise ConfigError(
                f"grid must satisfy 0 < grid_low < 1 < grid_high, got "
                f"{self.grid_low}..{self.grid_high}"
            )
        if self.transition_band_bps < 0:
            raise ConfigError("transition_band_bps must be >= 0")
        if not 0.0 < self.recenter_fraction <= 1.0:
            raise ConfigError("recenter_fraction must be in (0, 1]")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


# The Perfiliev script (DESIGN §2.1): r = q = 0, spot not forwards, T = business days / 262,
# linspace(0.8 S, 1.2 S, 60), zero gamma = first sign change linearly interpolated, net GEX
# from the venue-published gamma, long calls / short puts.
PRESETS: dict[str, LevelsConfig] = {
    "perfiliev": LevelsConfig(
        model="long_calls_short_puts",
        gamma_source="venue",
        time_model="perfiliev",
        grid_points=60,
        grid_low=0.8,
        grid_high=1.2,
        grid_spacing="linear",
        root_rule="first",
        refine_root=False,
        use_forwards=False,
        wall_rule="global",
        preset="perfiliev",
    ),
}


def resolve_config(
    preset: str | None = None, model: str | None = None, gamma_source: str | None = None
) -> LevelsConfig:
    """The config for a preset (or the defaults) with the given overrides checked against it."""
    if preset is None:
        base = LevelsConfig()
        overrides = {k: v for k, v in (("model", model), ("gamma_source", gamma_source)) if v}
        return replace(base, **overrides)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    base = PRESETS[preset]
    for name, value in (("model", model), ("gamma_source", gamma_source)):
        if value is not None and value != getattr(base, name):
            raise ConfigError(
                f"--preset {preset} fixes --{name.replace('_', '-')} {getattr(base, name)}"
            )
    return base
