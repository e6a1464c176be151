"""Named price lists: the on-demand and spot $/GPU-hour of one provider, from the GPU catalog.

`sim/data/gpus.toml` gives each GPU a primary price and, for some, an alternative one, each with
its source; the provider is the source's first word ("AWS", "RunPod", "Lambda", ...). A plan
search prices every candidate from ONE provider's list, so an A100 from one cloud is never
compared with an H100 from another without saying so. Prices the experiment file sets in
`[cost.gpu_usd_per_hour]` / `[cost.spot_usd_per_hour]` override the list and are listed as
overrides in every output.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sim.config import ApiSpec, CostSpec
from sim.data import GpuSpec, api_providers, gpus
from sim.engine.catalog import load_user_calibration


@dataclass(frozen=True)
class GpuPrice:
    """One GPU's price on a list: on-demand and (when listed) spot $/GPU-hour, with sources."""

    gpu: str
    on_demand_usd_per_hour: float
    spot_usd_per_hour: float | None
    source: str
    override: str = ""  # how the experiment file changed it ("" = list price)


def provider_of(source: str) -> str:
    """The provider a price source names first, lower-cased ("RunPod 1x_L40S…" → "runpod")."""
    word = source.split()[0] if source.split() else ""
    return word.strip("'’,:;").lower()


def _entries(g: GpuSpec) -> list[tuple[str, float, float | None, str]]:
    out = [
        (
            provider_of(g.price_source),
            g.price_usd_per_hour,
            g.spot_price_usd_per_hour,
            g.price_source,
        )
    ]
    if g.alt_price_usd_per_hour is not None and g.alt_price_source:
        out.append(
            (
                provider_of(g.alt_price_source),
                g.alt_price_usd_per_hour,
                g.alt_spot_price_usd_per_hour,
                g.alt_price_source,
            )
        )
    return out


def price_lists() -> dict[str, dict[str, GpuPrice]]:
    """Every provider's list: provider → GPU → price (catalog order)."""
    lists: dict[str, dict[str, GpuPrice]] = {}
    for name, g in gpus().items():
        for provider, od, spot, source in _entries(g):
            lists.setdefault(provider, {}).setdefault(name, GpuPrice(name, od, spot, source))
    return lists


def default_price_list(gpu_names: tuple[str, ...]) -> str:
    """The provider listing the most of `gpu_names` (ties: the one listing most GPUs)."""
    lists = price_lists()
    score = Counter({p: (sum(g in lst for g in gpu_names), len(lst)) for p, lst in lists.items()})
    return max(sorted(score), key=lambda p: score[p])


def priced(provider: str, cost: CostSpec) -> dict[str, GpuPrice]:
    """`provider`'s list with the experiment's overrides applied (a GPU the list lacks but the
    experiment prices is added, marked as an override). KeyError for an unknown provider."""
    base = dict(price_lists()[provider])
    catalog = gpus()
    od, spot = dict(cost.gpu_usd_per_hour), dict(cost.spot_usd_per_hour)
    for gpu, price in od.items():
        if gpu not in catalog or price == catalog[gpu].price_usd_per_hour:
            continue  # not set by the file (the config fills catalog defaults)
        listed = base.get(gpu)
        if listed is not None and listed.on_demand_usd_per_hour == price:
            continue
        was = f" (the {provider} list says ${listed.on_demand_usd_per_hour:g}/h)" if listed else ""
        base[gpu] = GpuPrice(
            gpu,
            price,
            spot.get(gpu, listed.spot_usd_per_hour if listed else None),
            f"experiment file [cost.gpu_usd_per_hour] {gpu} = ${price:g}/h",
            override=f"{gpu}: ${price:g}/h from the experiment file{was}",
        )
    return base


def calibration_prices(cost: CostSpec, calibration: str | None) -> dict[str, GpuPrice]:
    """The GPU types the calibration file `calibration` defines (`[[gpu]]` tables,
    `sim.data.user_gpus`), priced as the file prices them unless the experiment's `[cost]`
    sets a price. They are on no provider's list, so each is marked as an override: every
    output then says that this GPU's price is the user's own, next to the list's."""
    if calibration is None:
        return {}
    od, spot = dict(cost.gpu_usd_per_hour), dict(cost.spot_usd_per_hour)
    out = {}
    for name, g in load_user_calibration(calibration).gpus.items():
        price = od.get(name, g.price_usd_per_hour)
        if price == g.price_usd_per_hour:
            source = f"calibration file {calibration} [[gpu]] {name}: {g.price_source}"
            said = f"its own price from the calibration file {calibration}"
        else:  # the experiment's [cost] sets it (the config fills the file's price otherwise)
            source = f"experiment file [cost.gpu_usd_per_hour] {name} = ${price:g}/h"
            said = f"from the experiment file (the calibration file {calibration} says "
            said += f"${g.price_usd_per_hour:g}/h)"
        out[name] = GpuPrice(
            name,
            price,
            spot.get(name, g.spot_price_usd_per_hour),
            source,
            override=f"{name}: ${price:g}/h, {said} (on no provider's list)",
        )
    return out


def comparison_api(api: ApiSpec | None, compare_api: str) -> tuple[str, float, float]:
    """The API the all-API bill is priced on — the experiment's `[api]`, else the
    `[plan] compare_api` row of `sim/data/api.toml` — as (name, input, output USD per M)."""
    if api is not None:
        return api.provider, api.input_usd_per_million, api.output_usd_per_million
    row = api_providers()[compare_api]
    return compare_api, float(row["input_usd_per_million"]), float(row["output_usd_per_million"])
