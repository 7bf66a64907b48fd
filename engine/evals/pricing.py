"""Token cost: a model's price per million input and output tokens, from the config's
`diagnosis.prices` (built-in list prices, overridable per config)."""

from __future__ import annotations

from collections.abc import Mapping

from engine.config.models import Price


def cost_usd(prices: Mapping[str, Price], model: str | None, input_tokens: int, output_tokens: int) -> float | None:
    """The cost of the tokens, or None when tokens were spent on a model without a price."""
    if input_tokens == 0 and output_tokens == 0:
        return 0.0
    price = prices.get(model or "")
    if price is None:
        return None
    return (input_tokens * price.input_usd_per_mtok + output_tokens * price.output_usd_per_mtok) / 1_000_000
